"""How a weight-sync group is created per backend (weight_sync/group_init.py, collective.SyncGroup), without a GPU:
the timeout and the NCCL error-handling environment reach the group's constructor (a stand-in ProcessGroupNCCL records
them) and are gone after it; a member that never joins is found on the store before any backend connects; a failed
broadcast marks the group broken so it sends nothing more."""
from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
import torch

from medgrpo_ray.weight_sync.collective import SyncGroup, free_port
from medgrpo_ray.weight_sync.group_init import NCCL_GROUP_ENV, group_init, scoped_env


def test_init_arguments_per_backend():
    gloo = group_init("gloo", 42)
    assert gloo.backend == "gloo" and gloo.timeout == timedelta(seconds=42) and dict(gloo.env) == {}
    nccl = group_init("nccl", 7.5)
    assert nccl.timeout == timedelta(seconds=7.5)
    assert dict(nccl.env) == {"TORCH_NCCL_BLOCKING_WAIT": "1", "TORCH_NCCL_ASYNC_ERROR_HANDLING": "2",
                              "TORCH_NCCL_ENABLE_MONITORING": "0", "TORCH_NCCL_DUMP_ON_TIMEOUT": "0"}
    with pytest.raises(ValueError, match="expected gloo or nccl"):
        group_init("mpi", 10)
    with pytest.raises(ValueError, match="ray.weight_sync_timeout_s"):
        group_init("nccl", 0)


def test_scoped_env_restores_set_and_unset_variables(monkeypatch):
    monkeypatch.setenv("TORCH_NCCL_BLOCKING_WAIT", "0")
    monkeypatch.delenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", raising=False)
    with scoped_env(NCCL_GROUP_ENV):
        assert os.environ["TORCH_NCCL_BLOCKING_WAIT"] == "1" and os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "2"
    assert os.environ["TORCH_NCCL_BLOCKING_WAIT"] == "0" and "TORCH_NCCL_ASYNC_ERROR_HANDLING" not in os.environ


class _Work:
    def __init__(self, log, fail=False):
        self.log, self.fail = log, fail

    def wait(self, timeout):
        self.log.append(("wait", timeout))
        if self.fail:
            raise torch.distributed.DistBackendError("NCCL communicator was aborted on rank 0")
        return True


class _FakeNCCL:
    """Records what a real ProcessGroupNCCL constructor would read: its arguments and the TORCH_NCCL_* variables."""
    made: list = []
    fail_broadcast = False

    def __init__(self, store, rank, size, timeout):
        self.log = []
        _FakeNCCL.made.append({"rank": rank, "size": size, "timeout": timeout, "log": self.log,
                               "env": {k: os.environ.get(k) for k in NCCL_GROUP_ENV}})

    def allreduce(self, tensors):
        return _Work(self.log)

    def broadcast(self, tensors, opts):
        return _Work(self.log, fail=_FakeNCCL.fail_broadcast)


@pytest.fixture
def fake_nccl(monkeypatch):
    _FakeNCCL.made, _FakeNCCL.fail_broadcast = [], False
    monkeypatch.setattr(torch.distributed, "ProcessGroupNCCL", _FakeNCCL)
    for key in NCCL_GROUP_ENV:
        monkeypatch.delenv(key, raising=False)
    return _FakeNCCL


def test_nccl_group_gets_the_sync_timeout_and_error_handling_then_the_environment_is_restored(fake_nccl):
    g = SyncGroup("127.0.0.1", free_port(), 0, 1, epoch=2, timeout_s=12, backend="nccl", device="cpu")
    made = fake_nccl.made[0]
    assert made["timeout"] == timedelta(seconds=12) and (made["rank"], made["size"]) == (0, 1)
    assert made["env"] == NCCL_GROUP_ENV  # in force while the group was constructed ...
    assert not any(k in os.environ for k in NCCL_GROUP_ENV)  # ... and only then (DeepSpeed's group keeps defaults)
    assert made["log"] == [("wait", timedelta(seconds=12))]  # the rendezvous barrier waits with the same bound
    g.broadcast(torch.zeros(3))
    assert made["log"][-1] == ("wait", timedelta(seconds=12))
    g.close()


def test_a_failed_broadcast_breaks_the_group_and_it_sends_nothing_more(fake_nccl):
    g = SyncGroup("127.0.0.1", free_port(), 0, 1, epoch=5, timeout_s=3, backend="nccl", device="cpu")
    fake_nccl.fail_broadcast = True
    with pytest.raises(TimeoutError, match=r"epoch 5.*ray\.weight_sync_timeout_s.*aborted"):
        g.broadcast(torch.zeros(3))
    assert g.broken
    waits = len(fake_nccl.made[0]["log"])
    with pytest.raises(TimeoutError, match="failed earlier"):
        g.broadcast(torch.zeros(3))  # at once: no second wait on an aborted communicator
    assert len(fake_nccl.made[0]["log"]) == waits


def test_a_member_that_never_joins_is_found_on_the_store_before_nccl_connects(fake_nccl):
    t0 = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"never joined"):
        SyncGroup("127.0.0.1", free_port(), 0, 2, epoch=1, timeout_s=1.5, backend="nccl", device="cpu")
    assert fake_nccl.made == []  # NCCL's uninterruptible rendezvous was never entered
    assert time.perf_counter() - t0 < 15


def test_gloo_group_is_built_with_the_timeout(monkeypatch):
    seen = {}
    real = torch.distributed.ProcessGroupGloo

    def spy(store, rank, size, timeout):
        seen["timeout"] = timeout
        return real(store, rank, size, timeout)

    monkeypatch.setattr(torch.distributed, "ProcessGroupGloo", spy)
    g = SyncGroup("127.0.0.1", free_port(), 0, 1, epoch=1, timeout_s=9)
    assert seen["timeout"] == timedelta(seconds=9) and not g.broken
    g.broadcast(torch.ones(2))
    g.close()
