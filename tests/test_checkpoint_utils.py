"""Checkpoint utilities: atomic directory commits, the latest pointer, pruning, RNG capture/restore."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from medgrpo_ray.checkpoint.local import (
    atomic_write_dir,
    capture_rng,
    find_latest,
    list_checkpoints,
    prune,
    restore_rng,
    step_dir_name,
    write_latest,
)


def writer(text):
    def write(d):
        (d / "weights.txt").write_text(text)
        (d / "sub").mkdir()
        (d / "sub" / "opt.txt").write_text(text + "-opt")

    return write


def names(root):
    return sorted(p.name for p in root.iterdir())


def commit(root, step, text="x"):
    name = step_dir_name(step)
    atomic_write_dir(root / name, writer(text))
    write_latest(root, name)
    return name


def test_step_dir_name():
    assert step_dir_name(12) == "step_000012"
    assert step_dir_name(0) == "step_000000"
    assert step_dir_name(1234567) == "step_1234567"
    with pytest.raises(ValueError, match="step"):
        step_dir_name(-1)


def test_atomic_write_commits_and_leaves_no_temp(tmp_path):
    out = atomic_write_dir(tmp_path / "step_000001", writer("w1"))
    assert out == tmp_path / "step_000001"
    assert (out / "weights.txt").read_text() == "w1" and (out / "sub" / "opt.txt").read_text() == "w1-opt"
    assert names(tmp_path) == ["step_000001"]


def test_failed_write_leaves_nothing_and_latest_unchanged(tmp_path):
    commit(tmp_path, 1)

    def crashing(d):
        (d / "weights.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write_dir(tmp_path / "step_000002", crashing)
    assert names(tmp_path) == ["latest", "step_000001"]
    assert find_latest(tmp_path) == tmp_path / "step_000001"


def test_killed_write_leftover_is_ignored_then_pruned(tmp_path):
    """A process killed mid-write leaves `.tmp-step_000002-<rand>`: readers skip it, prune removes it."""
    commit(tmp_path, 1)
    leftover = tmp_path / ".tmp-step_000002-dead"
    leftover.mkdir()
    (leftover / "weights.txt").write_text("half")
    assert list_checkpoints(tmp_path) == [tmp_path / "step_000001"]
    assert find_latest(tmp_path) == tmp_path / "step_000001"
    assert prune(tmp_path, keep_last=2) == []
    assert names(tmp_path) == ["latest", "step_000001"]


def test_replacing_an_existing_dir(tmp_path):
    atomic_write_dir(tmp_path / "step_000003", writer("old"))
    atomic_write_dir(tmp_path / "step_000003", lambda d: (d / "weights.txt").write_text("new"))
    assert names(tmp_path / "step_000003") == ["weights.txt"]  # old `sub/` is gone: a full replacement
    assert (tmp_path / "step_000003" / "weights.txt").read_text() == "new"
    assert names(tmp_path) == ["step_000003"]  # no .old-* left

    with pytest.raises(ValueError, match="boom"):
        atomic_write_dir(tmp_path / "step_000003", lambda d: (_ for _ in ()).throw(ValueError("boom")))
    assert (tmp_path / "step_000003" / "weights.txt").read_text() == "new"


def test_latest_pointer_round_trip(tmp_path):
    assert find_latest(tmp_path) is None  # no pointer yet
    commit(tmp_path, 5)
    assert (tmp_path / "latest").read_text() == "step_000005\n"
    assert find_latest(tmp_path) == tmp_path / "step_000005"
    commit(tmp_path, 10)
    assert find_latest(tmp_path) == tmp_path / "step_000010"
    assert names(tmp_path) == ["latest", "step_000005", "step_000010"]  # the pointer's temp file is gone


def test_latest_pointer_edge_cases(tmp_path):
    (tmp_path / "latest").write_text("step_000099\n")  # dangling
    assert find_latest(tmp_path) is None
    (tmp_path / ".tmp-step_000099-x").mkdir()
    (tmp_path / "latest").write_text(".tmp-step_000099-x\n")  # never a temp dir
    assert find_latest(tmp_path) is None
    with pytest.raises(FileNotFoundError, match="step_000007"):
        write_latest(tmp_path, "step_000007")
    with pytest.raises(ValueError, match="name"):
        write_latest(tmp_path, "../elsewhere")
    assert find_latest(tmp_path / "no_such_root") is None


def test_list_checkpoints_in_step_order(tmp_path):
    for step in (10, 2, 1234567, 1):
        (tmp_path / step_dir_name(step)).mkdir()
    (tmp_path / "step_000003").write_text("a file, not a checkpoint")
    (tmp_path / "step_abc").mkdir()
    (tmp_path / ".tmp-step_000004-x").mkdir()
    (tmp_path / "latest").write_text("step_000010\n")
    got = [p.name for p in list_checkpoints(tmp_path)]
    assert got == ["step_000001", "step_000002", "step_000010", "step_1234567"]
    assert list_checkpoints(tmp_path / "missing") == []


def test_prune_keeps_last_and_latest(tmp_path):
    """Steps 1..5 committed, latest moved back to step 2 (e.g. a resume point): keep_last=2 keeps 4, 5 and 2."""
    for step in range(1, 6):
        commit(tmp_path, step)
    write_latest(tmp_path, "step_000002")
    deleted = prune(tmp_path, keep_last=2)
    assert [p.name for p in deleted] == ["step_000001", "step_000003"]
    assert names(tmp_path) == ["latest", "step_000002", "step_000004", "step_000005"]
    assert find_latest(tmp_path) == tmp_path / "step_000002"

    assert [p.name for p in prune(tmp_path, keep_last=0)] == ["step_000004", "step_000005"]
    assert names(tmp_path) == ["latest", "step_000002"]
    with pytest.raises(ValueError, match="keep_last"):
        prune(tmp_path, keep_last=-1)


def draws():
    return (
        [random.random() for _ in range(3)] + [random.gauss(0, 1)],
        np.random.rand(3).tolist() + [float(np.random.standard_normal())],
        torch.rand(3).tolist() + torch.randn(1).tolist(),
    )


@pytest.mark.parametrize("via", ["memory", "json", "torch_save"])
def test_rng_capture_restore_reproduces_draws(tmp_path, via):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached second Gaussian in python's state
    np.random.standard_normal()  # and in numpy's
    state = capture_rng()
    if via == "json":
        state = json.loads(json.dumps(state))
    elif via == "torch_save":
        torch.save(state, tmp_path / "rng.pt")
        state = torch.load(tmp_path / "rng.pt", weights_only=True)
    expected = draws()
    draws()  # move every generator on
    restore_rng(state)
    assert draws() == expected


def test_restore_rng_rejects_foreign_dicts():
    with pytest.raises(ValueError, match="version"):
        restore_rng({"python": []})
    with pytest.raises(ValueError, match="numpy"):
        restore_rng({"version": 1, "python": [], "torch_cpu": []})
