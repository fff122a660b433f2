"""How one weight-sync group is created, per backend: its timeout and, for NCCL, the error handling that keeps a
failed or timed-out sync from taking the process down (docs/failure_policy.md, "Weight sync per backend").

torch (2.13, `ProcessGroupNCCL.hpp`) reads these variables in the `ProcessGroupNCCL` constructor, per group, so
they are set only while the sync group is built (`scoped_env`) and DeepSpeed's group keeps torch's defaults:
- `TORCH_NCCL_BLOCKING_WAIT=1`: the group gets no watchdog thread; a collective's error or timeout surfaces in
  `work.wait(timeout)` on the calling thread, which aborts this group's communicator and raises there.
- `TORCH_NCCL_ASYNC_ERROR_HANDLING=2` (CleanUpOnly): should a watchdog run anyway, it aborts the communicators
  and never tears the process down (torch's default, 3 = SkipCleanUp, does).
- `TORCH_NCCL_ENABLE_MONITORING=0`, `TORCH_NCCL_DUMP_ON_TIMEOUT=0`: no heartbeat monitor that could end the
  process, and no flight-recorder dump signal written to the group's store.
Pure: no torch, no I/O (the scoped environment is the one side effect, and it is restored).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Iterator, Mapping

BACKENDS = ("gloo", "nccl")

NCCL_GROUP_ENV = {
    "TORCH_NCCL_BLOCKING_WAIT": "1",
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": "2",
    "TORCH_NCCL_ENABLE_MONITORING": "0",
    "TORCH_NCCL_DUMP_ON_TIMEOUT": "0",
}


@dataclass(frozen=True)
class GroupInit:
    """What the group's constructor gets: its backend, the timeout of its rendezvous and of every collective, and
    the environment in force while it is constructed."""
    backend: str
    timeout: timedelta
    env: Mapping[str, str] = field(default_factory=dict)


def group_init(backend: str, timeout_s: float) -> GroupInit:
    """The creation arguments of a weight-sync group on `backend` with `ray.weight_sync_timeout_s` = timeout_s."""
    if backend not in BACKENDS:
        raise ValueError(f"weight-sync backend {backend!r}: expected gloo or nccl")
    if not timeout_s or timeout_s <= 0:
        raise ValueError(f"ray.weight_sync_timeout_s must be > 0, got {timeout_s}; a sync needs a bound")
    env = dict(NCCL_GROUP_ENV) if backend == "nccl" else {}
    return GroupInit(backend, timedelta(seconds=float(timeout_s)), env)


@contextmanager
def scoped_env(env: Mapping[str, str]) -> Iterator[None]:
    """`env` in os.environ for the duration of the block, then every variable as it was (set or unset)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
