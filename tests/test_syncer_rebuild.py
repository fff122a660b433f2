"""The driver's answer to a failed broadcast sync (driver/syncer.py), backend-independent: a member's group that
timed out or aborted (NCCL aborts only that communicator), or a rollout worker dying mid-sync, makes the driver build
a new group epoch that every member joins and send the same version again; a learner rank that died, or a second
failure, stops the run with a message naming the setting and resume=auto. In-process stand-ins for the actors and
for `ray.get` (as Ray raises them: method errors wrapped in RayTaskError), so no cluster starts."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import ray

from medgrpo_ray.config import load_config
from medgrpo_ray.driver.syncer import WeightSyncer, sync_failure_kind


class _Ref:
    def __init__(self, name, fn):
        try:
            self.value, self.error = fn(), None
        except ray.exceptions.RayActorError as err:  # the actor is gone: Ray raises it unwrapped
            self.value, self.error = None, err
        except Exception as err:  # noqa: BLE001 - a method that raised: Ray wraps it
            self.value, self.error = None, ray.exceptions.RayTaskError(name, f"Traceback\n{err!r}", err)


class _Method:
    def __init__(self, name, fn):
        self.name, self.fn = name, fn

    def remote(self, *args):
        return _Ref(self.name, lambda: self.fn(*args))

    def options(self, **_):
        return self


class _Handle:
    def __init__(self, obj, actor_id):
        self.obj, self._actor_id = obj, SimpleNamespace(hex=lambda: actor_id)

    def __getattr__(self, name):
        return _Method(name, getattr(self.obj, name))


def _get(refs, timeout=None):
    many = isinstance(refs, list)
    for r in refs if many else [refs]:
        if r.error is not None:
            raise r.error
    return [r.value for r in refs] if many else refs.value


class Learner:
    def __init__(self):
        self.joined, self.failures = [], []  # failures: errors the next sync_send calls raise, in order

    def address(self):
        return "127.0.0.1", 1

    def sync_metas(self):
        return []

    def sync_join(self, host, port, world, epoch, timeout_s, backend):
        self.joined.append(epoch)
        return epoch

    def sync_send(self, bucket):
        if self.failures:
            raise self.failures.pop(0)
        return 100


class Worker:
    def __init__(self, actor_id):
        self.actor_id, self.epoch, self.broken, self.received = actor_id, 0, False, []
        self.dies = self.times_out = False  # during the next sync_receive

    def sync_epoch(self):
        return 0 if self.broken else self.epoch

    def sync_join(self, host, port, rank, world, epoch, timeout_s, backend, metas, bucket):
        self.epoch, self.broken = epoch, False
        return epoch

    def sync_receive(self, version):
        if self.times_out:  # its wait timed out: its group aborted and broken
            self.times_out, self.broken = False, True
            raise TimeoutError(f"weight-sync broadcast (epoch {self.epoch}) failed (ray.weight_sync_timeout_s)")
        if self.dies:
            self.dies, self.epoch = False, 0  # Ray restarts it outside any group
            raise ray.exceptions.RayActorError(actor_id=self.actor_id)
        self.received.append((version, self.epoch))
        return 1


@pytest.fixture
def parts(monkeypatch):
    monkeypatch.setattr(ray, "get", _get)
    cfg = load_config(None, ["ray.weight_sync_timeout_s=5"])
    learner, workers = Learner(), [Worker("w0"), Worker("w1")]
    pool = SimpleNamespace(workers=[_Handle(w, w.actor_id) for w in workers])
    syncer = WeightSyncer(cfg, [_Handle(learner, "l0")], pool)
    syncer.sync()  # version 1 in epoch 1
    assert syncer.epoch == 1 and learner.joined == [1] and all(w.received == [(1, 1)] for w in workers)
    return syncer, learner, workers


def test_an_aborted_group_is_rebuilt_as_a_new_epoch_and_the_version_sent_again(parts):
    syncer, learner, workers = parts
    learner.failures = [TimeoutError("weight-sync broadcast (epoch 1, rank 0) failed or took longer than 5 s "
                                     "(ray.weight_sync_timeout_s): NCCL communicator was aborted")]
    for w in workers:
        w.times_out = True  # their receive times out too: their groups abort and report no epoch
    assert syncer.sync() == {"sync/bytes": 100.0}
    assert syncer.epoch == 2 and learner.joined == [1, 2]
    assert all(w.epoch == 2 and w.received[-1] == (2, 2) for w in workers)  # version 2, in the new epoch


def test_a_rollout_worker_dying_mid_sync_rejoins_the_next_epoch(parts):
    syncer, learner, workers = parts
    workers[1].dies = True
    syncer.sync()
    assert syncer.epoch == 2 and workers[1].received[-1] == (2, 2) and workers[0].received[-1] == (2, 2)


def test_a_learner_rank_dying_stops_the_run_at_once(parts):
    syncer, learner, _ = parts
    learner.failures = [ray.exceptions.RayActorError(actor_id="l0")]
    with pytest.raises(RuntimeError, match=r"learner rank died .*no restarts.*resume=auto"):
        syncer.sync()
    assert syncer.epoch == 1 and learner.joined == [1]  # no rebuild


def test_a_second_failure_stops_the_run_naming_the_setting(parts):
    syncer, learner, _ = parts
    learner.failures = [TimeoutError("epoch 1 timed out"), TimeoutError("epoch 2 timed out")]
    with pytest.raises(TimeoutError, match=r"failed in group epoch 1 .*again in epoch 2.*resume=auto.*"
                                           r"ray\.weight_sync_timeout_s"):
        syncer.sync()
    assert learner.joined == [1, 2]


def test_any_other_error_is_raised_as_it_is(parts):
    syncer, learner, _ = parts
    learner.failures = [ValueError("bucket holds 3 elements, its tensors 4")]
    with pytest.raises(ray.exceptions.RayTaskError, match="bucket holds"):
        syncer.sync()
    assert syncer.epoch == 1


def test_failure_kinds():
    ids = {"l0"}
    assert sync_failure_kind(ray.exceptions.RayActorError(actor_id="l0"), ids) == "learner"
    assert sync_failure_kind(ray.exceptions.RayActorError(actor_id="w3"), ids) == "rollout worker"
    assert sync_failure_kind(TimeoutError("x"), ids) == "timeout"
    assert sync_failure_kind(ray.exceptions.RayTaskError("f", "tb", TimeoutError("x")), ids) == "timeout"
    assert sync_failure_kind(ray.exceptions.GetTimeoutError("x"), ids) == "timeout"
    assert sync_failure_kind(ray.exceptions.RayTaskError("f", "tb", KeyError("x")), ids) is None
