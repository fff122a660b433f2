"""The launch plan: actor groups and placement, token budget, memory per GPU by part, and what cannot fit. Pure:
the config, a model shape and a cluster in, a `Plan` out (cli/launch_plan.py prints it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from medgrpo_ray.config.machine import resolve_enforce_eager
from medgrpo_ray.planning.cluster import Cluster, Placement, actor_groups, place, totals
from medgrpo_ray.config.loader import resolve_reference_memory
from medgrpo_ray.planning.memory import (GIB, Part, activations, logits, model_states, overhead, reference_copy,
                                         vllm_memory, weight_bytes, zero_buffers)
from medgrpo_ray.planning.models import ModelShape

PROMPT_TEXT_TOKENS = 256  # system prompt, question, options (assumed; the video dominates)


@dataclass(frozen=True)
class Tokens:
    visual: int  # per sample
    sample: int  # visual + prompt text + max_new_tokens, capped at rollout.max_model_len
    per_micro_batch: int
    completion_per_micro_batch: int
    samples_per_micro_batch: int


@dataclass(frozen=True)
class GpuTable:
    title: str  # which actor's GPU
    parts: list
    capacity: Optional[float]  # bytes of one GPU, when known

    @property
    def total(self) -> float:
        return sum(p.bytes for p in self.parts)


@dataclass
class Plan:
    cluster: Cluster
    placements: list
    tokens: Tokens
    tables: list = field(default_factory=list)
    problems: list = field(default_factory=list)  # why it cannot run as configured; empty: it fits
    notes: list = field(default_factory=list)
    layouts: list = field(default_factory=list)  # both layouts' GPUs and memory per GPU, one line each


def token_budget(cfg: Any, shape: ModelShape) -> Tokens:
    """Tokens per sample (video at data.max_frames and data.max_pixels, the prompt, rollout.max_new_tokens) and
    per learner micro-batch (learner.micro_batch_size samples, or as many as learner.micro_batch_tokens holds)."""
    d, r, lc = cfg.data, cfg.rollout, cfg.learner
    patches = max(1, d.max_frames // 2)  # temporal patch of 2 frames
    visual = patches * max(1, d.max_pixels // (shape.merge_px ** 2)) + patches * shape.frame_text_tokens
    sample = min(visual + PROMPT_TEXT_TOKENS + r.max_new_tokens, r.max_model_len)
    n = lc.micro_batch_size
    if lc.micro_batch_tokens > 0:
        n = max(1, min(n, lc.micro_batch_tokens // sample))
    return Tokens(visual, sample, n * sample, n * min(r.max_new_tokens, sample), n)


def learner_parts(cfg: Any, shape: ModelShape, tokens: Tokens) -> list[Part]:
    lc, dtype = cfg.learner, cfg.model.dtype
    trainable = shape.params - (shape.vision_params if lc.freeze_vision_tower else 0)
    parts = model_states(shape.params, trainable, lc.zero_stage, lc.num_ranks, dtype)
    parts.append(zero_buffers(shape.params, trainable, lc.zero_stage, lc.num_ranks, dtype))
    act = activations(shape.layers, shape.hidden, shape.intermediate, tokens.per_micro_batch,
                      lc.gradient_checkpointing, dtype)
    lgt = logits(shape.vocab, tokens.per_micro_batch, tokens.completion_per_micro_batch, dtype,
                 lc.completion_only_logits)
    if lc.reference == "colocated" and cfg.algorithm.kl_coef > 0:
        mode = resolve_reference_memory(lc.reference_memory, lc.zero_stage)
        parts.append(reference_copy(shape.params, dtype, mode, lc.num_ranks, act.bytes + lgt.bytes))
    parts += [act, lgt]
    parts.append(overhead())
    return parts


def _gpu_memory(cluster: Cluster, placement: Placement) -> Optional[float]:
    by_name = {n.name: n for n in cluster.nodes}
    known = [by_name[n].gpu_memory for n in placement.nodes if n in by_name and by_name[n].gpu_memory]
    return min(known) if known else None


def _sharers(gpus_each: float) -> int:
    """Actors of a group on one GPU: 1 for a whole GPU (or more), floor(1 / share) for a fraction."""
    return 1 if gpus_each >= 1 else max(1, int(1 / gpus_each + 1e-9))


def _over(table: GpuTable, what: str) -> str:
    top = sorted(table.parts, key=lambda p: -p.bytes)[:3]
    largest = ", ".join(f"{p.name} {p.bytes / GIB:.1f} GiB" for p in top)
    return (f"{what}: does not fit: {table.total / GIB:.1f} GiB needed per GPU, {table.capacity / GIB:.1f} GiB "
            f"there; largest parts: {largest}")


def build_plan(cfg: Any, shape: ModelShape, cluster: Cluster) -> Plan:
    groups = actor_groups(cfg)
    placements = place(groups, cluster)
    tokens = token_budget(cfg, shape)
    plan = Plan(cluster, placements, tokens)
    _check_resources(plan, groups)
    by_group = {p.group.name: p for p in placements}
    lc, r = cfg.learner, cfg.rollout
    if cfg.placement == "colocated" and lc.num_gpus_per_rank > 0:
        from medgrpo_ray.planning.colocated import colocated_tables, layout_lines

        capacity = _gpu_memory(cluster, by_group["learner"])
        learner = learner_parts(cfg, shape, tokens)
        tables, problems = colocated_tables(cfg, shape, learner, capacity, GpuTable)
        plan.tables += tables
        plan.problems += problems
        plan.layouts = layout_lines(cfg, shape, learner, capacity)
    elif lc.num_gpus_per_rank > 0:
        parts = learner_parts(cfg, shape, tokens)
        n = _sharers(lc.num_gpus_per_rank)
        if n > 1:
            parts = [Part(p.name, p.bytes * n, f"{p.how}; x{n} ranks sharing the GPU") for p in parts]
        table = GpuTable(f"learner rank (ZeRO-{lc.zero_stage} over {lc.num_ranks} ranks)", parts,
                         _gpu_memory(cluster, by_group["learner"]))
        plan.tables.append(table)
        from medgrpo_ray.planning.colocated import layout_lines

        plan.layouts = layout_lines(cfg, shape, parts, table.capacity)
        if table.capacity and table.total > table.capacity:
            plan.problems.append(_over(table, f"learner (learner.zero_stage={lc.zero_stage}, "
                                              f"learner.num_ranks={lc.num_ranks})") +
                                 "; raise learner.num_ranks or learner.zero_stage, or lower the micro-batch")
    if cfg.placement == "split" and r.num_gpus_per_worker > 0 and r.backend == "vllm":
        _rollout_table(plan, cfg, shape, _gpu_memory(cluster, by_group["rollout"]))
    if "reference" in by_group and lc.num_gpus_per_rank > 0:
        w = weight_bytes(cfg.model.dtype)
        plan.tables.append(GpuTable("reference worker (forward only)", [
            reference_copy(shape.params, cfg.model.dtype),
            Part("logits", tokens.completion_per_micro_batch * shape.vocab * w,
                 "one micro-batch's logits at the completion positions, no gradient"),
            overhead()], _gpu_memory(cluster, by_group["reference"])))
    if lc.num_gpus_per_rank <= 0 and r.num_gpus_per_worker <= 0:
        plan.notes.append("no actor asks for a GPU: the run is CPU only; no per-GPU table")
    return plan


def _rollout_table(plan: Plan, cfg: Any, shape: ModelShape, capacity: Optional[float]) -> None:
    r = cfg.rollout
    if capacity is None:
        plan.notes.append("rollout GPU memory unknown: vLLM's KV cache not estimated (pass --gpu-memory-gib)")
        return
    eager = resolve_enforce_eager(r.enforce_eager, cuda=True)
    vm = vllm_memory(shape.params, shape.layers, shape.kv_heads, shape.head_dim, shape.intermediate, capacity,
                     r.gpu_memory_utilization, r.max_model_len, r.max_num_batched_tokens, cfg.model.dtype,
                     cuda_graphs=not eager)
    n = _sharers(r.num_gpus_per_worker)
    table = GpuTable(f"rollout worker (vLLM at gpu_memory_utilization={r.gpu_memory_utilization:g}"
                     + (f", {n} workers per GPU" if n > 1 else "") + ")",
                     [Part(p.name, p.bytes * n, p.how) for p in vm.parts], capacity)
    plan.tables.append(table)
    if n * r.gpu_memory_utilization > 1.0:
        plan.problems.append(f"rollout: {n} vLLM engines share a GPU (rollout.num_gpus_per_worker="
                             f"{r.num_gpus_per_worker:g}) at rollout.gpu_memory_utilization="
                             f"{r.gpu_memory_utilization:g} each, more than the whole GPU; lower it to "
                             f"{1.0 / n:.2f} or less, or give each worker a whole GPU")
    if vm.kv_tokens < r.max_model_len:
        plan.problems.append(
            f"rollout: vLLM's KV cache holds {vm.kv_tokens} tokens, fewer than one rollout.max_model_len="
            f"{r.max_model_len} sequence (vLLM refuses to start): weights {vm.parts[0].bytes / GIB:.1f} GiB and "
            f"activation peak {vm.parts[1].bytes / GIB:.1f} GiB of a {vm.budget / GIB:.1f} GiB budget; raise "
            "rollout.gpu_memory_utilization, or lower rollout.max_model_len / rollout.max_num_batched_tokens")
        return
    a = cfg.algorithm
    per_worker = -(-a.prompts_per_step // r.num_workers) * a.group_size * plan.tokens.sample
    plan.notes.append(f"rollout KV cache: {vm.kv_tokens:,} tokens per worker ({vm.kv_bytes_per_token / 1024:.0f} "
                      f"KiB each); a step asks up to {per_worker:,} per worker"
                      + (" (fewer fit at once: vLLM queues the rest)" if per_worker > vm.kv_tokens else ""))


def _check_resources(plan: Plan, groups: list) -> None:
    cpus, gpus = totals(groups)
    have_cpus = sum(n.cpus for n in plan.cluster.nodes)
    have_gpus = sum(n.gpus for n in plan.cluster.nodes)
    if gpus > have_gpus + 1e-9:
        plan.problems.append(f"resources: the run reserves {gpus:g} GPUs, the cluster has {have_gpus:g} "
                             "(rollout.num_workers x rollout.num_gpus_per_worker + learner.num_ranks x "
                             "learner.num_gpus_per_rank, + reference workers)")
    if cpus > have_cpus + 1e-9:
        plan.problems.append(f"resources: the run reserves {cpus:g} CPUs, the cluster has {have_cpus:g} "
                             "(rollout.num_cpus_per_worker, learner.num_cpus_per_rank; ray.num_cpus for a local one)")
    unplaced = [p.group.name for p in plan.placements if None in p.nodes]
    if unplaced and not plan.problems:
        plan.problems.append(f"resources: no node has room for every actor of {', '.join(unplaced)} (the totals "
                             "fit but not per node); use fewer CPUs/GPUs per actor or larger nodes")
