"""Weight hand-over on one device: a learner rank gives its parameter buckets to the engine process on its own GPU
(colocated mode) without a collective, through memory both processes map.

Why not the broadcast group (collective.py): two processes on one GPU cannot form an NCCL communicator (NCCL refuses
two ranks on one device), and a copy through the host would cost what the colocation saves. Instead each bucket is one
flat tensor on the learner's device, shared by handle, as verl and OpenRLHF do:
- CUDA: `torch.multiprocessing.reductions.reduce_tensor` gives a CUDA IPC handle (plus torch's ref counter and event);
  the engine rebuilds the tensor with the returned rebuild function (mapped to its own index of the same physical GPU,
  found by UUID: Ray may number the visible devices differently in the two processes) and copies it into its weights.
- CPU: the same functions on a shared-memory tensor (`share_memory_()`), so the tests run the protocol for real. The
  storage is reduced explicitly (`reduce_tensor` leaves a CPU storage to the multiprocessing pickler) under torch's
  "file_system" strategy: its handle is a shared-memory name that any process on the host can open, so the message
  pickles with plain pickle (a Queue, a Pipe, later a Ray object ref). The default "file_descriptor" strategy passes
  the fd through multiprocessing's resource sharer, which only a process with the same multiprocessing authkey may
  connect to (siblings of one parent: yes; Ray actors: no). The strategy is switched only around the share/reduce
  calls (under a lock) and restored, so the process's own multiprocessing keeps torch's default.
One code path: the bucket's device decides the mechanism.

Protocol, per bucket (the small message goes through a caller-supplied `send`/`recv` pair):
  producer                                              consumer
  flat = bucket's tensors packed on the device
  send(Handover(version, bucket, num_buckets,
                metas, offsets, handle, device))   ->   version newer than the loaded one? else refuse (Ack with error)
                                                        rebuild the flat tensor, yield its (name, view) pairs to
                                                        `load`; when `load` asks for the next pair, the bucket is
                                                        copied: synchronize, drop the views
  wait for the Ack (at most timeout_s: then      <-   send_ack(Ack(version, bucket))
  TimeoutError naming the version and bucket)
  release flat
The producer keeps `flat` (and so the memory behind the handle) alive until the Ack, or until the timeout; the
consumer never holds a bucket after acknowledging it. A version is the policy step: the consumer refuses a version
not newer than the one it loaded (stale or repeated: `StaleVersion` there, `HandoverRefused` on the producer), and a
`load` that fails sends its error back at once instead of leaving the producer to time out. Frozen parameters are
not sent: the metas are the trainable ones (`trainable_metas`, or the learner's `sync_metas`). Pure torch, no Ray.
"""
from __future__ import annotations

import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch.multiprocessing import reductions

from medgrpo_ray.weight_sync.collective import DTYPES, TensorMeta

Send = Callable[[Any], None]
Recv = Callable[[float], Any]  # recv(timeout_s): a message, or None / queue.Empty / TimeoutError when none came
CPU_SHARING_STRATEGY = "file_system"


@dataclass(frozen=True)
class Handover:
    """One bucket of one version: what goes from the producer to the consumer (small: no tensor data)."""
    version: int
    bucket: int
    num_buckets: int
    metas: tuple[TensorMeta, ...]
    offsets: tuple[int, ...]  # element offset of each tensor in the bucket's flat tensor
    handle: tuple  # (rebuild function, args): the flat tensor, reduced
    device: str  # "cpu" or "cuda:<GPU UUID>"

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in self.metas)


@dataclass(frozen=True)
class Ack:
    """The consumer's answer to one bucket: loaded (error None) or refused/failed (error says why)."""
    version: int
    bucket: int
    error: str | None = None


ABORT_BUCKET = -1


def abort_ack(version: int, why: str) -> Ack:
    """An answer for any bucket of `version`: the producer stops waiting and raises HandoverRefused (a third party,
    e.g. the driver, sends it when it saw the consumer die, so the producer does not wait out its timeout)."""
    return Ack(int(version), ABORT_BUCKET, why)


class StaleVersion(ValueError):
    """Consumer side: a hand-over whose version is not newer than the loaded one."""


