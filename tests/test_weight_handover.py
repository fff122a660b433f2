"""The same-device weight hand-over (medgrpo_ray/weight_sync/handover.py) between real processes on CPU, where the
protocol passes shared-memory tensors (CUDA IPC handles on a GPU: benchmarks/gpu_check.py): the tiny VLM's trainable
weights, changed, handed over in several buckets make the consumer's model equal to the producer's tensor for
tensor, frozen ones untouched and never sent; a repeated version is refused on both sides; a consumer that never
acknowledges makes the producer raise TimeoutError naming the version and the bucket, within the timeout.

CPU sharing: the hand-over shares under torch's "file_system" strategy (a shared-memory name any process on the host
can open); the default "file_descriptor" strategy passes fds through multiprocessing's resource sharer, which only
processes with the parent's multiprocessing authkey can reach (not Ray actors). The module switches the strategy only
around its own share calls and restores it; `test_the_process_sharing_strategy_is_left_as_it_was` checks that."""
from __future__ import annotations

import io
import multiprocessing as mp
import queue
import threading
import time

import pytest
import torch

from medgrpo_ray.weight_sync.collective import TensorMeta, plan_buckets
from medgrpo_ray.weight_sync.handover import (HandoverReceiver, HandoverRefused, HandoverSender, StaleVersion,
                                              module_loader, pipe_transport, queue_transport, trainable_metas)

WAIT = 60


def _frozen(name: str) -> bool:  # learner.freeze_vision_tower's rule (learner/policy.py)
    return ".visual." in f".{name}" or name.startswith("visual.")


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Every parameter changed, the frozen ones too: a frozen tensor that were sent would then show on the consumer."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(torch.randn(p.shape, generator=g).to(p.dtype) * 0.01)


def _as_bytes(state: dict) -> bytes:
    buf = io.BytesIO()  # by value: the sending process may have exited before the parent reads its result
    torch.save({k: v.detach().clone() for k, v in state.items()}, buf)
    return buf.getvalue()


def _from_bytes(data: bytes) -> dict:
    return torch.load(io.BytesIO(data))


def _tiny_module(model_dir: str) -> torch.nn.Module:
    """The tiny VLM's weights (its safetensors file, HF names) as parameters of nested modules: the same names,
    shapes and dtypes as the HF model's, without importing transformers in each process (keeps the test fast)."""
    from safetensors.torch import load_file

    root = torch.nn.Module()
    for name, t in load_file(f"{model_dir}/model.safetensors").items():
        *path, leaf = name.split(".")
        mod = root
        for part in path:
            if not hasattr(mod, part):
                mod.add_module(part, torch.nn.Module())
            mod = getattr(mod, part)
        mod.register_parameter(leaf, torch.nn.Parameter(t.clone()))
    return root


def _producer(model_dir, outbox, inbox, results, bucket_bytes):
    model = _tiny_module(model_dir)
    for name, p in model.named_parameters():
        p.requires_grad_(not _frozen(name))
    send, recv = queue_transport(outbox, inbox)
    sender = HandoverSender(send, recv, timeout_s=WAIT)
    metas = trainable_metas(model.named_parameters())
    buckets = plan_buckets(metas, bucket_bytes)
    named = dict(model.named_parameters())
    timings = []
    for version in (1, 2):
        _perturb(model, seed=version)
        t0 = time.perf_counter()
        n = sender.send_version(version, metas, buckets, lambda ms: [named[m.name] for m in ms])
        timings.append((n, time.perf_counter() - t0))
    try:
        sender.send_version(2, metas, buckets, lambda ms: [named[m.name] for m in ms])
        refused = None
    except HandoverRefused as err:
        refused = str(err)
    results.put(("producer", _as_bytes(model.state_dict()), [m.name for m in metas], len(buckets), timings, refused))


def _consumer(model_dir, outbox, inbox, results):
    model = _tiny_module(model_dir)
    before = _as_bytes(model.state_dict())
    send_ack, recv = queue_transport(outbox, inbox)
    rx = HandoverReceiver(send_ack, recv, timeout_s=WAIT)
    load, received = module_loader(model), []

    def recording(pairs):
        def names():
            for name, t in pairs:
                received.append(name)
                yield name, t
        load(names())

    versions = [rx.receive(recording) for _ in range(2)]
    try:
        rx.receive(recording)
        stale = None
    except StaleVersion as err:
        stale = str(err)
    results.put(("consumer", before, _as_bytes(model.state_dict()), received, versions, rx.version, stale))


def _collect(results, n: int) -> dict:
    out = {}
    for _ in range(n):
        msg = results.get(timeout=WAIT)
        out[msg[0]] = msg[1:]
    return out


