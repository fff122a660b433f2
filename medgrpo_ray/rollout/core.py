"""What a rollout worker does, without Ray: records -> frames -> prompts -> G completions each.

A record whose video cannot be decoded becomes a RolloutGroup with `error` set (a counted, logged skip), never
an exception that fails the other prompts of the call.
"""
from __future__ import annotations

import logging
import time
from typing import Sequence

from medgrpo_ray.data.clips import clip_for_record
from medgrpo_ray.data.prompts import budget_for, prompt_text, vision_token_ids, vllm_request
from medgrpo_ray.data.records import RecordError, VideoRecord
from medgrpo_ray.data.video import ClipCache, VideoDecodeError
from medgrpo_ray.rollout.types import RolloutGroup, RolloutItem, SamplingSettings

log = logging.getLogger(__name__)


def allowed_token_ids(tokenizer, answers) -> list[int] | None:
    """Token ids of `answers` as they tokenize after a space (the usual start of a word inside a reply), plus
    EOS; None when no restriction is set."""
    if not answers:
        return None
    ids = {tokenizer.eos_token_id}
    for a in answers:
        ids.update(tokenizer(" " + a, add_special_tokens=False)["input_ids"])
    return sorted(ids)


class RolloutCore:
    def __init__(self, cfg, model_dir: str, name: str = "rollout", device_index: int | None = None) -> None:
        """`device_index`: the torch CUDA index Ray assigned this worker (config/devices.py); None: the default."""
        from medgrpo_ray.models.loading import load_processor

        self.cfg, self.name = cfg, name
        self.processor = load_processor(model_dir)
        d = cfg.data
        self.budget = budget_for(self.processor, d.max_frames, d.min_pixels, d.max_pixels)
        self.cache = ClipCache(d.frame_cache_entries)
        r = cfg.rollout
        if r.backend == "vllm":
            from medgrpo_ray.rollout.vllm_engine import VLLMEngine

            self.engine = VLLMEngine(model_dir, dtype=cfg.model.dtype, max_model_len=r.max_model_len, seed=cfg.seed,
                                     gpu_memory_utilization=r.gpu_memory_utilization, kv_cache_gib=r.kv_cache_space_gib,
                                     enforce_eager=r.enforce_eager, max_num_batched_tokens=r.max_num_batched_tokens,
                                     device_index=device_index,
                                     sleep_mode=cfg.placement == "colocated" and r.colocated_memory == "sleep",
                                     banned_token_ids=vision_token_ids(self.processor.tokenizer) if r.suppress_vision_tokens else ())
        else:
            from medgrpo_ray.rollout.hf_engine import HFEngine

            self.engine = HFEngine(model_dir, self.processor, dtype=cfg.model.dtype)

        self.allowed = allowed_token_ids(self.processor.tokenizer, r.allowed_answers)

    def settings(self, seed: int | None, greedy: bool = False) -> SamplingSettings:
        r = self.cfg.rollout
        if greedy:
            return SamplingSettings(group_size=1, temperature=0.0, max_new_tokens=r.max_new_tokens,
                                    allowed_token_ids=self.allowed)
        return SamplingSettings(group_size=self.cfg.algorithm.group_size, temperature=r.temperature, top_p=r.top_p,
                                top_k=r.top_k, max_new_tokens=r.max_new_tokens, seed=seed, allowed_token_ids=self.allowed)

    def _clip(self, rec: VideoRecord):
        d = self.cfg.data
        return clip_for_record(rec, self.budget, cache=self.cache, video_root=d.video_root,
                               timeout_s=d.decode_timeout_s, threads=d.decode_threads)

    def score(self, items: Sequence[RolloutItem], completions: Sequence[Sequence[int]]) -> list[list[float]]:
        """The engine's log-probs of given completion tokens for the items' prompts (vLLM backend)."""
        reqs = []
        for it in items:
            rec = VideoRecord.from_dict(it.record)
            reqs.append(vllm_request(prompt_text(self.processor, rec.question), self._clip(rec)))
        return self.engine.score(reqs, completions)

    def rollout(self, items: Sequence[RolloutItem]) -> list[RolloutGroup]:
        """G completions for every item; an item that fails (video, record, length, engine) comes back with
        `error` and `reason` set and never fails the other items of the call."""
        prepared, out, uids = [], {}, {}

        def fail(it, reason: str, err) -> None:
            # DEBUG: the driver logs each failed record once, when it quarantines it.
            log.debug("%s: skipping group %d (%s): %s", self.name, it.group_id, reason, err)
            out[it.group_id] = RolloutGroup(group_id=it.group_id, error=str(err), reason=reason, worker=self.name)

        for it in items:
            t0 = time.perf_counter()
            try:
                rec = VideoRecord.from_dict(it.record)
            except (RecordError, ValueError) as err:
                fail(it, "record", err)
                continue
            try:
                clip = self._clip(rec)
            except (VideoDecodeError, OSError, ValueError) as err:
                fail(it, "decode", err)
                continue
            uids[it.group_id] = rec.uid
            text = prompt_text(self.processor, rec.question)
            s = self.settings(it.seed, it.greedy)
            problem = self.length_problem(rec, text, clip, s)
            if problem:
                fail(it, problem[0], problem[1])
                continue
            prepared.append((it, text, clip, s, time.perf_counter() - t0))
        if prepared:
            t0 = time.perf_counter()
            results = self._generate_isolated(prepared)
            gen_s = time.perf_counter() - t0
            vid = self.processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
            for (it, _, clip, _, dec_s), res in zip(prepared, results):
                if isinstance(res, Exception):
                    fail(it, "engine", f"record {uids[it.group_id]}: the engine failed on this prompt: "
                                       f"{type(res).__name__}: {res}")
                    continue
                n_vis = res.prompt_token_ids.count(vid)
                log.debug("%s: group %d (%s): %d visual tokens", self.name, it.group_id, it.record.get("qa_type"), n_vis)
                out[it.group_id] = RolloutGroup(group_id=it.group_id, prompt_token_ids=res.prompt_token_ids,
                                                completions=res.completions, visual_tokens=n_vis, worker=self.name,
                                                timings={"decode_s": dec_s, "generate_s": gen_s / len(prepared)})
        return [out[it.group_id] for it in items]

    def _generate(self, prepared) -> list:
        settings = [s for _, _, _, s, _ in prepared]
        if self.cfg.rollout.backend == "vllm":
            sizes = [self.prompt_tokens(text, clip) for _, text, clip, _, _ in prepared]
            return self.engine.generate([vllm_request(text, clip) for _, text, clip, _, _ in prepared], settings, sizes)
        return self.engine.generate_clips([(text, clip) for _, text, clip, _, _ in prepared], settings)

    def _generate_isolated(self, prepared) -> list:
        """Results in order; if the batched call raises, each prompt is retried alone so that an error inside
        the engine is charged to its own record (returned as the exception) and the others still complete."""
        try:
            return self._generate(prepared)
        except Exception as err:  # noqa: BLE001 - isolated per record below
            if len(prepared) == 1:
                return [err]
            log.warning("%s: batched generation failed (%s: %s); retrying %d prompts one by one", self.name,
                        type(err).__name__, err, len(prepared))
        out = []
        for p in prepared:
            try:
                out.append(self._generate([p])[0])
            except Exception as err:  # noqa: BLE001
                out.append(err)
        return out

    def length_problem(self, rec: VideoRecord, text: str, clip, s: SamplingSettings) -> tuple[str, str] | None:
        """(reason, message) when the prompt cannot run: text + visual tokens + max_new_tokens over
        rollout.max_model_len, or (CPU vLLM) G prefills over the engine's per-step token budget."""
        r = self.cfg.rollout
        n = self.prompt_tokens(text, clip)
        who = f"record {rec.uid}"
        if n + s.max_new_tokens > r.max_model_len:
            return "too_long", (f"{who}: prompt of ~{n} tokens (question text + video) + rollout.max_new_tokens="
                                f"{s.max_new_tokens} exceeds rollout.max_model_len={r.max_model_len}; shorten the "
                                f"question, lower data.max_frames/max_pixels, or raise rollout.max_model_len")
        budget = getattr(self.engine, "token_budget", None)
        if r.backend == "vllm" and not getattr(self.engine, "on_gpu", True) and budget and n * s.group_size > budget:
            return "over_batch_budget", (f"{who}: prompt of ~{n} tokens x {s.group_size} samples exceeds "
                                         f"rollout.max_num_batched_tokens={budget} (the CPU engine prefills a "
                                         f"prompt's G samples in one step); raise it to at least {n * s.group_size}")
        return None

    def prompt_tokens(self, text: str, clip) -> int:
        """Engine tokens of a prompt: text tokens plus the video's placeholders (one per merged patch), plus room
        for per-frame timestamp text on Qwen3-VL (an upper estimate there)."""
        vp = self.processor.video_processor
        t = -(-clip.num_frames // int(vp.temporal_patch_size))
        h, w = (int(d) // int(vp.patch_size) for d in clip.frames.shape[1:3])
        visual = t * h * w // (int(vp.merge_size) ** 2)
        timestamps = 16 * t if "qwen3" in type(self.processor).__name__.lower() else 0
        return len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"]) + visual + timestamps

    def load_weights(self, state: dict) -> None:
        self.engine.load_weights(state.items())

    def load_weights_stream(self, pairs) -> None:
        """(name, tensor) pairs as they arrive (a broadcast sync): the engine consumes them while loading."""
        self.engine.load_weights(pairs)

    def sleep(self, level: int = 1) -> bool:
        """Free the engine's GPU memory (colocated sleep mode); False where the engine has no sleep mode."""
        fn = getattr(self.engine, "sleep", None)
        return bool(fn(level)) if fn is not None else False

    def wake_up(self, tags=None) -> bool:
        """Bring back what sleeps of `tags` (None: all); True when the engine is fully awake."""
        fn = getattr(self.engine, "wake_up", None)
        return bool(fn(tags)) if fn is not None else True