class HandoverRefused(RuntimeError):
    """Producer side: the consumer refused the bucket or its `load` failed (the consumer's reason included)."""


def trainable_metas(named_parameters: Iterable[tuple[str, torch.Tensor]],
                    trainable: Callable[[str, torch.Tensor], bool] | None = None) -> list[TensorMeta]:
    """Metas of the parameters to hand over: those `trainable(name, p)` accepts (default: requires_grad), so frozen
    ones (e.g. a frozen vision tower) are never sent. Shapes as the learner's `sync_metas` (ZeRO-3's ds_shape)."""
    keep = trainable or (lambda _n, p: p.requires_grad)
    return [TensorMeta(n, tuple(getattr(p, "ds_shape", p.shape)), str(p.dtype)) for n, p in named_parameters
            if keep(n, p)]


def offsets_of(metas: Sequence[TensorMeta]) -> tuple[int, ...]:
    out, off = [], 0
    for m in metas:
        out.append(off)
        off += m.numel
    return tuple(out)


# ---- sharing a tensor by handle ------------------------------------------------------------------------------------
_STRATEGY_LOCK = threading.Lock()


@contextmanager
def _cpu_sharing():
    with _STRATEGY_LOCK:
        old = torch.multiprocessing.get_sharing_strategy()
        torch.multiprocessing.set_sharing_strategy(CPU_SHARING_STRATEGY)
        try:
            yield
        finally:
            torch.multiprocessing.set_sharing_strategy(old)


def device_tag(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_properties(device).uuid}"
    if device.type == "cpu":
        return "cpu"
    raise ValueError(f"weight hand-over on {device}: only cuda (IPC) and cpu (shared memory)")


