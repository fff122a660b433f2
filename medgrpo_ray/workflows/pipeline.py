"""The MedGRPO workflow as one resumable command (launch/pipeline.py).

SFT -> greedy inference on the test split -> evaluation table -> normalization statistics from the SFT model's
results -> GRPO from the SFT export with those statistics -> inference -> evaluation table; then both tables side
by side. Every stage is the project's own entry point (launch/sft.py, launch/infer.py, launch/norm_stats.py,
launch/train.py) in a subprocess, exactly as a user would run it, each on its own local Ray cluster (or the one
RAY_ADDRESS names). A finished stage leaves `stages/<name>.json`; rerunning the same command skips finished
stages, and an interrupted one resumes (`resume=auto` for SFT and GRPO, the same --out for inference).

Why the statistics come from the training split by default: GRPO sees training records, so p50 and IQR of the
SFT policy's rewards on those records are what map "as good as SFT" to 0.5 during GRPO; test answers never feed
into training (`--stats-from test` is there for comparison with a published recipe).

The stage plan and the comparison are pure functions (no subprocess, no Ray), tested in milliseconds.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from medgrpo_ray.io.atomic import atomic_write_json, atomic_write_text

ROOT = Path(__file__).resolve().parents[2]  # the checkout: launch/ and configs/ are resolved from it
STAGES_DIR = "stages"


@dataclass(frozen=True)
class PipelinePaths:
    """Where each stage writes under the pipeline's output directory."""

    out: Path

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def test_records(self) -> Path:
        return self.data / "test.json"

    @property
    def eval_split(self) -> Path:
        """The synthetic test split sized for evaluation (data/synthetic_eval.py), when the pipeline builds one."""
        return self.data / "eval_split"

    @property
    def stats_records(self) -> Path:
        return self.data / "stats_records.json"

    @property
    def sft_run(self) -> Path:
        return self.out / "sft"

    @property
    def grpo_run(self) -> Path:
        return self.out / "grpo"

    @property
    def norm_stats(self) -> Path:
        return self.out / "norm_stats.json"

    def infer(self, name: str) -> Path:
        return self.out / f"infer_{name}"

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    def marker(self, stage: str) -> Path:
        return self.out / STAGES_DIR / f"{stage}.json"


@dataclass
class PipelineSettings:
    out_dir: str
    sft_config: str = "configs/sft_cpu.yaml"
    grpo_config: str = "configs/grpo_from_sft_cpu.yaml"
    sft_overrides: list[str] = field(default_factory=list)
    grpo_overrides: list[str] = field(default_factory=list)
    infer_overrides: list[str] = field(default_factory=list)
    stats_from: str = "train"  # train | test: whose SFT results give the normalization statistics
    test_min_records: int = 60  # synthetic data: a test split with this many records per task (TAL/STG: per source)
    chunk_size: int = 8
    python: str = sys.executable


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    cmd: tuple[str, ...] | Callable[[], tuple[str, ...]] = ()  # a subprocess (built when the stage starts)
    run: Callable[[], dict] | None = None                      # or a stage done in-process

    def command(self) -> tuple[str, ...]:
        return tuple(self.cmd()) if callable(self.cmd) else tuple(self.cmd)


def entry(python: str, script: str, *args: str) -> tuple[str, ...]:
    return (python, str(ROOT / "launch" / script), *args)


def export_dir(run_dir: Path) -> Path:
    """The HF export of a run's latest checkpoint (launch/sft.py and launch/train.py write it)."""
    from medgrpo_ray.checkpoint.local import find_latest

    latest = find_latest(run_dir / "checkpoints")
    if latest is None or not (latest / "hf" / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir}: no checkpoint with an hf/ export (is checkpoint.export_hf false?)")
    return latest / "hf"


