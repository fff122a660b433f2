"""Weight sync over a collective group: learner rank 0 broadcasts the policy, in buckets, to every rollout worker.

The group is its own torch process group (gloo on CPU, NCCL on GPU) built on its own TCPStore, so neither the
learners' DeepSpeed group nor vLLM's is touched: rank 0 is the learner, ranks 1..N the rollout workers. A group
has an *epoch*: when a member restarts, or a sync fails, the driver builds a new group (new epoch, new port) and
every member joins it again. Every blocking call (rendezvous, each bucket) carries the group's timeout, so a member
that never joins or dies mid-sync makes the others raise instead of hanging; the members first meet on the store,
so a missing member is found before any backend connects. An NCCL group is built so that a failure aborts only its
own communicator, never the process (group_init.py); a group that failed once is `broken` and sends nothing more.

What is sent is fixed per run: the trainable parameters' names (HF naming, as `load_weights` of vLLM takes them),
shapes and dtypes (`TensorMeta`), cut into buckets of at most `bucket_bytes` by `plan_buckets`; frozen
parameters (e.g. a frozen vision tower) are not sent. A bucket is one flat tensor of one dtype. The receiver
turns the stream of buckets into (name, tensor) pairs lazily, so the engine loads bucket by bucket and never
holds a second copy of the model. Pure torch, no Ray: the actors call these functions.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterable, Iterator, Sequence

import torch

from medgrpo_ray.weight_sync.group_init import GroupInit, group_init, scoped_env

DTYPES = {str(d): d for d in (torch.float32, torch.bfloat16, torch.float16, torch.float64)}


@dataclass(frozen=True)
class TensorMeta:
    name: str
    shape: tuple[int, ...]
    dtype: str  # str(torch.dtype), e.g. "torch.bfloat16"

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= int(s)
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPES[self.dtype].itemsize


def plan_buckets(metas: Sequence[TensorMeta], bucket_bytes: int) -> list[list[int]]:
    """Indices of `metas` grouped into buckets: consecutive tensors of one dtype, at most `bucket_bytes` each
    (a tensor larger than that is a bucket of its own). Order is kept, so sender and receivers agree."""
    if bucket_bytes <= 0:
        raise ValueError(f"rollout.weight_sync_bucket_mb must be > 0, got {bucket_bytes} bytes")
    buckets: list[list[int]] = []
    size, dtype = 0, None
    for i, m in enumerate(metas):
        if not buckets or m.dtype != dtype or size + m.nbytes > bucket_bytes:
            buckets.append([])
            size, dtype = 0, m.dtype
        buckets[-1].append(i)
        size += m.nbytes
    return buckets


def pack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One flat contiguous tensor holding `tensors` (of one dtype) back to back."""
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def unpack(flat: torch.Tensor, metas: Sequence[TensorMeta]) -> list[torch.Tensor]:
    """The tensors of `metas` as views of `flat` (inverse of pack)."""
    out, offset = [], 0
    for m in metas:
        out.append(flat[offset:offset + m.numel].view(m.shape))
        offset += m.numel
    if offset != flat.numel():
        raise ValueError(f"bucket holds {flat.numel()} elements, its tensors {offset}: sender and receiver disagree "
                         "on the weights sent (different models?)")
    return out


