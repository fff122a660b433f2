"""Step time of placement=colocated over placement=split on the CPU quickstart setting with 2 learner ranks and 2
engines, alternated in one run. Writes benchmarks/results/colocated.json.

Each block starts a real trainer in one layout (local Ray cluster, vLLM engines, DeepSpeed ZeRO-2 ranks), runs
`--block` steps and stops it; blocks alternate split, colocated, split, ... `--reps` times each, so both layouts meet
the same machine load. The first `--skip` steps of a block are start-up and left out. The ratio of mean step times
is the figure to read: on CPU the two layouts share the same 2 cores (Ray's GPU fractions reserve nothing here),
so this measures the cost of the layout's machinery (hand-over instead of broadcast, one more queue per rank), not
the GPU gain, which comes from every GPU doing both phases. The JSON's `gpu_model` states that gain from the
phase times: with R and L the GPU-seconds of a step's generation and update on one GPU and 2n GPUs in all, split
(n + n, rollout ahead) takes about max(R, L) / n per step and colocated about (R + L) / 2n (docs/decisions.md).

    .venv/bin/python benchmarks/bench_colocated.py [--block 8] [--reps 2] [--ahead 0] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from results_io import write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PARTS = ("step", "rollout", "rollout_wait", "reward", "learner", "weight_sync", "driver_overhead")
LAYOUTS = ("split", "colocated")


def summarize(rows: list[dict]) -> dict:
    mean = {p: round(sum(r.get(f"timing_s/{p}", 0.0) for r in rows) / len(rows), 4) for p in PARTS}
    return {"steps": len(rows), "mean_s": mean, "step_s": [round(r["timing_s/step"], 4) for r in rows],
            "reward_raw_mean": round(sum(r["reward/raw_mean"] for r in rows) / len(rows), 4)}


def run_block(layout: str, steps: int, ahead: int, tmp: Path, extra: list[str]) -> list[dict]:
    import ray

    from medgrpo_ray.config import load_config
    from medgrpo_ray.driver.trainer import Trainer

    cfg = load_config(str(ROOT / "configs/quickstart_cpu.yaml"), [
        f"logging.output_dir={tmp}", f"run_name=bench-{layout}", f"data.synthetic_dir={ROOT / 'runs/synthetic'}",
        "algorithm.total_steps=100000", "algorithm.eval_every=0", "logging.progress_bar=false",
        "logging.tensorboard=false", "algorithm.drop_zero_variance_groups=false", f"placement={layout}",
        "rollout.num_workers=2", "learner.num_ranks=2", f"algorithm.rollout_ahead={ahead}", *extra])
    t = Trainer(cfg, tmp / f"bench-{layout}-{time.monotonic_ns()}")
    t.start()
    try:
        return [t.train_one_step() for _ in range(steps)]
    finally:
        t.stop()
        ray.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--block", type=int, default=8, help="steps per block")
    ap.add_argument("--skip", type=int, default=2, help="start-up steps of each block left out")
    ap.add_argument("--reps", type=int, default=2, help="blocks per layout")
    ap.add_argument("--ahead", type=int, default=0, help="algorithm.rollout_ahead in both layouts")
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/colocated.json"))
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows: dict[str, list[dict]] = {k: [] for k in LAYOUTS}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.reps):
            for layout in LAYOUTS:
                block = run_block(layout, a.block, a.ahead, Path(tmp), a.set)
                rows[layout].extend(block[a.skip:])
                print(f"rep {rep} {layout}: step_s " + " ".join(f"{r['timing_s/step']:.3f}" for r in block), flush=True)
    split, colo = summarize(rows["split"]), summarize(rows["colocated"])
    r_s, l_s = split["mean_s"]["rollout"], split["mean_s"]["learner"]
    payload = {
        "benchmark": "colocated", "cpu_count": os.cpu_count(), "config": "configs/quickstart_cpu.yaml",
        "overrides": ["rollout.num_workers=2", "learner.num_ranks=2", f"algorithm.rollout_ahead={a.ahead}", *a.set],
        "block_steps": a.block, "skipped_per_block": a.skip, "reps": a.reps, "wall_s": round(time.perf_counter() - t0, 1),
        "split": split, "colocated": colo,
        "step_time_ratio_colocated_over_split": round(colo["mean_s"]["step"] / split["mean_s"]["step"], 3),
        "weight_sync_s": {"split_broadcast": split["mean_s"]["weight_sync"],
                          "colocated_handover": colo["mean_s"]["weight_sync"]},
        "gpu_model": {
            "rule": "per step, 2n GPUs: split (n rollout + n learner, rollout ahead) ~ max(R, L) / n; colocated ~ "
                    "(R + L) / 2n (every GPU does both phases); speed-up = 2 max(R, L) / (R + L), between 1 and 2",
            "R_over_L_measured_here_on_cpu": round(r_s / l_s, 3) if l_s else None,
            "speedup_if_gpu_phases_had_this_ratio": round(2 * max(r_s, l_s) / (r_s + l_s), 3) if r_s + l_s else None,
        },
    }
    write_results(a.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