def plan(s: PipelineSettings, paths: PipelinePaths, video_root: str, prepare: Callable[[], dict],
         test_video_root: str | None = None) -> list[Stage]:
    """The stages in order. `prepare` writes the filtered records files; GRPO's model path is the SFT export,
    resolved when the GRPO stage starts (the SFT stage must have run). Test records resolve their videos under
    `test_video_root` (default `video_root`)."""
    py, out = s.python, paths.out
    run_args = lambda name: [f"logging.output_dir={out}", f"run_name={name}", "resume=auto"]  # noqa: E731

    def infer(model: Path, records: Path, name: str, *extra: str) -> tuple[str, ...]:
        root = (test_video_root or video_root) if records == paths.test_records else video_root
        return entry(py, "infer.py", str(model), "--records", str(records), "--out", str(paths.infer(name)),
                     "--video-root", root, "--chunk-size", str(s.chunk_size), "--config", s.sft_config, *extra,
                     *s.infer_overrides)

    stats_input = paths.infer("sft_stats") if s.stats_from == "train" else paths.infer("sft")
    stages = [
        Stage("data", "records of the configured tasks (test split; training records for the statistics)", run=prepare),
        Stage("sft", "supervised fine-tuning", entry(py, "sft.py", "--config", s.sft_config, "sft.evaluate=false",
                                                    *run_args("sft"), *s.sft_overrides)),
        Stage("infer_sft", "SFT model: inference on the test split + evaluation",
              infer(paths.sft_run, paths.test_records, "sft")),
    ]
    if s.stats_from == "train":
        stages.append(Stage("infer_sft_stats", "SFT model: inference on the training records (for the statistics)",
                            infer(paths.sft_run, paths.stats_records, "sft_stats", "--no-eval")))
    stages += [
        Stage("norm_stats", f"normalization statistics from the SFT model's {s.stats_from} results",
              entry(py, "norm_stats.py", str(stats_input / "results.json"), "--out", str(paths.norm_stats))),
        Stage("grpo", "GRPO from the SFT export with those statistics",
              lambda: entry(py, "train.py", "--config", s.grpo_config, f"model.path={export_dir(paths.sft_run)}",
                            f"normalization.stats_path={paths.norm_stats}", "algorithm.eval_every=0",
                            *run_args("grpo"), *s.grpo_overrides)),
        Stage("infer_grpo", "GRPO model: inference on the test split + evaluation",
              infer(paths.grpo_run, paths.test_records, "grpo")),
    ]
    return stages


# ---- the comparison ------------------------------------------------------------------------------------------
NAMES = ("SFT", "GRPO")


def compare_runs(paths: PipelinePaths, resamples: int = 1000, seed: int = 0) -> tuple[dict, str]:
    """SFT vs GRPO on the test records, paired (evaluation/compare.py): each number with its bootstrap interval,
    the change with its paired interval and P(GRPO better), overall and per dataset."""
    from medgrpo_ray.evaluation.compare import compare_results
    from medgrpo_ray.evaluation.inputs import load_results

    items = [load_results(paths.infer(name) / "results.json")[0] for name in ("sft", "grpo")]
    payload, md = compare_results(items[0], items[1], NAMES, resamples=resamples, seed=seed)
    return payload, md + (f"\nTest records: {payload['n_records']['SFT']} (SFT), {payload['n_records']['GRPO']} "
                          "(GRPO from SFT); caption columns need the judge (launch/compare.py --judge-config).\n")


# ---- running ---------------------------------------------------------------------------------------------------
def prepare_records(sft_cfg, paths: PipelinePaths, stats_from: str, test_min_records: int = 0
                    ) -> tuple[Callable[[], dict], str, str]:
    """(the data stage, the training video root, the test video root): the SFT config's training and test records
    (the synthetic benchmark, generated if missing, or data.train_path / data.test_path), restricted to its
    data.tasks / data.datasets. With synthetic data and `test_min_records` > 0 the test split is built for
    evaluation instead (data/synthetic_eval.py: that many records per task, per source for TAL and STG)."""
    d = sft_cfg.data
    if d.train_path:
        train, test = Path(d.train_path).expanduser(), Path(d.test_path).expanduser() if d.test_path else None
        root = d.video_root or str(train.resolve().parent)
    else:
        if not d.synthetic_dir:
            raise ValueError("the SFT config sets neither data.train_path/test_path nor data.synthetic_dir: set one")
        syn = Path(d.synthetic_dir).expanduser()
        train, test, root = syn / "train.json", syn / "test.json", d.video_root or str(syn)
    if test is None:
        raise ValueError("the pipeline evaluates on a test split: set data.test_path in the SFT config")
    eval_split = not d.train_path and test_min_records > 0
    if eval_split:
        test = paths.eval_split / "test.json"
    test_root = str(paths.eval_split) if eval_split else root

    def run() -> dict:
        from medgrpo_ray.data.records_io import load_records, write_json
        from medgrpo_ray.driver.trainer import select_records

        if not d.train_path:
            from medgrpo_ray.data.synthetic import ensure_generated

            ensure_generated(train.parent, d.synthetic_seed, d.synthetic_records)
        paths.data.mkdir(parents=True, exist_ok=True)
        out = {}
        if eval_split:
            from medgrpo_ray.data.synthetic_eval import generate_eval_split

            manifest = generate_eval_split(paths.eval_split, list(d.tasks), test_min_records, d.synthetic_seed)
            out["eval_split"] = {k: manifest[k] for k in ("records", "videos", "by_group", "seconds")}
            print(f"{paths.eval_split}: {manifest['records']} test records, {manifest['videos']} videos, "
                  f"{manifest['seconds']} s; per group {manifest['by_group']}", flush=True)
        pairs = [(test, paths.test_records)] + ([(train, paths.stats_records)] if stats_from == "train" else [])
        for src, dst in pairs:
            records = select_records(load_records(src)[0], d.tasks, d.datasets)
            if not records:
                raise ValueError(f"{src}: no records of data.tasks={d.tasks} data.datasets={d.datasets}")
            out[dst.name] = write_json(records, dst)
            print(f"{dst}: {out[dst.name]} records from {src}", flush=True)
        return out

    return run, str(Path(root).resolve()), str(Path(test_root).resolve())


