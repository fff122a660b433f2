"""The SFT stage end to end (launch/sft.py in a subprocess: local Ray, DeepSpeed ZeRO-2,
the real video/prompt path): the answer-token loss falls, and a run SIGKILLed after a checkpoint and resumed with
resume=auto ends with the same weights and metrics as an uninterrupted one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from grpo_system_support import ROOT, comparable, env, metrics

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synthetic(synthetic_bench):
    return synthetic_bench


def sft_args(synthetic, out_dir, name, model_cache, **extra) -> list[str]:
    base = {
        "run_name": name, "seed": 0, "model.path": "tiny:qwen3_vl", "model.cache_dir": str(model_cache),
        "data.train_path": str(synthetic / "train.json"), "data.video_root": str(synthetic),
        "data.tasks": "[tal,next_action,cvs_assessment]", "data.max_frames": 4, "data.min_pixels": 3136,
        "data.max_pixels": 6272, "rollout.backend": "hf", "sft.samples_per_step": 8, "sft.max_steps": 4,
        "learner.num_ranks": 1, "learner.zero_stage": 2, "learner.micro_batch_size": 4, "learner.lr": 2.0e-3,
        "checkpoint.every_n_steps": 2, "logging.output_dir": str(out_dir), "logging.progress_bar": "false",
        "ray.num_cpus": 6, "ray.init_timeout_s": 300, "ray.get_timeout_s": 300,
    }
    base.update(extra)
    return [sys.executable, str(ROOT / "launch/sft.py"), *[f"{k}={v}" for k, v in base.items()]]


def _hash(path):
    from medgrpo_ray.models.tiny_vlm import weights_hash

    return weights_hash(path)


def test_sft_loss_falls_and_resume_after_sigkill_is_exact(synthetic, tmp_path, model_cache):
    straight = sft_args(synthetic, tmp_path, "straight", model_cache)
    out = subprocess.run(straight, capture_output=True, text=True, env=env(), cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    rows = metrics(tmp_path / "straight")
    losses = [r["sft/loss"] for r in rows]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert losses[-1] < losses[0] - 0.5, losses  # measured: 6.9 -> ~5
    assert all(r["sft/answer_tokens"] > 0 for r in rows) and rows[-1]["sft/epoch"] > 0
    assert "SFT model (HF export, for model.path of a GRPO run)" in out.stdout

    args = sft_args(synthetic, tmp_path, "killed", model_cache)
    proc = subprocess.Popen(args, env=env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    run_dir = tmp_path / "killed"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if (run_dir / "metrics.jsonl").exists() and any(r["step"] == 3 for r in metrics(run_dir)):
            break
        assert proc.poll() is None, "SFT ended before it could be killed"
        time.sleep(0.2)
    else:
        pytest.fail("step 3 never logged")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_000002"
    out = subprocess.run(args + ["resume=auto"], capture_output=True, text=True, env=env(), cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    assert [r["step"] for r in metrics(run_dir)] == [1, 2, 3, 4]
    assert comparable(metrics(run_dir)) == comparable(rows)
    assert _hash(run_dir / "checkpoints/step_000004/hf") == _hash(tmp_path / "straight/checkpoints/step_000004/hf")
