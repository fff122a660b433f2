"""GRPO step time, split into rollout, reward, reference, learner, weight sync and driver overhead, with 1 and 2
rollout workers, on the CPU quickstart setting (tiny model, synthetic videos; 16 prompts x G=8 per step, KL to
a colocated reference). Writes benchmarks/results/step.json.

Each configuration is a real `launch/train.py` run; the first step (engine warm-up, JIT builds) is excluded and
the rest are averaged. Ratios between the two configurations measured in the same invocation are the result to
read: absolute seconds on a shared 2-core machine are noisy.

    .venv/bin/python benchmarks/bench_step.py [--steps 6]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import write_results

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("rollout", "reward", "reference", "learner", "weight_sync", "driver_overhead", "step")


def run(workers: int, steps: int, out: Path, syn: Path) -> dict:
    name = f"bench-w{workers}"
    args = [sys.executable, str(ROOT / "launch/train.py"), "--config", str(ROOT / "configs/quickstart_cpu.yaml"),
            f"run_name={name}", f"logging.output_dir={out}", f"data.synthetic_dir={syn}", f"rollout.num_workers={workers}",
            f"algorithm.total_steps={steps}", "algorithm.prompts_per_step=16", "algorithm.kl_coef=0.04",
            "algorithm.eval_every=0", "checkpoint.every_n_steps=0", "checkpoint.export_hf=false",
            "logging.progress_bar=false", "ray.num_cpus=6"]
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), cwd=ROOT)
    wall = time.perf_counter() - t0
    rows = [json.loads(l) for l in (out / name / "metrics.jsonl").read_text().splitlines()][1:]
    mean = {p: sum(r.get(f"timing_s/{p}", 0.0) for r in rows) / len(rows) for p in PARTS}
    return {"rollout_workers": workers, "steps_averaged": len(rows), "mean_s": mean, "process_wall_s": wall,
            "samples_per_step": rows[0].get("algorithm/samples_trained")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/step.json"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results = [run(w, a.steps, tmp / "runs", tmp / "synthetic") for w in (1, 2)]
    one, two = results
    ratios = {p: (two["mean_s"][p] / one["mean_s"][p]) if one["mean_s"][p] else None for p in PARTS}
    payload = {"benchmark": "grpo_step_breakdown", "config": "configs/quickstart_cpu.yaml", "cpu_count": os.cpu_count(),
               "results": results, "ratio_2_workers_over_1": ratios,
               "notes": ["reference (the colocated reference forward) is a part of learner, not an extra term",
                         "step = rollout + reward + learner + weight_sync + driver_overhead",
                         "2 cores: rollout workers, learner and reward actors share them, so a second rollout worker "
                         "cannot double rollout throughput here"]}
    write_results(a.out, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
