"""Weight-sync time of both paths (broadcast over the collective group, Ray object store) against model size and
rollout-worker count, with the bytes each moves. Writes benchmarks/results/weight_sync.json.

Models: the tiny Qwen2.5-VL of the kit and a random-weight Qwen2.5-VL of about 0.45B parameters built offline by
the same kit (`tiny_vlm.SIZES["0.5b"]`, bfloat16). For each (model, workers) one real learner group and rollout
pool start on a local Ray cluster (medgrpo_ray.driver.trainer.Trainer.start); the two paths then alternate, `--reps`
syncs each, so their ratio is measured in one run on the same actors. The first sync of each path (group
rendezvous, first allocation) is reported apart and left out of the mean.

    .venv/bin/python benchmarks/bench_weight_sync.py [--reps 3] [--models tiny 0.5b] [--workers 1 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from results_io import write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def model_dir(size: str, tmp: Path) -> tuple[str, str]:
    """(model.path, dtype) of a benchmark model."""
    if size == "tiny":
        return "tiny:qwen2_5_vl", "float32"
    from medgrpo_ray.models.tiny_vlm import build_tiny_vlm

    out = tmp / f"qwen2_5_vl-{size}"
    if not (out / "config.json").is_file():
        build_tiny_vlm(out, "qwen2_5_vl", seed=0, size=size)
        import torch
        from transformers import AutoModelForImageTextToText

        m = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.bfloat16)  # store it as bf16
        m.save_pretrained(out)
    return str(out), "bfloat16"


def measure(size: str, workers: int, reps: int, tmp: Path) -> dict:
    import ray

    from medgrpo_ray.config import load_config
    from medgrpo_ray.driver.trainer import Trainer

    path, dtype = model_dir(size, tmp)
    cfg = load_config(str(ROOT / "configs/quickstart_cpu.yaml"), [
        f"model.path={path}", f"model.dtype={dtype}", f"rollout.num_workers={workers}", "algorithm.kl_coef=0.0",
        f"logging.output_dir={tmp / 'runs'}", f"run_name=ws-{size}-w{workers}", f"data.synthetic_dir={tmp / 'syn'}",
        "logging.progress_bar=false", "logging.tensorboard=false", "ray.num_cpus=8", "rollout.kv_cache_space_gib=1",
        "ray.weight_sync_timeout_s=600"])
    t = Trainer(cfg, tmp / "runs" / f"ws-{size}-w{workers}")
    t0 = time.perf_counter()
    t.start()
    startup = time.perf_counter() - t0
    params = sum(m.numel for m in ray.get(t.learners[0].sync_metas.remote()))
    out = {"model": size, "dtype": dtype, "trainable_params": params, "rollout_workers": workers,
           "startup_s": round(startup, 1), "paths": {}}
    try:
        runs: dict[str, list[dict]] = {"broadcast": [], "object_store": []}
        for _ in range(reps + 1):
            for mode in ("broadcast", "object_store"):  # alternated: same actors, same moment
                t.syncer.mode = mode
                m = t.syncer.sync()
                runs[mode].append({"sync/bytes": m["sync/bytes"], "sync/seconds": t.syncer.last_seconds})
        for mode, rs in runs.items():
            steady = rs[1:]
            out["paths"][mode] = {"first_s": round(rs[0]["sync/seconds"], 4),
                                  "mean_s": round(sum(r["sync/seconds"] for r in steady) / len(steady), 4),
                                  "all_s": [round(r["sync/seconds"], 4) for r in steady],
                                  "bytes_moved": int(steady[0]["sync/bytes"])}
        b, o = out["paths"]["broadcast"]["mean_s"], out["paths"]["object_store"]["mean_s"]
        out["object_store_over_broadcast"] = round(o / b, 3) if b else None
    finally:
        t.stop()
        ray.shutdown()
    print(json.dumps(out), flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["tiny", "0.5b"])
    ap.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/weight_sync.json"))
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(m, w, a.reps, Path(tmp)) for m in a.models for w in a.workers]
    payload = {"benchmark": "weight_sync", "cpu_count": os.cpu_count(),
               "device": "cuda" if torch.cuda.is_available() else "cpu", "backend": "gloo (CPU)",
               "results": results,
               "notes": ["bytes_moved: broadcast = one copy of the trainable weights sent by learner rank 0 (the group "
                         "delivers it to every worker); object_store = the bytes the workers loaded (a full state dict "
                         "each, fetched from the object store)",
                         "one machine: the object store is shared memory here, so its copies are local; across nodes "
                         "each worker pulls the state dict over the network",
                         "no GPU was lent to this task: the NCCL path (same code, backend nccl) is not measured"]}
    write_results(a.out, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
