"""The GRPO system end to end on a local Ray cluster: tiny model, synthetic videos, real vLLM and DeepSpeed.

Each run is the real entry point (`launch/train.py`) in a subprocess, as a user starts it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grpo_system_support import ROOT, comparable, env, metrics, overrides, run_train, train_cmd

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synthetic(synthetic_bench):
    return synthetic_bench


def _hf_hash(path: Path) -> str:
    from medgrpo_ray.models.tiny_vlm import weights_hash

    return weights_hash(path)


def test_two_workers_two_ranks_zero3_separate_reference_end_to_end(synthetic, tmp_path, model_cache, tiny_vlm_dir):
    """2 rollout workers, 2 reward workers, 2 learner ranks under ZeRO-3 (parameters partitioned: weight sync and
    export gather them), the reference in its own actor, micro-batches by a token budget, evaluation on the test
    split every step."""
    args = overrides(synthetic, tmp_path, "e2e", model_cache, **{
        "rollout.num_workers": 2, "learner.num_ranks": 2, "learner.zero_stage": 3, "reward.num_workers": 2,
        "learner.reference": "separate", "algorithm.kl_coef": 0.05, "algorithm.total_steps": 2,
        "algorithm.eval_every": 1, "algorithm.eval_max_records": 6, "checkpoint.every_n_steps": 1,
        "learner.micro_batch_tokens": 600})
    run_train(args)
    run_dir = tmp_path / "e2e"
    rows = metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert r["algorithm/samples_trained"] > 0
        for k in ("learner/loss", "learner/kl", "learner/grad_norm"):
            assert k in r and abs(r[k]) < 1e6
        assert r["learner/rollout_logprob_gap_max"] < 1e-3  # rollout and learner agree on the same tokens
        assert r["eval/records"] == 6 and 0.0 <= r["eval/nap_acc"] <= 1.0 and r["eval/failed_records"] == 0
        assert "timing_s/reference" in r
        assert r["learner/micro_batches"] >= 2  # the token budget cut each rank's 16 samples into several forwards
    # Step 1 trains from the reference itself (KL 0); after one update the policy has moved away from it.
    assert rows[0]["learner/kl"] == pytest.approx(0.0, abs=1e-6) and rows[1]["learner/kl"] > 0
    ckpts = run_dir / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step_000002"
    assert sorted(p.name for p in ckpts.iterdir() if p.name.startswith("step_")) == ["step_000001", "step_000002"]
    final = ckpts / "step_000002"
    assert (final / "deepspeed").is_dir() and (final / "driver_state.json").is_file() and (final / "config.yaml").is_file()
    # Parameters changed, and the export loads as an ordinary HF checkpoint.
    assert _hf_hash(final / "hf") != _hf_hash(Path(tiny_vlm_dir))
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(final / "hf")
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert any((run_dir / "tensorboard").iterdir())


RESUME_STEPS = {"algorithm.total_steps": 4, "checkpoint.every_n_steps": 2}


@pytest.fixture(scope="module")
def straight(synthetic, tmp_path_factory, model_cache):
    """An uninterrupted 4-step run: the reference of the resume tests, and an export for the vLLM test."""
    out = tmp_path_factory.mktemp("runs")
    run_train(overrides(synthetic, out, "straight", model_cache, **RESUME_STEPS))
    return out / "straight"


def kill_after_step(args: list[str], run_dir: Path, step: int) -> None:
    """Start launch/train.py and SIGKILL its whole process group once `step` is logged (no cleanup possible)."""
    proc = subprocess.Popen(train_cmd(args), env=env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if (run_dir / "metrics.jsonl").exists() and any(r["step"] == step for r in metrics(run_dir)):
            break
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.2)
    else:
        pytest.fail(f"step {step} never logged")
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
    proc.wait()


def test_exact_resume_after_sigkill(synthetic, straight, tmp_path, model_cache):
    """Against the uninterrupted run to step 4: run, SIGKILL the driver after step 3 (checkpoint at 2), resume
    with resume=auto to step 4: same final weights and the same logged metrics (timings aside). The rollout-ahead
    case (the checkpoint holds the next step's finished rollout, which the resumed run trains on instead of
    generating it again) runs in test_colocated_system.py, with checkpoints in S3 and the colocated layout, to
    share launches."""
    args = overrides(synthetic, tmp_path, "killed", model_cache, **RESUME_STEPS)
    run_dir = tmp_path / "killed"
    kill_after_step(args, run_dir, 3)
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_000002"
    assert not (run_dir / "checkpoints" / "step_000002" / "pending_rollout.json").exists()
    run_train(args + ["resume=auto"])

    assert [r["step"] for r in metrics(run_dir)] == [1, 2, 3, 4]
    assert [r["rollout/staleness"] for r in metrics(run_dir)] == [0, 0, 0, 0]
    assert comparable(metrics(run_dir)) == comparable(metrics(straight))
    assert _hf_hash(run_dir / "checkpoints/step_000004/hf") == _hf_hash(straight / "checkpoints/step_000004/hf")


def test_exported_checkpoint_loads_in_vllm(straight, vllm_engine, tiny_processor, demo_video):
    """A checkpoint's HF export is a drop-in model for the rollout engine (vLLM on CPU). It runs in a subprocess:
    vLLM's parallel state is per process, and this session already holds an engine."""
    from medgrpo_ray.data.prompts import budget_for, prompt_text, vllm_request
    from medgrpo_ray.data.video import decode_video

    hf = straight / "checkpoints/step_000004/hf"
    script = f"""
import json
from medgrpo_ray.data.prompts import budget_for, prompt_text, vllm_request
from medgrpo_ray.data.video import decode_video
from medgrpo_ray.models.loading import load_processor
from medgrpo_ray.rollout.types import SamplingSettings
from medgrpo_ray.rollout.vllm_engine import VLLMEngine
proc = load_processor({str(hf)!r})
engine = VLLMEngine({str(hf)!r}, max_model_len=2048, seed=0)
clip = decode_video({demo_video!r}, fps=1.0, start_s=0.0, end_s=4.0, budget=budget_for(proc, 4, 3136, 6272))
req = vllm_request(prompt_text(proc, "What comes next?"), clip)
group = engine.generate([req], SamplingSettings(group_size=2, max_new_tokens=4, seed=0))[0]
tokens = group.completions[0].token_ids
print("RESULT" + json.dumps({{"n": len(group.completions), "tokens": tokens, "score": engine.score([req], [tokens])[0]}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env(), cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    res = json.loads(next(l for l in out.stdout.splitlines() if l.startswith("RESULT"))[len("RESULT"):])
    assert res["n"] == 2 and res["tokens"]
    # Same tokens, different weights: the exported policy scores them differently from the initial one.
    clip = decode_video(demo_video, fps=1.0, start_s=0.0, end_s=4.0, budget=budget_for(tiny_processor, 4, 3136, 6272))
    initial = vllm_engine.score([vllm_request(prompt_text(tiny_processor, "What comes next?"), clip)], [res["tokens"]])[0]
    assert max(abs(x - y) for x, y in zip(res["score"], initial)) > 1e-4
