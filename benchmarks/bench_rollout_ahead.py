"""Step time with the rollout one step ahead of the learner (`algorithm.rollout_ahead=1`) over the synchronous
step (`rollout_ahead=0`), on the CPU quickstart setting. Writes benchmarks/results/rollout_ahead.json.

One real trainer (vLLM rollout worker, DeepSpeed learner, reward worker on a local Ray cluster) runs blocks of
`--block` steps, alternating the mode between blocks, `--reps` blocks per mode, so both modes are measured in one
run on the same actors. The first step of each block is a transition (an ahead block starts with a synchronous
rollout; a synchronous block starts by consuming the batch rolled out ahead) and is left out; the first block pair
is a warm-up. The ratio of mean step times is the result to read: absolute seconds on a shared 2-core machine are
noisy. Zero-variance groups train too (advantage 0, `algorithm.drop_zero_variance_groups=false`), so every
step of either mode trains all 64 samples and the learner's work per step does not depend on the batch.

    .venv/bin/python benchmarks/bench_rollout_ahead.py [--block 6] [--reps 3] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

from results_io import write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PARTS = ("step", "rollout", "rollout_wait", "reward", "learner", "weight_sync", "driver_overhead", "rollout_overlap")


def summarize(rows: list[dict]) -> dict:
    mean = {p: round(sum(r.get(f"timing_s/{p}", 0.0) for r in rows) / len(rows), 4) for p in PARTS}
    return {"steps": len(rows), "mean_s": mean, "step_s": [round(r["timing_s/step"], 4) for r in rows],
            "reward_raw_mean": round(sum(r["reward/raw_mean"] for r in rows) / len(rows), 4),
            "staleness": sorted({r["rollout/staleness"] for r in rows})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--block", type=int, default=6, help="steps per block (the first of each is left out)")
    ap.add_argument("--reps", type=int, default=4, help="measured blocks per mode (after one warm-up pair)")
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides, e.g. rollout.num_workers=2")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/rollout_ahead.json"))
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    from medgrpo_ray.config import load_config
    from medgrpo_ray.driver.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = load_config(str(ROOT / "configs/quickstart_cpu.yaml"), [
            f"logging.output_dir={tmp / 'runs'}", "run_name=bench-ahead", f"data.synthetic_dir={ROOT / 'runs/synthetic'}",
            "algorithm.total_steps=100000", "algorithm.eval_every=0", "logging.progress_bar=false",
            "logging.tensorboard=false", "algorithm.drop_zero_variance_groups=false", *a.set])
        t = Trainer(cfg, tmp / "runs" / "bench-ahead")
        t.start()
        rows: dict[int, list[dict]] = {0: [], 1: []}
        t0 = time.perf_counter()
        try:
            for rep in range(a.reps + 1):
                for mode in (0, 1):
                    t.cfg = dataclasses.replace(t.cfg, algorithm=dataclasses.replace(t.cfg.algorithm, rollout_ahead=mode))
                    block = [t.train_one_step() for _ in range(a.block)]
                    if rep:  # the first pair warms up engines and allocators
                        rows[mode].extend(block[1:])
                    print(f"rep {rep} rollout_ahead={mode}: step_s "
                          + " ".join(f"{r['timing_s/step']:.3f}" for r in block), flush=True)
        finally:
            t.stop()
            ray.shutdown()
        wall = time.perf_counter() - t0
    sync, ahead = summarize(rows[0]), summarize(rows[1])
    payload = {
        "benchmark": "rollout_ahead", "cpu_count": os.cpu_count(), "config": "configs/quickstart_cpu.yaml",
        "overrides": a.set, "block_steps": a.block, "reps": a.reps, "wall_s": round(wall, 1),
        "rollout_ahead_0": sync, "rollout_ahead_1": ahead,
        "step_time_ratio_ahead_over_sync": round(ahead["mean_s"]["step"] / sync["mean_s"]["step"], 3),
        "speedup_sync_over_ahead": round(sync["mean_s"]["step"] / ahead["mean_s"]["step"], 3),
        "rollout_hidden_frac": round(1 - ahead["mean_s"]["rollout_wait"] / sync["mean_s"]["rollout_wait"], 3),
        "best_possible_ratio": round(1 - sync["mean_s"]["rollout"] / sync["mean_s"]["step"], 3),
        "notes": ["blocks alternate between the modes on the same actors; each block's first step is a transition "
                  "and is left out, as is the first pair of blocks (warm-up)",
                  "rollout_overlap: seconds of the next rollout that ran during this step's learner call",
                  "best_possible_ratio: the ahead/sync step-time ratio if the whole rollout hid behind the learner "
                  "at no cost to it (1 - rollout / step of the synchronous mode); rollout_hidden_frac: the share "
                  "of the synchronous mode's rollout wait that the ahead mode no longer waits",
                  "on CPU the rollout worker and the learner share the machine's cores, so overlapping them gains "
                  "at most what the cores left idle by either; on a GPU cluster they run on separate devices"],
    }
    write_results(a.out, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
