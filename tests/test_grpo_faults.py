"""Driver-level behaviour inside one process: weight sync exactness (broadcast over a gloo group, and the
object-store fallback), a rollout worker killed between steps or mid-step, and a sync member that never joins."""
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
    from medgrpo_ray.driver.trainer import Trainer

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


def _parity(trainer, items, comps, workers=None):
    """Max |rollout - learner| log-prob per worker on fixed tokens, and the rollout log-probs."""
    import ray
    import torch

    learner = ray.get(trainer.learners[0].score.remote([it.record for it in items], comps), timeout=300)
    out = []
    for w in workers or trainer.rollout.workers:
        got = ray.get(w.score.remote(items, comps), timeout=300)
        gap = max((torch.tensor(a) - torch.tensor(b)).abs().max().item() for a, b in zip(got, learner))
        out.append((gap, got))
    return out


def test_rollout_ahead_overlaps_the_update_and_trains_one_step_stale(trainer):
    """algorithm.rollout_ahead=1 on the same actors: the next step's rollout runs during the learner call (their
    spans overlap), is finished before the weight sync, and comes from the weights one update older, which the
    learner's truncated importance weights then see (ratios away from 1); the last step launches nothing. It runs
    first, from the initial weights (whose first batch has reward variance: test_broadcast_sync... below)."""
    import dataclasses

    cfg0 = trainer.cfg
    # zero-variance groups train too (advantage 0), so every step has a learner call to overlap
    a = dataclasses.replace(cfg0.algorithm, rollout_ahead=1, total_steps=trainer.step + 3, drop_zero_variance_groups=False)
    trainer.cfg = dataclasses.replace(cfg0, algorithm=a)
    try:
        m1 = trainer.train_one_step()  # this step's rollout is synchronous; the next one starts before the update
        assert m1["rollout/staleness"] == 0 and m1["timing_s/rollout_overlap"] > 0
        ready = trainer.ahead.ready
        assert ready is not None and not trainer.ahead.in_flight and ready.policy_step == trainer.step - 1
        assert sorted(ready.groups) == [it.group_id for it in ready.items]
        m2 = trainer.train_one_step()
        assert m2["rollout/staleness"] == 1 and m2["timing_s/rollout_overlap"] > 0
        assert m2["learner/is_ratio_min"] < 1 - 1e-4 or m2["learner/is_ratio_max"] > 1 + 1e-4  # one update apart
        m3 = trainer.train_one_step()  # the run's last step: no rollout for a step that will not come
        assert "timing_s/rollout_overlap" not in m3 and trainer.ahead.ready is None and not trainer.ahead.in_flight
        assert m3["rollout/staleness"] == 1
    finally:
        trainer.cfg = cfg0


def test_broadcast_sync_makes_both_workers_logprobs_equal_the_learners(trainer):
    import torch

    assert trainer.cfg.rollout.weight_sync == "broadcast"
    items, comps = _probe(trainer)
    before = _parity(trainer, items, comps)
    assert all(gap < 1e-4 for gap, _ in before)
    m = trainer.train_one_step()  # learner update + broadcast sync to both workers
    assert m["algorithm/samples_trained"] > 0 and m["timing_s/weight_sync"] > 0
    assert m["sync/bytes"] > 1e6 and trainer.syncer.epoch == 1
    after = _parity(trainer, items, comps)
    for (gap, got), (_, old) in zip(after, before):
        assert gap < 1e-4, gap  # fp32, within 1e-4, on each of the two workers
        assert max((torch.tensor(a) - torch.tensor(b)).abs().max().item() for a, b in zip(got, old)) > 1e-3


def test_object_store_fallback_syncs_the_same_weights(trainer):
    items, comps = _probe(trainer)
    trainer.syncer.mode = "object_store"
    try:
        m = trainer.train_one_step()
        assert m["sync/bytes"] > 1e6
        assert all(gap < 1e-4 for gap, _ in _parity(trainer, items, comps))
    finally:
        trainer.syncer.mode = "broadcast"


def test_rollout_worker_killed_between_steps_is_back_in_sync_next_step(trainer):
    import ray

    items, comps = _probe(trainer)
    epoch = trainer.syncer.epoch
    victim = trainer.rollout.workers[1]
    ray.kill(victim, no_restart=False)  # Ray restarts it from the initial checkpoint, outside any group
    deadline = time.monotonic() + 120  # ray.kill returns at once: wait until the new incarnation answers
    while ray.get(victim.version.options(max_task_retries=-1).remote(), timeout=120) != 0:
        assert time.monotonic() < deadline, "the killed rollout worker never restarted"
        time.sleep(0.1)
    m = trainer.train_one_step()
    assert m["rollout/workers_resynced"] == 1  # found stale before the rollout and re-sent
    assert trainer.syncer.epoch == epoch + 1  # a new group epoch that every member joined
    assert all(gap < 1e-4 for gap, _ in _parity(trainer, items, comps))


def test_a_worker_that_never_joins_the_group_raises_a_timeout_naming_the_setting(trainer):
    import dataclasses
    from types import SimpleNamespace

    import ray

    from medgrpo_ray.driver.syncer import WeightSyncer

    @ray.remote(num_cpus=0)
    class NeverJoins:
        def sync_epoch(self):
            return 0

        def sync_join(self, *args):
            time.sleep(120)

    cfg = dataclasses.replace(trainer.cfg, ray=dataclasses.replace(trainer.cfg.ray, weight_sync_timeout_s=5.0))
    pool = SimpleNamespace(workers=[trainer.rollout.workers[0], NeverJoins.remote()])
    syncer = WeightSyncer(cfg, trainer.learners, pool)
    t0 = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"ray\.weight_sync_timeout_s"):
        syncer.sync()
    assert time.perf_counter() - t0 < 30
    # the run's own syncer builds a fresh epoch at its next sync: back in sync
    items, comps = _probe(trainer)
    trainer.sync_weights()
    assert all(gap < 1e-4 for gap, _ in _parity(trainer, items, comps))


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