def run_stage(stage: Stage, paths: PipelinePaths, env: dict | None = None) -> dict:
    """Run one stage, teeing a subprocess's output to logs/<stage>.log; its marker is written on success."""
    paths.logs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if stage.run is not None:
        info = stage.run()
    else:
        log_path = paths.logs / f"{stage.name}.log"
        cmd = stage.command()
        print("$ " + " ".join(cmd), flush=True)
        with open(log_path, "a", encoding="utf-8") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    cwd=ROOT, env=env, bufsize=1)
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                log.write(line)
            rc = proc.wait()
        if rc != 0:
            raise RuntimeError(f"stage {stage.name} failed (exit {rc}); its output is in {log_path}; fix the cause "
                               "and rerun the same command: finished stages are skipped, this one resumes")
        info = {"cmd": list(cmd), "log": str(log_path)}
    info["seconds"] = round(time.perf_counter() - t0, 1)
    marker = paths.marker(stage.name)
    atomic_write_json(marker, info, indent=1)  # a kill mid-write leaves no torn marker: the stage reruns
    return info


def require_checkout() -> None:
    """The stages run the checkout's launch/ scripts (with its configs/ as the working directory): a copy of the
    package installed without its checkout cannot run them."""
    if not (ROOT / "launch").is_dir():
        raise ValueError(f"{ROOT} holds no launch/ scripts: the multi-stage commands run a source checkout's "
                         "launch/*.py and configs/; install the checkout in place (bash launch/install_cpu.sh, or "
                         "pip install -e .) and run them from it")


def read_marker(marker: Path) -> dict | None:
    """A finished stage's marker, or None when the stage has to run: no marker, or one that does not parse (written
    by an older version without atomic writes, or edited by hand: the stage reruns and resumes)."""
    if not marker.is_file():
        return None
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        print(f"[pipeline] {marker}: unreadable stage marker ({err}); running the stage again", flush=True)
        return None
    return info if isinstance(info, dict) else None


def first_step_reward(run_dir: Path) -> float | None:
    """reward/raw_mean of a run's first step (metrics.jsonl), None if absent."""
    from medgrpo_ray.tracking.plots import read_metrics

    try:
        rows = read_metrics(run_dir / "metrics.jsonl")
    except (OSError, json.JSONDecodeError):
        return None
    return next((r.get("reward/raw_mean") for r in rows if r.get("step") == 1), None)


def run_stages(stages: Sequence[Stage], paths: PipelinePaths, env: dict | None = None,
               label: str = "pipeline") -> dict[str, float | None]:
    """Run the stages in order, skipping those whose marker says they finished; returns seconds per stage."""
    timings: dict[str, float | None] = {}
    for i, stage in enumerate(stages, 1):
        marker = paths.marker(stage.name)
        done = read_marker(marker)
        if done is not None:
            print(f"[{label} {i}/{len(stages)}] {stage.name}: done earlier ({marker}), skipped", flush=True)
            timings[stage.name] = done.get("seconds")
            continue
        print(f"\n[{label} {i}/{len(stages)}] {stage.name}: {stage.title}", flush=True)
        timings[stage.name] = run_stage(stage, paths, env)["seconds"]
    return timings


def run_pipeline(s: PipelineSettings, load_config: Callable[[str | None, Sequence[str]], object]) -> dict:
    """Run every unfinished stage in order, then write and print the comparison; returns a summary."""
    paths = PipelinePaths(Path(s.out_dir).expanduser().resolve())
    require_checkout()
    paths.out.mkdir(parents=True, exist_ok=True)
    sft_cfg = load_config(s.sft_config, s.sft_overrides)
    load_config(s.grpo_config, s.grpo_overrides)  # a config error shows now, not after SFT
    prepare, video_root, test_root = prepare_records(sft_cfg, paths, s.stats_from, s.test_min_records)
    stages = plan(s, paths, video_root, prepare, test_root)
    t0 = time.perf_counter()
    timings = run_stages(stages, paths, dict(os.environ, PYTHONUNBUFFERED="1"))
    cmp, md = compare_runs(paths)
    cmp["first_step_reward"] = {"grpo_from_sft": first_step_reward(paths.grpo_run)}
    cmp["stage_seconds"] = timings
    atomic_write_json(paths.out / "comparison.json", cmp, indent=1)
    atomic_write_text(paths.out / "comparison.md", md)
    print(f"\n[pipeline] SFT vs GRPO on {paths.test_records} (stages: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items() if v is not None)
          + f"; this call {time.perf_counter() - t0:.0f} s)\n\n" + md, flush=True)
    print(f"wrote {paths.out / 'comparison.md'} and comparison.json; the GRPO model: {export_dir(paths.grpo_run)}")
    return {"out": str(paths.out), "comparison": str(paths.out / "comparison.md")}
