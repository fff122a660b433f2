"""The normalization ablation (launch/ablate_normalization.py): does multi-dataset GRPO need MedGRPO's
cross-dataset reward normalization?

One synthetic mixture whose sources differ in difficulty on purpose (the same continuous tasks, STG and TAL, on
an easy, a middling and a hard source, plus CVS), one SFT checkpoint, normalization statistics from that SFT
model's answers on the training records, then GRPO arms that differ only in how rewards become advantages:

    norm        logistic normalization per (dataset, task), group std division (MedGRPO)
    raw         raw rewards, group std division (plain multi-dataset GRPO)
    raw_nostd   raw rewards, no std division (Dr. GRPO-style advantages r - mean_g)
    norm_nostd  normalization without the std division

each for several seeds with the same steps and data, each evaluated on the test split. Every stage is one of the
project's entry points in a subprocess (pipeline.run_stage), so an interrupted ablation resumes where it stopped.
Pure parts here (the plan, the table, the figure's data); running is in `run_ablation`.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from medgrpo_ray.io.atomic import atomic_write_json, atomic_write_text
from medgrpo_ray.workflows.pipeline import PipelinePaths, Stage, entry, export_dir, require_checkout, run_stages

ARMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "norm": ("logistic normalization, std division (MedGRPO)",
             ("normalization.enabled=true", "algorithm.adv_std_normalize=true")),
    "raw": ("raw rewards, std division (GRPO)", ("normalization.enabled=false", "algorithm.adv_std_normalize=true")),
    "raw_nostd": ("raw rewards, no std division", ("normalization.enabled=false", "algorithm.adv_std_normalize=false")),
    "norm_nostd": ("logistic normalization, no std division",
                   ("normalization.enabled=true", "algorithm.adv_std_normalize=false")),
}
DEFAULT_ARMS = ("norm", "raw", "raw_nostd", "norm_nostd")
# The mixture: STG and TAL on an easy, a middling and a hard source (synthetic_scene.with_difficulty), CVS as
# the discrete task on its own source at its usual settings.
DEFAULT_DIFFICULTY = {"CoPESD": 0.0, "CholecTrack20": 0.5, "EgoSurgery": 1.0}
DEFAULT_SOURCES = ("CoPESD", "CholecTrack20", "EgoSurgery", "Cholec80_CVS")
DEFAULT_TASKS = ("stg", "tal", "cvs_assessment")


@dataclass
class AblationSettings:
    out_dir: str
    arms: Sequence[str] = DEFAULT_ARMS
    seeds: Sequence[int] = (0, 1, 2)
    sft_config: str = "configs/ablation_sft_cpu.yaml"
    grpo_config: str = "configs/ablation_grpo_cpu.yaml"
    sft_overrides: list[str] = field(default_factory=list)
    grpo_overrides: list[str] = field(default_factory=list)
    infer_overrides: list[str] = field(default_factory=list)
    sources: Sequence[str] = DEFAULT_SOURCES
    tasks: Sequence[str] = DEFAULT_TASKS
    difficulty: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_DIFFICULTY))
    n_train: int = 240
    n_test: int = 96
    data_seed: int = 0
    chunk_size: int = 8
    python: str = ""

    def __post_init__(self) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown or not self.arms:
            raise ValueError(f"unknown arm(s) {unknown}; choose from {sorted(ARMS)}")
        if not self.seeds:
            raise ValueError("give at least one seed")


@dataclass(frozen=True)
class AblationPaths(PipelinePaths):
    """The pipeline's layout (sft/, norm_stats.json, logs/, stages/) plus the mixture, one inference directory
    per model under infer/, and the arms' runs under arms/."""

    @property
    def bench(self) -> Path:
        return self.out / "data"

    def infer(self, name: str) -> Path:
        return self.out / "infer" / name

    def arm_run(self, arm: str, seed: int) -> Path:
        return self.out / "arms" / run_name(arm, seed)


def run_name(arm: str, seed: int) -> str:
    return f"{arm}_s{seed}"


