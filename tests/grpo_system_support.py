"""Shared settings for the GRPO-system tests: a tiny, fast, learnable configuration and a subprocess runner."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["cutting", "tying", "suturing", "preparation", "design", "incision", "dissection", "hemostasis",
          "irrigation", "closure", "dressing"]


def overrides(synthetic_dir, out_dir, run_name, model_cache, **extra) -> list[str]:
    """Next-action prediction on AVOS + EgoSurgery with sampling restricted to their one-token labels: a random
    policy already earns reward 1/12 per sample, so groups have variance from the first step."""
    base = {
        "run_name": run_name, "seed": 0,
        "model.path": "tiny:qwen2_5_vl", "model.cache_dir": str(model_cache),
        "data.synthetic_dir": str(synthetic_dir), "data.tasks": "[next_action]", "data.datasets": "[AVOS,EgoSurgery]",
        "data.max_frames": 4, "data.min_pixels": 3136, "data.max_pixels": 6272,
        "rollout.max_new_tokens": 1, "rollout.allowed_answers": "[" + ",".join(LABELS) + "]",
        "algorithm.group_size": 8, "algorithm.prompts_per_step": 4, "algorithm.kl_coef": 0.01, "algorithm.eval_every": 0,
        "learner.lr": 2.0e-3, "learner.micro_batch_size": 16, "normalization.enabled": "false",
        "reward.format_weight": 0.0, "logging.output_dir": str(out_dir), "logging.progress_bar": "false",
        "ray.num_cpus": 6, "ray.init_timeout_s": 300, "ray.get_timeout_s": 300,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def env() -> dict:
    e = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    e.pop("RAY_ADDRESS", None)
    return e


def train_cmd(args: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / "launch/train.py"), *args]


def run_train(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    out = subprocess.run(train_cmd(args), capture_output=True, text=True, env=env(), cwd=ROOT, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + "\n---\n" + out.stderr[-6000:]
    return out


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]


def comparable(rows: list[dict]) -> list[dict]:
    """Metrics without wall-clock timings (the only values that legitimately differ between identical runs)."""
    return [{k: v for k, v in r.items() if not k.startswith("timing_s/") and k != "learner/reference_s"} for r in rows]
