"""The collective weight-sync group (medgrpo_ray/weight_sync/collective.py) between real processes over gloo on 127.0.0.1:
bucket plans, exact transfer, bounded failure (a member that never joins, a member that dies mid-sync), and the
survivors of a failed sync forming a new epoch with the restarted member."""
from __future__ import annotations

import multiprocessing as mp
import time

import pytest
import torch

from medgrpo_ray.weight_sync.collective import SyncGroup, TensorMeta, free_port, pack, plan_buckets, receive, send, unpack

METAS = [TensorMeta("model.embed.weight", (6, 4), "torch.float32"), TensorMeta("model.norm.weight", (4,), "torch.float32"),
         TensorMeta("lm_head.weight", (6, 4), "torch.bfloat16"), TensorMeta("model.layers.0.w", (3,), "torch.bfloat16")]


def _weights():
    g = torch.Generator().manual_seed(0)
    return {m.name: torch.randn(m.shape, generator=g).to(getattr(torch, m.dtype.split(".")[1])) for m in METAS}


def test_buckets_keep_order_split_by_size_and_dtype():
    assert plan_buckets(METAS, 10**6) == [[0, 1], [2, 3]]  # one bucket per dtype run
    assert plan_buckets(METAS, 96) == [[0], [1], [2, 3]]  # 96 B: the 6x4 fp32 fills a bucket alone
    assert plan_buckets(METAS, 8) == [[0], [1], [2], [3]]  # larger than a bucket: a bucket of its own
    with pytest.raises(ValueError, match="weight_sync_bucket_mb"):
        plan_buckets(METAS, 0)
    w = _weights()
    flat = pack([w[m.name] for m in METAS[:2]])
    back = unpack(flat, METAS[:2])
    assert all(torch.equal(b, w[m.name]) for b, m in zip(back, METAS[:2]))
    with pytest.raises(ValueError, match="disagree"):
        unpack(flat, METAS[:1])


def _member(rank, world, port, q, timeout_s=20.0, die_after=None):
    try:
        g = SyncGroup("127.0.0.1", port, rank, world, epoch=3, timeout_s=timeout_s)
        buckets = plan_buckets(METAS, 100)
        if rank == 0:
            w = _weights()
            t0 = time.perf_counter()
            n = send(g, METAS, buckets, lambda ms: [w[m.name] for m in ms])
            q.put(("sent", n, time.perf_counter() - t0))
        else:
            got = {}
            for k, (name, t) in enumerate(receive(g, METAS, buckets)):
                if die_after is not None and k == die_after:
                    import os
                    os._exit(1)  # a worker dying mid-sync
                got[name] = t.clone()
            q.put(("got", rank, {k: v.float().sum().item() for k, v in got.items()},
                   all(torch.equal(got[k], v) for k, v in _weights().items())))
    except TimeoutError as err:
        q.put(("timeout", rank, str(err)))


def _run(targets, wait=60):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_member, args=(r, len(targets), port, q), kwargs=kw) for r, kw in enumerate(targets) if kw is not None]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join(wait)
    out = []
    while not q.empty():
        out.append(q.get())
    return out, time.perf_counter() - t0


def test_rank0_broadcast_reaches_every_member_exactly():
    out, _ = _run([{}, {}, {}])
    sent = [o for o in out if o[0] == "sent"]
    got = [o for o in out if o[0] == "got"]
    assert len(sent) == 1 and sent[0][1] == sum(m.nbytes for m in METAS)
    assert sorted(o[1] for o in got) == [1, 2] and all(o[3] for o in got)  # bit-exact, both dtypes


def test_a_member_that_never_joins_raises_a_timeout_naming_the_setting():
    out, seconds = _run([{"timeout_s": 3.0}, {"timeout_s": 3.0}, None])  # rank 2 never starts
    msgs = [o[2] for o in out if o[0] == "timeout"]
    assert len(msgs) == 2 and all("ray.weight_sync_timeout_s" in m and "never joined" in m for m in msgs)
    assert seconds < 30


def test_a_member_dying_mid_sync_makes_the_sender_raise_not_hang():
    out, seconds = _run([{"timeout_s": 5.0}, {"timeout_s": 5.0}, {"timeout_s": 5.0, "die_after": 0}])
    assert any(o[0] == "timeout" and o[1] == 0 and "ray.weight_sync_timeout_s" in o[2] for o in out), out
    assert seconds < 40


def _rejoin(rank, world, ports, q, die_after=None, first_epoch=True):
    """Epoch 3 on ports[0] (rank 2 dies in it after one bucket), then epoch 4 on ports[1], every member again."""
    if first_epoch:
        _member(rank, world, ports[0], q, timeout_s=5.0, die_after=die_after)
    try:
        g = SyncGroup("127.0.0.1", ports[1], rank, world, epoch=4, timeout_s=30.0)
        buckets = plan_buckets(METAS, 100)
        if rank == 0:
            w = _weights()
            q.put(("sent4", send(g, METAS, buckets, lambda ms: [w[m.name] for m in ms])))
        else:
            got = {name: t.clone() for name, t in receive(g, METAS, buckets)}
            q.put(("got4", rank, all(torch.equal(got[k], v) for k, v in _weights().items())))
    except TimeoutError as err:
        q.put(("timeout4", rank, str(err)))


def test_after_a_member_died_mid_sync_the_survivors_and_its_restart_form_a_new_epoch():
    """What the driver does after a failed sync, with real processes: the sender raised in epoch 3 (its group is
    broken), and a new epoch of the survivors plus the restarted member transfers every tensor exactly."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ports = (free_port(), free_port())
    procs = [ctx.Process(target=_rejoin, args=(0, 3, ports, q)), ctx.Process(target=_rejoin, args=(1, 3, ports, q)),
             ctx.Process(target=_rejoin, args=(2, 3, ports, q), kwargs={"die_after": 0}),
             ctx.Process(target=_rejoin, args=(2, 3, ports, q), kwargs={"first_epoch": False})]  # the restart
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
    out = []
    while not q.empty():
        out.append(q.get())
    assert any(o[0] == "timeout" and o[1] == 0 for o in out), out  # epoch 3 failed on the sender
    assert [o for o in out if o[0] == "sent4"] == [("sent4", sum(m.nbytes for m in METAS))], out
    assert sorted(o[1] for o in out if o[0] == "got4" and o[2]) == [1, 2], out  # bit-exact on both receivers
