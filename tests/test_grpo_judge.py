"""GRPO on caption tasks with the medical LLM judge: a real HTTP judge on 127.0.0.1 behind the JudgeWorker."""
from __future__ import annotations

import os
import subprocess

import pytest

from grpo_system_support import ROOT, env, metrics, overrides, train_cmd
from judge_server import judge_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow
CANARY = "sk-canary-DO-NOT-LEAK-7f3a9c"


def test_caption_tasks_train_with_the_judge(judge_server, tmp_path, model_cache, synthetic_bench):  # noqa: F811
    syn = synthetic_bench
    judge_server.control.configure(expected_key=CANARY, fault_rate=0.2, seed=5)
    args = overrides(syn, tmp_path / "runs", "judged", model_cache, **{
        "data.tasks": "[video_summary,region_caption,dense_captioning]", "data.datasets": "[]",
        "rollout.allowed_answers": "[]", "rollout.max_new_tokens": 12, "algorithm.group_size": 4,
        "algorithm.total_steps": 2, "checkpoint.every_n_steps": 2, "checkpoint.export_hf": "false",
        "judge.enabled": "true", "judge.base_url": judge_server.base_url, "judge.api_key_env": "MEDGRPO_TEST_JUDGE_KEY",
        "judge.cache_dir": str(tmp_path / "judge_cache"), "judge.max_attempts": 4, "judge.backoff_initial_s": 0.01,
        "judge.backoff_max_s": 0.1, "judge.timeout_s": 0.5, "reward.caption_judge_weight": 0.5})
    e = env()
    e["MEDGRPO_TEST_JUDGE_KEY"] = CANARY
    out = subprocess.run(train_cmd(args), capture_output=True, text=True, env=e, cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    rows = metrics(tmp_path / "runs" / "judged")
    assert [r["step"] for r in rows] == [1, 2]
    last = rows[-1]
    # Every caption sample went through the judge (faults retried), and got a reward or an explicit reason.
    assert last["judge/calls"] >= 1 and last["judge/calls"] <= judge_server.control.requests
    assert judge_server.control.outcomes.get("ok", 0) >= 1
    assert any(k.startswith("reward/task/video_summary") or k.startswith("reward/task/region_caption") for k in last)
    for r in rows:
        assert r["reward/no_reward_frac"] < 1.0
    # The key authenticated every request, and appears nowhere the run wrote or printed.
    assert CANARY not in out.stdout + out.stderr
    for root, _, files in os.walk(tmp_path / "runs"):
        for f in files:
            assert CANARY.encode() not in open(os.path.join(root, f), "rb").read(), f
    for root, _, files in os.walk(tmp_path / "judge_cache"):
        for f in files:
            assert CANARY.encode() not in open(os.path.join(root, f), "rb").read(), f