def plan(s: AblationSettings, paths: AblationPaths, prepare: Callable[[], dict]) -> list[Stage]:
    """Data -> SFT -> SFT inference (test split; training records for the statistics) -> statistics -> for each
    seed, each arm: GRPO from the SFT export, then its test-split inference. Seed-major, so a run cut short
    still holds every arm of its first seeds."""
    py, bench = s.python, paths.bench
    data = [f"data.train_path={bench / 'train.json'}", f"data.test_path={bench / 'test.json'}",
            f"data.video_root={bench}", "data.tasks=[" + ",".join(s.tasks) + "]", "data.datasets=[]"]

    def infer(model: Path, records: Path, name: str, *extra: str) -> tuple[str, ...]:
        return entry(py, "infer.py", str(model), "--records", str(records), "--out", str(paths.infer(name)),
                     "--video-root", str(bench), "--chunk-size", str(s.chunk_size), "--config", s.sft_config,
                     *extra, *s.infer_overrides)

    stages = [
        Stage("data", "synthetic mixture of unequal difficulty", run=prepare),
        Stage("sft", "supervised fine-tuning (one checkpoint for every arm)",
              entry(py, "sft.py", "--config", s.sft_config, *data, "sft.evaluate=false",
                    f"logging.output_dir={paths.out}", "run_name=sft", "resume=auto", *s.sft_overrides)),
        Stage("infer_sft", "SFT model on the test split", infer(paths.sft_run, bench / "test.json", "sft")),
        Stage("infer_sft_stats", "SFT model on the training records (for the statistics)",
              infer(paths.sft_run, bench / "train.json", "sft_stats", "--no-eval")),
        Stage("norm_stats", "normalization statistics from the SFT model's training-record answers",
              entry(py, "norm_stats.py", str(paths.infer("sft_stats") / "results.json"), "--out",
                    str(paths.norm_stats))),
    ]
    for seed in s.seeds:
        for arm in s.arms:
            name = run_name(arm, seed)
            cmd = lambda arm=arm, seed=seed, name=name: entry(  # noqa: E731 - built when the stage starts
                py, "train.py", "--config", s.grpo_config, *data, f"model.path={export_dir(paths.sft_run)}",
                f"normalization.stats_path={paths.norm_stats}", *ARMS[arm][1], f"seed={seed}",
                "algorithm.eval_every=0", f"logging.output_dir={paths.out / 'arms'}", f"run_name={name}",
                "resume=auto", *s.grpo_overrides)
            stages.append(Stage(f"grpo_{name}", f"GRPO, {ARMS[arm][0]}, seed {seed}", cmd))
            stages.append(Stage(f"infer_{name}", f"{name}: test split",
                                infer(paths.arm_run(arm, seed), bench / "test.json", name)))
    return stages


# ---- results ---------------------------------------------------------------------------------------------------
def evaluate_run(infer_dir: Path):
    """The evaluation (with its per-record statistics) of one inference run's results.json, None if absent."""
    from medgrpo_ray.evaluation import evaluate
    from medgrpo_ray.evaluation.inputs import load_results

    path = infer_dir / "results.json"
    return evaluate(dict(load_results(path)[0])) if path.is_file() else None


def changes_over_sft(sft, arms: dict, resamples: int = 1000, seed: int = 0) -> dict:
    """Per (dataset or "all", metric) computed for SFT and an arm: the SFT value and, per arm, the change over SFT
    pooled over its seeds and per seed, each with its paired-bootstrap interval over the test records
    (evaluation/compare.py). `sft`: an EvalReport; `arms`: arm -> seed -> EvalReport."""
    from medgrpo_ray.evaluation.compare import compare_reports

    rows: dict[tuple[str, str], dict] = {}
    for arm, by_seed in arms.items():
        seeds = sorted(by_seed)
        if not seeds:
            continue
        for r in compare_reports(sft, [by_seed[k] for k in seeds], resamples, seed=seed).rows:
            row = rows.setdefault((r.dataset or "all", r.metric), {"sft": r.diff.a, "arms": {}})
            row["arms"][arm] = {"pooled": r.diff.to_json(), "per_seed": {}}
        for k in seeds:
            for r in compare_reports(sft, by_seed[k], resamples, seed=seed).rows:
                cell = rows.get((r.dataset or "all", r.metric), {}).get("arms", {}).get(arm)
                if cell is not None:
                    cell["per_seed"][k] = r.diff.to_json()
    order = lambda key: (key[0] != "all", key[0], key[1])  # noqa: E731 - the leaderboard numbers first
    return {key: rows[key] for key in sorted(rows, key=order)}


