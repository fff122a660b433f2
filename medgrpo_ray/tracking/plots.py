"""The run's curves as one PNG next to its TensorBoard logs: reward per (dataset, task) and the main learner
metrics, from `metrics.jsonl` (matplotlib, headless)."""
from __future__ import annotations

import json
from pathlib import Path

LEARNER_PANELS = (("learner/loss", "loss"), ("sft/loss", "SFT loss (answer-token NLL)"), ("learner/kl", "KL to reference"), ("learner/grad_norm", "grad norm"),
                  ("algorithm/samples_trained", "samples trained"))


def _smooth(values: list[float], window: int) -> list[float]:
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path | None:
    """Write `<run_dir>/curves.png` (or `out`); None when the run logged no steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    rows = read_metrics(path) if path.exists() else []
    if not rows:
        return None
    steps = [r["step"] for r in rows]
    reward_keys = sorted({k for r in rows for k in r if k.startswith("reward/") and k.endswith("/raw")
                          and not k.startswith("reward/task/") and k != "reward/raw_mean"})
    eval_keys = sorted({k for r in rows for k in r if k.startswith("eval/") and k not in ("eval/records", "eval/failed_records")})
    window = max(1, len(rows) // 12)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), constrained_layout=True)
    ax = axes[0, 0]
    for k in reward_keys + ["reward/raw_mean"]:
        pts = [(r["step"], r[k]) for r in rows if k in r]
        if not pts:
            continue
        xs, ys = zip(*pts)
        label = "mean (all)" if k == "reward/raw_mean" else k[len("reward/"):-len("/raw")]
        ax.plot(xs, _smooth(list(ys), window), lw=2.5 if k == "reward/raw_mean" else 1.5,
                color="black" if k == "reward/raw_mean" else None, label=label)
    ax.set_title(f"raw reward per (dataset, task), running mean of {window}" if reward_keys else "reward (not logged)")
    ax.set_xlabel("step")
    if reward_keys:
        ax.legend(fontsize=7)
    ax = axes[0, 1]
    for k in eval_keys:
        pts = [(r["step"], r[k]) for r in rows if k in r]
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o", label=k[len("eval/"):])
    ax.set_title("evaluation on the test split" if eval_keys else "evaluation (not run)")
    ax.set_xlabel("step")
    if eval_keys:
        ax.legend(fontsize=7)
    logged = [(k, t) for k, t in LEARNER_PANELS if any(k in r for r in rows)] or list(LEARNER_PANELS[:1])
    for ax, (key, title) in zip([axes[0, 2], axes[1, 0], axes[1, 1], axes[1, 2]], logged):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, lw=1, alpha=0.5)
            ax.plot(xs, _smooth(list(ys), window), lw=2)
        ax.set_title(title + ("" if pts else " (not logged)"))
        ax.set_xlabel("step")
    fig.suptitle(f"{run_dir.name}: {len(rows)} steps (to {max(steps)})")
    out = Path(out) if out else run_dir / "curves.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