def new_bucket(numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An empty flat tensor that can be shared: on the GPU as is, on CPU in shared memory."""
    flat = torch.empty(numel, dtype=dtype, device=device)
    if flat.device.type == "cpu":
        with _cpu_sharing():
            flat.share_memory_()
    return flat


def share(flat: torch.Tensor) -> tuple:
    """The handle of `flat` (picklable with plain pickle): `reduce_tensor`'s (rebuild, args); on CPU its storage
    reduced too. The memory stays valid only while `flat` is alive in this process."""
    if flat.device.type == "cuda":
        return reductions.reduce_tensor(flat)
    with _cpu_sharing():
        fn, (cls, storage, metadata) = reductions.reduce_tensor(flat)
        # the untyped storage: torch's cache returns an untyped one when the same process rebuilds it
        return _rebuild_cpu, (fn, cls, reductions.reduce_storage(storage._untyped_storage), flat.dtype, metadata)


def _rebuild_cpu(fn, cls, reduced_storage, dtype, metadata) -> torch.Tensor:
    storage_fn, storage_args = reduced_storage
    typed = torch.TypedStorage(wrap_storage=storage_fn(*storage_args), dtype=dtype, _internal=True)
    return fn(cls, typed, metadata)


def rebuild(handle: tuple, device: str) -> torch.Tensor:
    """The producer's tensor from its handle, in this process (CUDA: on this process's index of the same GPU)."""
    fn, args = handle
    if device.startswith("cuda:"):
        args = list(args)
        args[6] = _local_index(device[len("cuda:"):])  # rebuild_cuda_tensor's storage_device
    return fn(*args)


def _local_index(uuid: str) -> int:
    for i in range(torch.cuda.device_count()):
        if str(torch.cuda.get_device_properties(i).uuid) == uuid:
            return i
    raise RuntimeError(f"weight hand-over from GPU {uuid}: this process does not see that GPU (a hand-over is "
                       "between processes on one device; check the placement and CUDA_VISIBLE_DEVICES)")


def _sync(t: torch.Tensor) -> None:
    if t.device.type == "cuda":
        torch.cuda.synchronize(t.device)


def _recv(recv: Recv, timeout_s: float):
    try:
        return recv(max(0.0, timeout_s))
    except (queue.Empty, TimeoutError):
        return None


# ---- producer -------------------------------------------------------------------------------------------------------
class HandoverSender:
    """The learner side: hands buckets to the engine on its device through `send`, waits for each Ack on `recv`."""

    def __init__(self, send: Send, recv: Recv, timeout_s: float, device: str | torch.device = "cpu") -> None:
        if not timeout_s or timeout_s <= 0:
            raise ValueError(f"hand-over timeout must be > 0, got {timeout_s}; a hand-over needs a bound")
        self.send, self.recv, self.timeout_s = send, recv, float(timeout_s)
        self.device = torch.device(device)
        self.tag = device_tag(self.device)

    def send_bucket(self, version: int, bucket: int, num_buckets: int, metas: Sequence[TensorMeta],
                    tensors: Iterable[torch.Tensor]) -> int:
        """Pack `tensors` (of `metas`, one dtype) into a shareable flat tensor, hand it over, keep it alive until
        the consumer's Ack; returns the bytes handed over. Under ZeRO-3 call it inside the bucket's gather."""
        metas = tuple(metas)
        offsets = offsets_of(metas)
        dtype = DTYPES[metas[0].dtype]
        flat = new_bucket(sum(m.numel for m in metas), dtype, self.device)
        with torch.no_grad():
            for t, m, off in zip(tensors, metas, offsets):
                if tuple(t.shape) != m.shape:
                    raise ValueError(f"hand-over: {m.name} has shape {tuple(t.shape)}, its meta {m.shape}")
                flat[off:off + m.numel].copy_(t.detach().reshape(-1))
        _sync(flat)
        msg = Handover(int(version), bucket, num_buckets, metas, offsets, share(flat), self.tag)
        self.send(msg)
        self._wait_ack(msg)
        del flat  # released only now: the consumer has copied it (or gave up)
        return msg.nbytes

    def send_version(self, version: int, metas: Sequence[TensorMeta], buckets: Sequence[Sequence[int]],
                     tensors_of: Callable[[Sequence[TensorMeta]], Iterable[torch.Tensor]]) -> int:
        """Every bucket of one version (`plan_buckets`' indices into `metas`); `tensors_of(metas of a bucket)`
        gives its tensors. Returns the bytes handed over."""
        sent = 0
        for k, idx in enumerate(buckets):
            ms = [metas[i] for i in idx]
            sent += self.send_bucket(version, k, len(buckets), ms, tensors_of(ms))
        return sent

    def _wait_ack(self, msg: Handover) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            ack = _recv(self.recv, deadline - time.monotonic())
            if ack is None:
                raise TimeoutError(f"weight hand-over version {msg.version}, bucket {msg.bucket + 1} of "
                                   f"{msg.num_buckets} ({msg.nbytes} bytes): the engine did not acknowledge "
                                   f"within {self.timeout_s:.0f} s; the bucket is released")
            if ack.version == msg.version and ack.bucket == ABORT_BUCKET:
                raise HandoverRefused(f"weight hand-over version {msg.version}, bucket {msg.bucket + 1} of "
                                      f"{msg.num_buckets}: aborted: {ack.error}")
            if (ack.version, ack.bucket) != (msg.version, msg.bucket):
                continue  # a late answer to an earlier hand-over that timed out here
            if ack.error is not None:
                raise HandoverRefused(f"weight hand-over version {msg.version}, bucket {msg.bucket + 1} of "
                                      f"{msg.num_buckets}: the engine refused: {ack.error}")
            return


# ---- consumer -------------------------------------------------------------------------------------------------------
class HandoverReceiver:
    """The engine side: receives one version at a time and loads it through a caller-supplied `load`. `version` is
    the last version loaded completely (0: the weights it started with)."""

    def __init__(self, send_ack: Send, recv: Recv, timeout_s: float, version: int = 0) -> None:
        if not timeout_s or timeout_s <= 0:
            raise ValueError(f"hand-over timeout must be > 0, got {timeout_s}; a hand-over needs a bound")
        self.send_ack, self.recv, self.timeout_s, self.version = send_ack, recv, float(timeout_s), int(version)

    def receive(self, load: Callable[[Iterator[tuple[str, torch.Tensor]]], Any]) -> int:
        """Receive and load one version: `load` gets an iterator of (name, tensor) pairs over all its buckets (a
        tensor is valid only until `load` asks for the next bucket's first pair: copy it). Returns the version
        loaded. A version not newer than `self.version` is refused (StaleVersion); a failing `load` is reported
        to the producer and re-raised (the engine's weights are then partly loaded: restart it)."""
        first = self._next(None, 0)
        if first.version <= self.version or first.bucket != 0:
            self._refuse(first, f"version {first.version} bucket {first.bucket + 1} is not the start of a version "
                                f"newer than the loaded version {self.version} (stale or repeated hand-over)")
        state = {"bucket": 0, "acked": 0}
        pairs = self._pairs(first, state)
        try:
            load(pairs)
            if next(pairs, None) is not None:  # None: acknowledges the last bucket if `load` stopped at its end
                raise RuntimeError(f"load returned before the end of version {first.version}")
        except Exception as err:
            if state["acked"] == state["bucket"] and not isinstance(err, StaleVersion):  # the producer waits on it
                self.send_ack(Ack(first.version, state["bucket"], f"{type(err).__name__}: {str(err)[:300]}"))
            raise
        finally:
            pairs.close()
        self.version = first.version
        return first.version

    def _pairs(self, first: Handover, state: dict) -> Iterator[tuple[str, torch.Tensor]]:
        msg = first
        for k in range(first.num_buckets):
            if k:
                msg = self._next(first.version, k)
                if (msg.version, msg.bucket) != (first.version, k):
                    self._refuse(msg, f"expected version {first.version} bucket {k + 1}, got version "
                                      f"{msg.version} bucket {msg.bucket + 1}")
            state["bucket"] = k
            flat = rebuild(msg.handle, msg.device)
            if sum(m.numel for m in msg.metas) != flat.numel():
                raise ValueError(f"bucket {k + 1} holds {flat.numel()} elements, its metas "
                                 f"{sum(m.numel for m in msg.metas)}")
            views = [flat[o:o + m.numel].view(m.shape) for m, o in zip(msg.metas, msg.offsets)]
            yield from zip((m.name for m in msg.metas), views)
            _sync(flat)  # `load` asked for more: its copies of this bucket must be done before the producer frees it
            del views, flat
            self.send_ack(Ack(msg.version, k))
            state["acked"] = k + 1

    def _next(self, version: int | None, bucket: int) -> Handover:
        msg = _recv(self.recv, self.timeout_s)
        if msg is None:
            what = "a new version" if version is None else f"version {version} bucket {bucket + 1}"
            raise TimeoutError(f"weight hand-over: waited {self.timeout_s:.0f} s for {what}; none came")
        return msg

    def _refuse(self, msg: Handover, why: str) -> None:
        try:
            rebuild(msg.handle, msg.device)  # mapped and dropped: balances the producer's shared-memory reference
        except Exception:  # noqa: BLE001 - the refusal matters, not the release
            pass
        self.send_ack(Ack(msg.version, msg.bucket, why))
        raise StaleVersion(f"weight hand-over refused: {why}")


# ---- loading and transports ------------------------------------------------------------------------------------
def module_loader(module: torch.nn.Module) -> Callable[[Iterable[tuple[str, torch.Tensor]]], None]:
    """A `load` that copies (name, tensor) pairs into `module`'s parameters and buffers of those names (an
    unknown name raises KeyError); the weights it does not receive keep their values."""
    own = dict(module.named_parameters())
    own.update(module.named_buffers())

    def load(pairs: Iterable[tuple[str, torch.Tensor]]) -> None:
        with torch.no_grad():
            for name, t in pairs:
                if name not in own:
                    raise KeyError(f"hand-over sent {name!r}, which the engine's model does not have")
                own[name].copy_(t)
    return load


def queue_transport(outbox, inbox) -> tuple[Send, Recv]:
    """(send, recv) over two queues (multiprocessing, queue.Queue or ray.util.queue.Queue): put on `outbox`, get
    from `inbox`."""
    return outbox.put, (lambda timeout_s: inbox.get(timeout=timeout_s))


def pipe_transport(conn) -> tuple[Send, Recv]:
    """(send, recv) over one end of a multiprocessing Pipe."""
    return conn.send, (lambda timeout_s: conn.recv() if conn.poll(timeout_s) else None)
