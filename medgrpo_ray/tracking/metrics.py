"""Step metrics: per-(dataset, task) reward means, namespaced keys, JSONL + TensorBoard + console output."""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from medgrpo_ray.io.atomic import atomic_write_text


def reward_metrics(rows: Iterable[tuple[str, str, float | None, float | None]]) -> dict[str, float]:
    """rows: (dataset, task, raw reward or None, normalized reward or None) per sample ->
    reward/<dataset>/<task>/{raw,norm}, reward/task/<task>/raw, reward/raw_mean, reward/no_reward_frac."""
    per: dict[str, list[float]] = defaultdict(list)
    n = missing = 0
    for ds, task, raw, norm in rows:
        n += 1
        if raw is None:
            missing += 1
            continue
        per[f"reward/{ds}/{task}/raw"].append(raw)
        per[f"reward/task/{task}/raw"].append(raw)
        per["reward/raw_mean"].append(raw)
        if norm is not None:
            per[f"reward/{ds}/{task}/norm"].append(norm)
            per["reward/norm_mean"].append(norm)
    out = {k: sum(v) / len(v) for k, v in per.items()}
    out["reward/no_reward_frac"] = missing / n if n else 0.0
    return out


class MetricsLogger:
    """Appends one JSON line per step to `metrics.jsonl` (and one per sample to `rollouts.jsonl`, the input
    `launch/norm_stats.py` takes) and mirrors scalars to TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.rollouts = Path(run_dir) / "rollouts.jsonl"
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after `step` (by a run that died after its last checkpoint) before resuming."""
        for path in (self.path, self.rollouts):
            if not path.exists():
                continue
            keep = [l for l in path.read_text().splitlines() if l.strip() and json.loads(l)["step"] <= step]
            atomic_write_text(path, "".join(l + "\n" for l in keep))

    def log_rollouts(self, step: int, rows: Iterable[dict]) -> None:
        """One line per sample: step, group, dataset, task, raw_reward (None = no reward), reason, completion."""
        with self.rollouts.open("a") as f:
            for r in rows:
                f.write(json.dumps({"step": step, **r}, ensure_ascii=False) + "\n")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **clean}, sort_keys=True) + "\n")
        if self.tb is not None:
            for k, v in clean.items():
                self.tb.add_scalar(k, v, step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def console_line(step: int, total: int, m: dict[str, float]) -> str:
    """A compact one-line summary: step, mean raw reward, raw reward per (dataset, task), loss and KL (or why
    nothing was trained), failed groups, evaluation numbers when present, step time."""
    nan = float("nan")
    tasks = " ".join(f"{k[len('reward/'):-len('/raw')]}={v:.3f}" for k, v in sorted(m.items())
                     if k.startswith("reward/") and k.endswith("/raw") and not k.startswith("reward/task/"))
    evals = " ".join(f"{k[len('eval/'):]}={v:.3f}" for k, v in sorted(m.items())
                     if k.startswith("eval/") and k not in ("eval/records", "eval/failed_records"))
    if "sft/loss" in m:  # a supervised step
        line = f"step {step}/{total} sft loss={m['sft/loss']:.4f} epoch={m.get('sft/epoch', nan):.2f}"
        if m.get("sft/failed_records"):
            line += f" failed={int(m['sft/failed_records'])}"
        return line + (f" | eval {evals}" if evals else "") + f" step_s={m.get('timing_s/step', nan):.1f}"
    if "reward/raw_mean" in m:
        line = f"step {step}/{total} reward={m['reward/raw_mean']:.3f} [{tasks}]"
    else:
        line = f"step {step}/{total} reward=none"
    if m.get("algorithm/samples_trained", 1) == 0:
        why = []
        if m.get("algorithm/zero_variance_groups"):
            why.append(f"{int(m['algorithm/zero_variance_groups'])} zero-variance groups")
        if m.get("rollout/failed_groups"):
            why.append(f"{int(m['rollout/failed_groups'])} failed groups")
        line += " no samples trained" + (f" ({', '.join(why)})" if why else "")
    else:
        line += f" loss={m.get('learner/loss', nan):.4f} kl={m.get('learner/kl', nan):.4f}"
    if m.get("rollout/failed_groups"):
        line += f" failed={int(m['rollout/failed_groups'])}"
    if evals:
        line += f" | eval {evals}"
    return line + f" step_s={m.get('timing_s/step', nan):.1f}"