def test_a_handover_between_processes_makes_the_consumer_equal_and_refuses_a_repeated_version(tiny_vlm_dir, capsys):
    ctx = mp.get_context("spawn")
    to_consumer, to_producer, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    trainable_bytes = 2_000_000  # about 0.55M trainable fp32 parameters: several buckets of 400 kB
    procs = [ctx.Process(target=_producer,
                         args=(tiny_vlm_dir, to_consumer, to_producer, results, trainable_bytes // 5)),
             ctx.Process(target=_consumer, args=(tiny_vlm_dir, to_producer, to_consumer, results))]
    for p in procs:
        p.start()
    try:
        out = _collect(results, 2)
    finally:
        for p in procs:
            p.join(WAIT)
            if p.is_alive():
                p.kill()
    state_p, sent_names, n_buckets, timings, refused = out["producer"]
    before, state_c, received, versions, version, stale = out["consumer"]
    state_p, before, state_c = _from_bytes(state_p), _from_bytes(before), _from_bytes(state_c)

    assert n_buckets >= 4
    frozen = [k for k in state_p if _frozen(k)]
    trainable = [k for k in state_p if not _frozen(k)]
    assert frozen and trainable
    assert received == sent_names * 2 == trainable * 2  # two versions, in order; no frozen name was sent
    for k in trainable:
        assert torch.equal(state_c[k], state_p[k]), k  # bit-exact
        assert not torch.equal(state_c[k], before[k]), k  # and it did change
    for k in frozen:
        assert torch.equal(state_c[k], before[k]), k  # untouched ...
        assert not torch.equal(state_c[k], state_p[k]), k  # ... though the producer's frozen tensors changed
    assert versions == [1, 2] and version == 2
    assert refused and "version 2" in refused and "stale or repeated" in refused
    assert stale and "stale or repeated" in stale
    with capsys.disabled():
        for v, (n, s) in enumerate(timings, 1):
            print(f"\nhand-over (CPU shared memory, {n_buckets} buckets) version {v}: {n} bytes in {s * 1e3:.1f} ms "
                  f"= {n / s / 1e6:.1f} MB/s")


def _silent_consumer(inbox, results):
    """Takes the message and maps the bucket, then never acknowledges."""
    from medgrpo_ray.weight_sync.handover import rebuild

    msg = inbox.get(timeout=WAIT)
    t = rebuild(msg.handle, msg.device)
    results.put(("got", msg.version, msg.bucket, float(t.sum())))
    time.sleep(WAIT)


def test_a_consumer_that_never_acknowledges_makes_the_producer_time_out():
    ctx = mp.get_context("spawn")
    to_consumer, to_producer, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_silent_consumer, args=(to_consumer, results), daemon=True)
    proc.start()
    try:
        metas = [TensorMeta("a.weight", (64, 64), "torch.float32"), TensorMeta("b.weight", (64, 64), "torch.float32")]
        tensors = {m.name: torch.ones(m.shape) for m in metas}
        sender = HandoverSender(*queue_transport(to_consumer, to_producer), timeout_s=2.0)
        t0 = time.perf_counter()
        with pytest.raises(TimeoutError, match=r"version 7, bucket 1 of 2 .*did not acknowledge within 2 s"):
            sender.send_version(7, metas, plan_buckets(metas, 64 * 64 * 4), lambda ms: [tensors[m.name] for m in ms])
        assert time.perf_counter() - t0 < 4.0
        assert results.get(timeout=WAIT) == ("got", 7, 0, 64.0 * 64)  # it did get the bucket: only the Ack is missing
    finally:
        proc.kill()
        proc.join(10)


def test_a_failing_load_is_reported_to_the_producer_at_once():
    """In one process, over a Pipe (threads): the consumer's error reaches the producer as HandoverRefused, not a
    timeout, and the consumer's version stays where it was."""
    a, b = mp.Pipe()
    metas = [TensorMeta("w", (4,), "torch.float32"), TensorMeta("unknown", (2,), "torch.float32")]
    model = torch.nn.Linear(2, 2, bias=False)
    model.register_parameter("w", torch.nn.Parameter(torch.zeros(4)))
    rx = HandoverReceiver(*pipe_transport(b), timeout_s=10.0)
    errors = []

    def consume():
        try:
            rx.receive(module_loader(model))
        except KeyError as err:
            errors.append(err)

    th = threading.Thread(target=consume)
    th.start()
    sender = HandoverSender(*pipe_transport(a), timeout_s=10.0)
    t0 = time.perf_counter()
    with pytest.raises(HandoverRefused, match="unknown"):
        sender.send_version(3, metas, [[0, 1]], lambda ms: [torch.arange(float(m.numel)) for m in ms])
    th.join(10)
    assert time.perf_counter() - t0 < 5.0 and errors and rx.version == 0


def test_the_process_sharing_strategy_is_left_as_it_was():
    before = torch.multiprocessing.get_sharing_strategy()
    q_in, q_out = queue.Queue(), queue.Queue()
    sender = HandoverSender(*queue_transport(q_out, q_in), timeout_s=0.2)
    with pytest.raises(TimeoutError):
        sender.send_version(1, [TensorMeta("x", (3,), "torch.float32")], [[0]], lambda ms: [torch.ones(3)])
    assert torch.multiprocessing.get_sharing_strategy() == before
    assert q_out.get_nowait().device == "cpu"


def test_frozen_parameters_are_not_in_the_metas():
    m = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    m[0].requires_grad_(False)
    assert [x.name for x in trainable_metas(m.named_parameters())] == ["1.weight", "1.bias"]
    only_biases = trainable_metas(m.named_parameters(), lambda n, p: n.endswith("bias"))
    assert [x.name for x in only_biases] == ["0.bias", "1.bias"]