def _change(d: dict, interval: bool) -> str:
    star = "*" if d["excludes_zero"] else ""
    if not interval or d["low"] != d["low"]:
        return f"{d['delta']:+.3f}{star}"
    return f"{d['delta']:+.3f} [{d['low']:+.2f}, {d['high']:+.2f}]" + (f" {star}" if star else "")


def table_markdown(rows: dict, arms: Sequence[str], seeds: Sequence[int]) -> str:
    """One row per (dataset, metric), "all" = the leaderboard number: the SFT value, then per arm the change over
    SFT pooled over seeds with its paired interval, and each seed's change in brackets (* = interval excludes 0)."""
    head = "| dataset | metric | SFT | " + " | ".join(f"{a} (change)" for a in arms) + " |"
    lines = [head, "|" + "---|" * (3 + len(arms))]
    for (ds, metric), row in rows.items():
        cells = []
        for a in arms:
            info = row["arms"].get(a)
            if info is None:
                cells.append("n/a")
                continue
            per = ", ".join(_change(info["per_seed"][k], False) for k in seeds if k in info["per_seed"])
            cells.append(f"{_change(info['pooled'], True)} ({per})")
        lines.append(f"| {ds} | {metric} | {row['sft']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def share_table(shares: dict[str, dict[str, list[tuple[int, float]]]], arms: Sequence[str]) -> str:
    """Mean over steps (and seeds) of each (dataset, task)'s share of the step's |advantage|, per arm: where the
    policy gradient went. A balanced sampler gives each pair about the same share of samples."""
    pairs = sorted({p for a in arms for p in shares.get(a, {})})
    lines = ["| dataset/task | " + " | ".join(arms) + " |", "|" + "---|" * (1 + len(arms))]
    for pair in pairs:
        cells = []
        for a in arms:
            pts = shares.get(a, {}).get(pair, [])
            cells.append(f"{sum(v for _, v in pts) / len(pts):.3f}" if pts else "n/a")
        lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_curves(metrics_path: Path, prefix: str = "reward/", suffix: str = "/raw") -> dict[str, list[tuple[int, float]]]:
    """<dataset>/<task> -> [(step, value)] for the per-pair keys `prefix<ds>/<task>suffix` of a metrics.jsonl."""
    from medgrpo_ray.tracking.plots import read_metrics

    out: dict[str, list[tuple[int, float]]] = {}
    for row in read_metrics(metrics_path):
        for k, v in row.items():
            if k.startswith(prefix) and k.endswith(suffix) and k.count("/") == 3 and not k.startswith("reward/task/"):
                out.setdefault(k[len(prefix):-len(suffix)], []).append((int(row["step"]), float(v)))
    return out


def mean_curve(runs: Sequence[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """The per-step mean over seeds of one pair's curve (steps a seed did not log are left out of that mean)."""
    by_step: dict[int, list[float]] = {}
    for run in runs:
        for step, v in run:
            by_step.setdefault(step, []).append(v)
    return [(step, sum(vs) / len(vs)) for step, vs in sorted(by_step.items())]


def plot_arms(curves: dict[str, dict[str, dict[str, list[tuple[int, float]]]]], out: Path, window: int = 3) -> Path:
    """One PNG: a column per arm; row 1 the raw reward per (dataset, task), row 2 its share of the step's
    |advantage|; each line the mean over seeds, smoothed over `window` steps. `curves`: arm -> panel -> pair ->
    points, panel in ("reward", "adv_share")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medgrpo_ray.tracking.plots import _smooth

    arms = list(curves)
    pairs = sorted({p for a in arms for panel in curves[a].values() for p in panel})
    colours = {p: plt.cm.tab10(i % 10) for i, p in enumerate(pairs)}
    fig, axes = plt.subplots(2, len(arms), figsize=(5 * len(arms), 8), squeeze=False, constrained_layout=True)
    titles = {"reward": "raw reward (mean over seeds)", "adv_share": "share of |advantage|"}
    for j, arm in enumerate(arms):
        for i, panel in enumerate(("reward", "adv_share")):
            ax = axes[i, j]
            for pair, pts in sorted(curves[arm].get(panel, {}).items()):
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, _smooth(list(ys), window), color=colours[pair], label=pair)
            ax.set_title(f"{arm}: {titles[panel]}")
            ax.set_xlabel("GRPO step")
            if panel == "adv_share":
                ax.set_ylim(0, 1)
            if j == 0:
                ax.legend(fontsize=7)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def collect(s: AblationSettings, paths: AblationPaths) -> dict:
    """Read every finished arm's evaluation and curves; write ablation.json, ablation.md and curves.png."""
    sft = evaluate_run(paths.infer("sft"))
    if sft is None:
        raise FileNotFoundError(f"{paths.infer('sft') / 'results.json'}: the SFT model's test results are missing; "
                                "rerun the same command (the inference stage reruns)")
    arm_metrics: dict[str, dict[int, object]] = {}
    curves: dict[str, dict[str, dict]] = {}
    for arm in s.arms:
        rewards, shares = {}, {}
        for seed in s.seeds:
            report = evaluate_run(paths.infer(run_name(arm, seed)))
            if report is not None:
                arm_metrics.setdefault(arm, {})[seed] = report
            mpath = paths.arm_run(arm, seed) / "metrics.jsonl"
            if mpath.is_file():
                for pair, pts in read_curves(mpath).items():
                    rewards.setdefault(pair, []).append(pts)
                for pair, pts in read_curves(mpath, "signal/", "/adv_share").items():
                    shares.setdefault(pair, []).append(pts)
        curves[arm] = {"reward": {p: mean_curve(r) for p, r in rewards.items()},
                       "adv_share": {p: mean_curve(r) for p, r in shares.items()}}
    rows = changes_over_sft(sft, arm_metrics)
    md = table_markdown(rows, list(s.arms), list(s.seeds))
    png = plot_arms(curves, paths.out / "curves.png")
    summary = {"arms": {a: ARMS[a][0] for a in s.arms}, "seeds": list(s.seeds),
               "rows": [{"dataset": ds, "metric": m, **row} for (ds, m), row in rows.items()],
               "reward_curves": {a: c["reward"] for a, c in curves.items()},
               "adv_share_curves": {a: c["adv_share"] for a, c in curves.items()}}
    atomic_write_json(paths.out / "ablation.json", summary, indent=1)
    shares = share_table({a: c["adv_share"] for a, c in curves.items()}, list(s.arms))
    atomic_write_text(
        paths.out / "ablation.md",
        "Change of each test metric over the SFT checkpoint (dataset \"all\": the leaderboard number), pooled over "
        "seeds, with its 95 % paired-bootstrap interval over the test records (each seed's change in brackets; `*`: "
        "the interval excludes 0; docs/evaluation.md).\n\n" + md
        + "\nShare of the step's |advantage| per (dataset, task), mean over steps and seeds (where the gradient "
        "went):\n\n" + shares)
    return {"table": md, "shares": shares, "png": str(png)}


# ---- running ---------------------------------------------------------------------------------------------------
def prepare_data(s: AblationSettings, paths: AblationPaths) -> Callable[[], dict]:
    """The data stage: the mixture, generated once (a finished data stage is skipped on rerun)."""
    def run() -> dict:
        from medgrpo_ray.data.synthetic import generate

        manifest = generate(paths.bench, seed=s.data_seed, n_train=s.n_train, n_test=s.n_test,
                            sources=list(s.sources), tasks=list(s.tasks), difficulty=dict(s.difficulty))
        print(f"{paths.bench}: " + ", ".join(f"{k} {v['records']} records {v['by_task']}"
                                            for k, v in manifest["splits"].items()), flush=True)
        return {"splits": manifest["splits"], "difficulty": manifest.get("difficulty", {})}
    return run


def run_ablation(s: AblationSettings, load_config: Callable[[str | None, Sequence[str]], object]) -> dict:
    """Run every unfinished stage in order, then write the table and the figure; returns where they are."""
    import sys

    s.python = s.python or sys.executable
    paths = AblationPaths(Path(s.out_dir).expanduser().resolve())
    require_checkout()
    paths.out.mkdir(parents=True, exist_ok=True)
    load_config(s.sft_config, s.sft_overrides)  # config errors show now, not after SFT
    load_config(s.grpo_config, s.grpo_overrides)
    stages = plan(s, paths, prepare_data(s, paths))
    t0 = time.perf_counter()
    run_stages(stages, paths, dict(os.environ, PYTHONUNBUFFERED="1"), label="ablation")
    out = collect(s, paths)
    print(f"\n[ablation] {len(stages)} stages, this call {time.perf_counter() - t0:.0f} s\n\n{out['table']}\n"
          f"{out['shares']}\n"
          f"wrote {paths.out / 'ablation.md'}, ablation.json and {out['png']}", flush=True)
    return out