def free_port(host: str = "") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class SyncGroup:
    """One epoch of the weight-sync group, as seen by one member (rank 0: the sender).

    Blocks until all `world_size` members joined, at most `timeout_s` (then TimeoutError naming the setting)."""

    def __init__(self, host: str, port: int, rank: int, world_size: int, epoch: int, timeout_s: float,
                 backend: str = "gloo", device: str = "cpu") -> None:
        self.rank, self.world_size, self.epoch, self.device = rank, world_size, epoch, device
        init = group_init(backend, timeout_s)
        self.timeout, self.broken = init.timeout, False
        what = (f"weight-sync group epoch {epoch} at {host}:{port} (rank {rank} of {world_size}) did not form "
                f"within {timeout_s:.0f} s (ray.weight_sync_timeout_s): a member never joined")
        try:
            store = torch.distributed.TCPStore(host, port, world_size, is_master=rank == 0, timeout=self.timeout,
                                               wait_for_workers=False, use_libuv=True)
            prefixed = torch.distributed.PrefixStore(f"medgrpo_weight_sync/{epoch}", store)
            meet(prefixed, world_size, self.timeout)
            self.pg = process_group(init, prefixed, rank, world_size)
            self._store = store
            self.barrier()  # every member is connected before the first bucket
        except (RuntimeError, torch.distributed.DistError) as err:
            raise TimeoutError(f"{what} ({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None

    def barrier(self) -> None:
        flag = torch.zeros(1, device=self.device)
        self.pg.allreduce([flag]).wait(self.timeout)

    def broadcast(self, flat: torch.Tensor) -> None:
        if self.broken:
            raise TimeoutError(f"weight-sync group epoch {self.epoch} failed earlier (ray.weight_sync_timeout_s); "
                               "it sends nothing more: the driver builds a new epoch")
        try:
            work = self.pg.broadcast([flat], _root_options())
            work.wait(self.timeout)
        except (RuntimeError, torch.distributed.DistError) as err:
            self.broken = True  # NCCL: wait() has aborted this group's communicator (group_init.py)
            raise TimeoutError(f"weight-sync broadcast (epoch {self.epoch}, rank {self.rank}) failed or took longer "
                               f"than {self.timeout.total_seconds():.0f} s (ray.weight_sync_timeout_s): "
                               f"{str(err).splitlines()[0][:200]}") from None

    def close(self) -> None:
        pg, self.pg = getattr(self, "pg", None), None
        if pg is not None and hasattr(pg, "shutdown"):
            try:
                pg.shutdown()
            except Exception:  # noqa: BLE001 - best effort: the group may already be broken
                pass
        self._store = None


def meet(store, world_size: int, timeout: timedelta) -> None:
    """Block until all `world_size` members have reached the store (at most `timeout`, then the store raises).
    NCCL's own rendezvous cannot be interrupted once a rank is in it; this meeting finds a missing member first."""
    if store.add("arrived", 1) == world_size:
        store.set("all_arrived", b"1")
    store.wait(["all_arrived"], timeout)


def process_group(init: GroupInit, store, rank: int, world_size: int):
    """The torch process group of one epoch: gloo, or NCCL built under its error-handling environment."""
    if init.backend == "gloo":
        return torch.distributed.ProcessGroupGloo(store, rank, world_size, init.timeout)
    with scoped_env(init.env):  # read by the constructor, for this group only
        return torch.distributed.ProcessGroupNCCL(store, rank, world_size, init.timeout)


def _root_options():
    opts = torch.distributed.BroadcastOptions()
    opts.rootRank, opts.rootTensor = 0, 0
    return opts


def send(group: SyncGroup, metas: Sequence[TensorMeta], buckets: Sequence[Sequence[int]],
         tensors_of: Callable[[Sequence[TensorMeta]], Iterable[torch.Tensor]]) -> int:
    """Rank 0: broadcast every bucket; `tensors_of(metas of a bucket)` gives its tensors (e.g. gathered under
    ZeRO-3 for just that bucket). Returns the bytes sent."""
    sent = 0
    for idx in buckets:
        ms = [metas[i] for i in idx]
        flat = pack([t.to(group.device, DTYPES[m.dtype]) for t, m in zip(tensors_of(ms), ms)])
        group.broadcast(flat)
        sent += flat.numel() * flat.element_size()
    return sent


def receive(group: SyncGroup, metas: Sequence[TensorMeta], buckets: Sequence[Sequence[int]]
            ) -> Iterator[tuple[str, torch.Tensor]]:
    """Ranks 1..N: the (name, tensor) pairs as each bucket arrives (a generator: consume it fully, or the
    sender blocks until the timeout)."""
    for idx in buckets:
        ms = [metas[i] for i in idx]
        flat = torch.empty(sum(m.numel for m in ms), dtype=DTYPES[ms[0].dtype], device=group.device)
        group.broadcast(flat)
        yield from zip((m.name for m in ms), unpack(flat, ms))
