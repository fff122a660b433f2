"""The rollout kept one step ahead, without a cluster: the pending batch's checkpoint form, the background
launch/wait/take cycle, the learner metrics' reduction and the config checks."""
from __future__ import annotations

import json
import threading

import pytest

from medgrpo_ray.data.records import VideoRecord
from medgrpo_ray.driver.grpo_step import learner_metrics
from medgrpo_ray.rollout.types import Completion, RolloutGroup, RolloutItem
from medgrpo_ray.driver.rollout_ahead import Batch, RolloutAhead
from test_records import published_records


def _batch(records) -> Batch:
    idx = [2, 0]
    items = [RolloutItem(group_id=8 + i, record=records[k].shared_dict(), seed=100 + i) for i, k in enumerate(idx)]
    groups = {
        8: RolloutGroup(8, prompt_token_ids=[1, 2, 3], visual_tokens=12, worker="rollout-0", timings={"decode_s": 0.1},
                        completions=[Completion([5, 6], [-0.1234567890123, -2.5], "cutting", "stop"),
                                     Completion([7], [-1e-9], "tying")]),
        9: RolloutGroup(9, error="cannot decode video x.mp4", reason="decode", worker="rollout-1"),
    }
    return Batch(step=3, idx=idx, items=items, groups=groups, policy_step=2, span=(1.0, 1.5), workers_resynced=1)


def test_a_pending_batch_survives_its_checkpoint_form_exactly():
    records = [VideoRecord.from_dict(d) for d in published_records()]
    b = _batch(records)
    back = Batch.from_json(json.loads(json.dumps(b.to_json())), records)
    assert back.groups == b.groups  # token ids, log-probs to the last bit, errors and reasons
    assert back.items == b.items and back.idx == b.idx
    assert (back.step, back.policy_step, back.workers_resynced) == (3, 2, 1)
    assert back.items[0].record is records[2].shared_dict()  # rebuilt from the records, not stored twice


def test_a_pending_batch_from_other_data_is_refused_by_name():
    records = [VideoRecord.from_dict(d) for d in published_records()]
    state = _batch(records).to_json()
    with pytest.raises(ValueError, match="pending_rollout.json.*data.train_path"):
        Batch.from_json(state, records[:2])


def test_launch_runs_in_the_background_and_take_returns_the_batch():
    ahead = RolloutAhead()
    release, started = threading.Event(), threading.Event()

    def run(batch):
        started.set()
        release.wait(10)
        batch.groups = {0: RolloutGroup(0)}
        return batch

    ahead.launch(run, Batch(step=1, idx=[0], items=[]))
    assert started.wait(10) and ahead.in_flight  # launch returned while the rollout still runs
    with pytest.raises(RuntimeError, match="already ahead"):
        ahead.launch(run, Batch(step=2, idx=[], items=[]))
    release.set()
    assert ahead.wait() >= 0.0 and not ahead.in_flight and ahead.ready.step == 1
    batch = ahead.take()
    assert batch.groups == {0: RolloutGroup(0)} and ahead.take() is None
    ahead.close()


def test_an_error_in_the_background_rollout_reaches_the_step():
    ahead = RolloutAhead()

    def run(batch):
        raise TimeoutError("rollout: 2 call(s) to rollout unfinished after 5 s (ray.get_timeout_s)")

    ahead.launch(run, Batch(step=1, idx=[], items=[]))
    with pytest.raises(TimeoutError, match="ray.get_timeout_s"):
        ahead.take()
    assert not ahead.in_flight and ahead.ready is None
    ahead.close()


def test_learner_metrics_weight_means_by_tokens_and_reduce_is_statistics():
    base = {"loss": 0.0, "pg_loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "ratio_mean": 0.0, "ratio_max": 1.0,
            "grad_norm": 1.0, "lr": 1e-3, "rollout_logprob_gap_sum": 0.0, "rollout_logprob_gap_max": 0.0,
            "reference_s": 0.1}
    outs = [{**base, "tokens": 30.0, "ratio_mean": 30.0, "is_ratio_mean": 30.0 * 1.1, "is_truncated_frac": 3.0,
             "is_ratio_max": 2.5, "is_ratio_min": 0.8},
            {**base, "tokens": 10.0, "ratio_mean": 10.0, "is_ratio_mean": 10.0 * 0.7, "is_truncated_frac": 0.0,
             "is_ratio_max": 1.2, "is_ratio_min": 0.5, "reference_s": 0.3}]
    m = learner_metrics(outs, separate_reference=False)
    assert m["learner/is_ratio_mean"] == pytest.approx(1.0) and m["learner/is_truncated_frac"] == pytest.approx(0.075)
    assert m["learner/is_ratio_max"] == 2.5 and m["learner/is_ratio_min"] == 0.5
    assert m["learner/ratio_mean"] == pytest.approx(1.0) and m["timing_s/reference"] == 0.3
    sync = learner_metrics([{k: v for k, v in o.items() if not k.startswith("is_")} for o in outs], True)
    assert not any(k.startswith("learner/is_") for k in sync) and "timing_s/reference" not in sync


@pytest.mark.parametrize("override, message", [("algorithm.rollout_ahead=2", "rollout_ahead"),
                                               ("algorithm.is_cap=0", "is_cap")])
def test_config_checks_name_the_field(override, message):
    from medgrpo_ray.config import load_config

    with pytest.raises(ValueError, match=message):
        load_config(None, [override])
