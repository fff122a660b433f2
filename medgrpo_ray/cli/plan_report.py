"""The launch plan as text: cluster, model, tokens, actor groups with placement, one memory table per GPU kind,
notes, and the verdict (what does not fit, naming the part and the setting)."""
from __future__ import annotations

from collections import Counter
from typing import Any

GIB = 1024 ** 3


def _count(n: float) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"


def _placement(nodes: list) -> str:
    if not nodes:
        return "-"
    counts = Counter("UNPLACED" if n is None else n for n in nodes)
    return ", ".join(f"{name} x{k}" for name, k in counts.items())


def _groups(plan: Any) -> list[str]:
    rows = [f"  {'group':<34}{'count':>6}{'CPUs':>7}{'GPUs':>7}  placement"]
    cpus = gpus = 0.0
    for p in plan.placements:
        g = p.group
        cpus, gpus = cpus + g.count * g.cpus, gpus + g.count * g.gpus
        label = f"{g.name} ({g.role})" if g.role else g.name
        rows.append(f"  {label:<34}{g.count:>6}{g.cpus:>7g}{g.gpus:>7g}  {_placement(p.nodes)} ({g.placement})")
        spans = {n for n in p.nodes if n is not None}
        if g.name == "learner" and len(spans) > 1:
            rows.append(f"  {'':<34}learner ranks span {len(spans)} nodes: the ZeRO collective crosses nodes")
    have_c = sum(n.cpus for n in plan.cluster.nodes)
    have_g = sum(n.gpus for n in plan.cluster.nodes)
    rows.append(f"  {'total reserved':<34}{'':>6}{cpus:>7g}{gpus:>7g}  of {have_c:g} CPUs, {have_g:g} GPUs "
                "(each count x per-actor CPUs/GPUs)")
    return rows


def _table(t: Any) -> list[str]:
    rows = [f"memory per GPU: {t.title}", f"  {'part':<24}{'GiB':>7}  how"]
    for p in t.parts:
        rows.append(f"  {p.name:<24}{p.bytes / GIB:>7.1f}  {p.how}")
    if t.capacity:
        free = t.capacity - t.total
        verdict = f"fits, {free / GIB:.1f} GiB spare" if free >= 0 else f"DOES NOT FIT, {-free / GIB:.1f} GiB over"
        rows.append(f"  {'total':<24}{t.total / GIB:>7.1f}  of {t.capacity / GIB:.1f} GiB per GPU: {verdict}")
    else:
        rows.append(f"  {'total':<24}{t.total / GIB:>7.1f}  (GPU memory unknown: --gpu-memory-gib)")
    return rows


def render(plan: Any, cfg: Any, shape: Any, title: str) -> str:
    tk = plan.tokens
    lines = [f"{title} (dry run: no Ray worker started, no model loaded)",
             f"cluster: {plan.cluster.description}",
             f"model: {shape.name}, {_count(shape.params)} parameters (vision {_count(shape.vision_params)}), "
             f"{shape.layers} layers, hidden {shape.hidden}, vocab {shape.vocab}, {shape.kv_heads} KV heads x "
             f"{shape.head_dim}; {cfg.model.dtype}; from {shape.source or 'the table of known architectures'}",
             f"tokens: ~{tk.sample:,} per sample ({tk.visual:,} video + 256 prompt text (assumed) + "
             f"{cfg.rollout.max_new_tokens} new, at most rollout.max_model_len); learner micro-batch "
             f"{tk.samples_per_micro_batch} sample(s) = {tk.per_micro_batch:,} tokens, "
             f"gradient checkpointing {'on' if cfg.learner.gradient_checkpointing else 'off'}",
             "", "actor groups (CPUs and GPUs per actor; the driver reserves none)"]
    lines += _groups(plan)
    for t in plan.tables:
        lines += [""] + _table(t)
    if getattr(plan, "layouts", None):
        lines += ["", f"the two layouts for this model and these settings (configured: placement={cfg.placement}; "
                      "docs/architecture.md, 'Two layouts'):"] + plan.layouts
    if plan.notes:
        lines += ["", "notes:"] + [f"  - {n}" for n in plan.notes]
    lines.append("")
    if plan.problems:
        lines.append("result: DOES NOT FIT / CANNOT START")
        lines += [f"  - {p}" for p in plan.problems]
    else:
        lines.append("result: fits: the cluster has the resources and every GPU the memory (estimates: "
                     "docs/launch_plan.md)")
    return "\n".join(lines)
