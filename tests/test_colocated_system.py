"""placement=colocated end to end, as a user starts it (`launch/train.py` in a subprocess): 2 learner ranks and
2 vLLM engines sharing 2 bundles, weights handed over per rank. Exact resume after SIGKILL (ZeRO-3, rollout one step
ahead: the pending rollout is in the checkpoint) and the learning test, synchronous and with the rollout ahead."""
from __future__ import annotations

import json

import pytest

from grpo_system_support import comparable, metrics, overrides, run_train
from test_grpo_system import kill_after_step

pytestmark = pytest.mark.slow

COLOCATED = {"placement": "colocated", "rollout.num_workers": 2, "learner.num_ranks": 2}
RESUME = {**COLOCATED, "learner.zero_stage": 3, "algorithm.rollout_ahead": 1, "algorithm.total_steps": 4,
          "checkpoint.every_n_steps": 2}


def _hf_hash(path) -> str:
    from medgrpo_ray.models.tiny_vlm import weights_hash

    return weights_hash(path)


def test_colocated_exact_resume_after_sigkill(synthetic_bench, tmp_path, model_cache):
    """The uninterrupted colocated run to step 4 against one SIGKILLed after step 3 (checkpoint at 2, holding step
    3's finished rollout) and resumed with resume=auto: the same final weights and logged metrics."""
    run_train(overrides(synthetic_bench, tmp_path, "straight", model_cache, **RESUME))
    args = overrides(synthetic_bench, tmp_path, "killed", model_cache, **RESUME)
    kill_after_step(args, tmp_path / "killed", 3)
    ckpt = tmp_path / "killed" / "checkpoints"
    assert (ckpt / "latest").read_text().strip() == "step_000002"
    assert json.loads((ckpt / "step_000002" / "pending_rollout.json").read_text())["step"] == 2
    run_train(args + ["resume=auto"])
    straight, resumed = metrics(tmp_path / "straight"), metrics(tmp_path / "killed")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert comparable(resumed) == comparable(straight)
    assert all(r["learner/rollout_logprob_gap_max"] < 1e-3 or r["rollout/staleness"] for r in straight)
    final = "checkpoints/step_000004/hf"
    assert _hf_hash(tmp_path / "killed" / final) == _hf_hash(tmp_path / "straight" / final)


@pytest.mark.parametrize("ahead", [0, 1], ids=["synchronous", "rollout_ahead"])
def test_colocated_learning_on_a_learnable_subset(synthetic_bench, tmp_path, model_cache, ahead):
    """test_grpo_system's learning test in the colocated layout: the mean raw reward of the last 10 of 60 steps
    exceeds that of the first 10 by more than 0.2 (measured: 0.131 -> 0.450 synchronous, as in the split layout).
    On-policy steps show the engines on the learner's weights: the gap between the log-probs the engines sampled
    with and the learner's of the same tokens stays under 1e-4 in every step (measured max 1.4e-6), so every hand-over
    (the only way weights reach an engine here: no broadcast group exists in this layout) delivered the update."""
    args = overrides(synthetic_bench, tmp_path, "learn", model_cache, **{
        **COLOCATED, "algorithm.total_steps": 60, "algorithm.prompts_per_step": 8, "algorithm.kl_coef": 0.0,
        "learner.lr": 1e-3, "checkpoint.every_n_steps": 0, "checkpoint.export_hf": "false",
        "algorithm.rollout_ahead": ahead})
    run_train(args)
    rows = metrics(tmp_path / "learn")
    rewards = [r["reward/raw_mean"] for r in rows]
    assert len(rewards) == 60
    first, last = sum(rewards[:10]) / 10, sum(rewards[-10:]) / 10
    assert last > first + 0.2, f"no learning: first 10 steps {first:.3f}, last 10 steps {last:.3f}"
    assert {r["rollout/staleness"] for r in rows[1:]} == {ahead}
    trained = [r for r in rows if r["algorithm/samples_trained"]]
    assert trained and all(r["sync/bytes"] > 0 for r in trained)
    if not ahead:  # ZeRO-2, static memory: each step's samples came from the weights handed over by the last step
        assert max(r["learner/rollout_logprob_gap_max"] for r in trained) < 1e-4
    else:
        assert all(r["timing_s/rollout_overlap"] > 0 for r in trained[:-1])
