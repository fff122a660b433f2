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
    def __init__(self, cfg, model_dir: str, name: str = "rollout") -> None:
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
        """G completions for every item; failed items come back with `error` set."""
        prepared, out = [], {}
        for it in items:
            t0 = time.perf_counter()
            try:
                rec = VideoRecord.from_dict(it.record)
                clip = self._clip(rec)
            except (VideoDecodeError, RecordError, OSError, ValueError) as err:
                log.warning("%s: skipping group %d: %s", self.name, it.group_id, err)
                out[it.group_id] = RolloutGroup(group_id=it.group_id, error=str(err), worker=self.name)
                continue
            prepared.append((it, prompt_text(self.processor, rec.question), clip, time.perf_counter() - t0))
        if prepared:
            t0 = time.perf_counter()
            settings = [self.settings(it.seed, it.greedy) for it, *_ in prepared]
            if self.cfg.rollout.backend == "vllm":
                sizes = [self.prompt_tokens(text, clip) for _, text, clip, _ in prepared]
                results = self.engine.generate([vllm_request(text, clip) for _, text, clip, _ in prepared], settings, sizes)
            else:
                results = self.engine.generate_clips([(text, clip) for _, text, clip, _ in prepared], settings)
            gen_s = time.perf_counter() - t0
            vid = self.processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
            for (it, _, clip, dec_s), res in zip(prepared, results):
                n_vis = res.prompt_token_ids.count(vid)
                log.debug("%s: group %d (%s): %d visual tokens", self.name, it.group_id, it.record.get("qa_type"), n_vis)
                out[it.group_id] = RolloutGroup(group_id=it.group_id, prompt_token_ids=res.prompt_token_ids,
                                                completions=res.completions, visual_tokens=n_vis, worker=self.name,
                                                timings={"decode_s": dec_s, "generate_s": gen_s / len(prepared)})
        return [out[it.group_id] for it in items]

    def prompt_tokens(self, text: str, clip) -> int:
        """Upper estimate of a prompt's engine tokens: text tokens plus the video's placeholders (one per merged
        patch) plus room for per-frame timestamp text (Qwen3-VL)."""
        vp = self.processor.video_processor
        t = -(-clip.num_frames // int(vp.temporal_patch_size))
        h, w = (int(d) // int(vp.patch_size) for d in clip.frames.shape[1:3])
        visual = t * h * w // (int(vp.merge_size) ** 2)
        return len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"]) + visual + 16 * t

    def load_weights(self, state: dict) -> None:
        self.engine.load_weights(state.items())
