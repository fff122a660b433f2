"""Memory per GPU of placement=colocated (a learner rank and its vLLM engine on one GPU), and both layouts side
by side for the launch plan. Pure: the same estimates as plan.py's split tables, combined per phase.

- static: both resident at once: the learner's parts plus vLLM's share (rollout.gpu_memory_utilization x GPU).
- sleep: they take turns (driver/memory_phases.py). During the update the engine sleeps (level 1: its weights in
  host memory, KV cache freed) and the learner holds everything; during generation the learner keeps only its
  16-bit parameters (offload_states moves the rest to host memory) plus the runtime, and vLLM has its share.
  The peak is the larger phase.
"""
from __future__ import annotations

from typing import Any, Optional

from medgrpo_ray.config.machine import resolve_enforce_eager
from medgrpo_ray.planning.memory import GIB, Part, overhead, vllm_memory

KEPT_DURING_GENERATION = ("parameters", "reference model")  # what offload_states leaves on the GPU (learner/colocated.py)


def _vllm_parts(cfg: Any, shape: Any, capacity: float):
    r = cfg.rollout
    eager = resolve_enforce_eager(r.enforce_eager, cuda=True)
    return vllm_memory(shape.params, shape.layers, shape.kv_heads, shape.head_dim, shape.intermediate, capacity,
                       r.gpu_memory_utilization, r.max_model_len, r.max_num_batched_tokens, cfg.model.dtype,
                       cuda_graphs=not eager)


def colocated_tables(cfg: Any, shape: Any, learner: list, capacity: Optional[float], table_cls) -> tuple[list, list]:
    """(GPU tables, problems) of one colocated GPU; `learner` is the learner rank's parts (plan.learner_parts)."""
    r = cfg.rollout
    if capacity is None:
        return [table_cls("colocated GPU: learner rank (vLLM share unknown: pass --gpu-memory-gib)", learner,
                          None)], []
    vm = _vllm_parts(cfg, shape, capacity)
    util = f"rollout.gpu_memory_utilization={r.gpu_memory_utilization:g}"
    if r.colocated_memory == "static":
        t = table_cls(f"colocated GPU, static: learner rank and vLLM engine resident together ({util})",
                      learner + vm.parts, capacity)
        problems = []
        if t.total > capacity:
            need = max(0.0, (capacity - sum(p.bytes for p in learner)) / capacity)
            problems.append(f"colocated (static): learner {sum(p.bytes for p in learner) / GIB:.1f} GiB + vLLM "
                            f"{vm.budget / GIB:.1f} GiB = {t.total / GIB:.1f} GiB per GPU, {capacity / GIB:.1f} GiB "
                            f"there; lower rollout.gpu_memory_utilization to {need:.2f} or less (if the KV cache "
                            "still holds a sequence), or set rollout.colocated_memory=sleep")
        return [t], problems
    kept = [p for p in learner if p.name in KEPT_DURING_GENERATION]
    update = table_cls("colocated GPU, sleep, during the update: the learner rank (engine asleep)",
                       learner + [Part("vLLM asleep", 0.0, "weights in host memory (sleep level 1), KV cache freed")],
                       capacity)
    generate = table_cls(f"colocated GPU, sleep, during generation: the engine ({util}) and the learner's kept parts",
                         [Part(f"learner {p.name}", p.bytes, p.how + "; stays on the GPU (offload_states moves the rest)") for p in kept]
                         + [Part("learner runtime", overhead().bytes, overhead().how)] + vm.parts, capacity)
    problems = [f"colocated (sleep), {phase}: {t.total / GIB:.1f} GiB per GPU, {capacity / GIB:.1f} GiB there; "
                "lower rollout.gpu_memory_utilization, raise learner.num_ranks or learner.zero_stage"
                for phase, t in (("during the update", update), ("during generation", generate))
                if t.total > capacity]
    return [update, generate], problems


def layout_lines(cfg: Any, shape: Any, learner: list, capacity: Optional[float]) -> list[str]:
    """Both layouts in three lines: GPUs and the peak per GPU of each, for the same model and settings."""
    if capacity is None:
        return []
    vm = _vllm_parts(cfg, shape, capacity)
    lsum = sum(p.bytes for p in learner)
    kept = sum(p.bytes for p in learner if p.name in KEPT_DURING_GENERATION) + overhead().bytes
    n = cfg.learner.num_ranks
    split_gpus = n + cfg.rollout.num_workers * max(cfg.rollout.num_gpus_per_worker, 1.0)
    g = lambda b: f"{b / GIB:.1f} GiB"  # noqa: E731
    return [f"  split:              {split_gpus:g} GPUs ({n} learner + {cfg.rollout.num_workers} rollout); learner "
            f"GPU {g(lsum)}, rollout GPU {g(vm.budget)}; phases take turns across the two halves",
            f"  colocated, static:  {n} GPUs; per GPU {g(lsum + vm.budget)} (learner + vLLM resident); "
            "generation of the next step can overlap the update (algorithm.rollout_ahead=1)",
            f"  colocated, sleep:   {n} GPUs; per GPU peak {g(max(lsum, kept + vm.budget))} (update {g(lsum)}, "
            f"generation {g(kept + vm.budget)}); plus each phase's moves to and from host memory"]
