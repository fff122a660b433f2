"""`ray job submit` against a local head on 127.0.0.1: the documented cluster route, end to end."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grpo_system_support import metrics, ROOT, env, overrides

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).with_name("ray"))


def _auth_env() -> dict:
    """Ray's token authentication, as a secured cluster runs it: one token shared by the head and the client."""
    e = env()
    e.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=_TOKEN)
    return e


_TOKEN = os.urandom(16).hex()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def ray_head():
    import shutil
    import tempfile

    gcs, dash = _free_port(), _free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's unix socket paths must fit in 107 bytes
    e = _auth_env()
    subprocess.run([RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}", "--num-cpus=6",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--include-dashboard=true",
                    f"--temp-dir={temp_dir}"], check=True, env=e, capture_output=True, timeout=180)
    try:
        yield f"http://127.0.0.1:{dash}"
    finally:
        subprocess.run([RAY, "stop", "--force"], env=e, capture_output=True, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_job_submit_two_steps(ray_head, tmp_path, model_cache, synthetic_bench):
    syn = synthetic_bench
    out = tmp_path / "runs"
    # Qwen3-VL here (the leaderboard's best MedGRPO model family); the other GRPO system tests run Qwen2.5-VL.
    args = overrides(syn, out, "submitted", model_cache, **{"algorithm.total_steps": 2, "checkpoint.every_n_steps": 2,
                                                            "model.path": "tiny:qwen3_vl"})
    args = [a for a in args if not a.startswith("ray.num_cpus=")]  # the cluster decides
    e = _auth_env()
    e["RAY_ADDRESS"] = ray_head
    cmd = [RAY, "job", "submit", "--address", ray_head, "--working-dir", str(ROOT),
           "--runtime-env-json", '{"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}}',
           "--", sys.executable, "launch/train.py", "--config", "configs/quickstart_cpu.yaml", *args]
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert "succeeded" in (res.stdout + res.stderr).lower()
    run_dir = out / "submitted"
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_000002"
    hf_config = json.loads((run_dir / "checkpoints" / "step_000002" / "hf" / "config.json").read_text())
    assert hf_config["architectures"] == ["Qwen3VLForConditionalGeneration"]
    rows = metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:  # vLLM's Qwen3-VL and the DeepSpeed learner score the same tokens alike
        assert r["algorithm/samples_trained"] > 0 and r["learner/rollout_logprob_gap_max"] < 1e-3
    assert time.monotonic() - t0 < 900
