"""Driver-level behaviour inside one process: weight sync exactness and a rollout worker killed mid-step."""
from __future__ import annotations

import threading
import time

import pytest

from grpo_system_support import overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trainer(tmp_path_factory, model_cache, synthetic_bench):
    import ray

    from medgrpo_ray.config import load_config
    from medgrpo_ray.trainer import Trainer

    syn = synthetic_bench
    out = tmp_path_factory.mktemp("runs")
    cfg = load_config(None, overrides(syn, out, "faults", model_cache, **{
        "rollout.num_workers": 2, "algorithm.total_steps": 3, "rollout.max_new_tokens": 1, "ray.max_restarts": 2}))
    t = Trainer(cfg, out / "faults")
    t.start()
    yield t
    t.stop()
    ray.shutdown()


def _probe(trainer, n=2):
    """Fixed records and fixed completion tokens to score on both sides."""
    from medgrpo_ray.rollout.types import RolloutItem

    recs = [trainer.records[i].to_dict() for i in range(n)]
    return [RolloutItem(group_id=i, record=r) for i, r in enumerate(recs)], [[940, 817, 922], [933, 871, 2]]


def test_weight_sync_makes_rollout_logprobs_equal_learner_logprobs(trainer):
    import ray
    import torch

    items, comps = _probe(trainer)
    worker = trainer.rollout.workers[0]
    before = ray.get(worker.score.remote(items, comps), timeout=300)
    learner_before = ray.get(trainer.learners[0].score.remote([it.record for it in items], comps), timeout=300)
    for b, lb in zip(before, learner_before):
        assert torch.allclose(torch.tensor(b), torch.tensor(lb), atol=1e-4)
    m = trainer.train_one_step()  # learner update + sync
    assert m["algorithm/samples_trained"] > 0 and m["timing_s/weight_sync"] > 0
    after = ray.get(worker.score.remote(items, comps), timeout=300)
    learner_after = ray.get(trainer.learners[0].score.remote([it.record for it in items], comps), timeout=300)
    for a, la, b in zip(after, learner_after, before):
        assert torch.allclose(torch.tensor(a), torch.tensor(la), atol=1e-4), (a, la)  # fp32, within 1e-4
        assert (torch.tensor(a) - torch.tensor(b)).abs().max() > 1e-3  # and the weights did change


def test_rollout_worker_killed_mid_step(trainer):
    """Kill one of two rollout workers while it generates: its prompts are re-sent to the other worker, the step
    completes with every prompt exactly once, and the restarted worker serves the next step."""
    import ray

    from medgrpo_ray.rollout.types import RolloutItem

    victim = trainer.rollout.workers[0]
    n = len(trainer.records)
    items = [RolloutItem(group_id=1000 + i, record=trainer.records[(n - 1 - i) % n].to_dict(), seed=i) for i in range(16)]
    failures_before = trainer.rollout.failures
    # Each worker gets 8 prompts whose videos it has not decoded yet: well over 0.1 s of work.
    killer = threading.Timer(0.1, lambda: ray.kill(victim, no_restart=False))
    killer.start()
    groups = trainer.rollout_step(items)
    killer.join()
    assert trainer.rollout.failures == failures_before + 1
    assert sorted(groups) == [it.group_id for it in items]  # none lost, none twice
    assert all(len(g.completions) == trainer.cfg.algorithm.group_size and not g.error for g in groups.values())
    assert {g.worker for g in groups.values()} == {"rollout-1"}
    # The restarted worker starts from the initial weights; the next step's sync brings it up to date.
    time.sleep(1.0)
    m = trainer.train_one_step()
    assert m["rollout/failed_groups"] == 0
