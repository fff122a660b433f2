"""Checkpoint directory layout, atomic commits, the `latest` pointer, pruning, and RNG capture/restore.

Layout under a run's checkpoint root:
    step_000010/                  a committed checkpoint (contents written by the caller's `write`)
    step_000020/
    latest                        text file holding "step_000020\\n"; replaced atomically, written last
    .tmp-step_000030-<rand>/      a write in progress, or left by a crash: ignored by readers, removed by prune
Protocol: `atomic_write_dir(root / step_dir_name(step), write)` then `write_latest(root, name)` then
`prune(root, keep_last)`. A crash at any point leaves `latest` naming a complete checkpoint (or absent).
Only one process (the driver) writes a root; readers (`find_latest`, `list_checkpoints`) never see temp dirs.
"""
from __future__ import annotations

import os
import random
import re
import secrets
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from medgrpo_ray.io.atomic import TMP_PREFIX, atomic_write_text, fsync_dir, fsync_file

LATEST = "latest"
OLD_PREFIX = ".old-"  # a replaced or pruned checkpoint on its way out
RNG_STATE_VERSION = 1
_STEP_RE = re.compile(r"^step_(\d+)$")


def step_dir_name(step: int) -> str:
    """12 -> "step_000012" (zero-padded to 6 digits; larger steps just get longer)."""
    if not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    return "step_%06d" % step


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for f in filenames:
            p = Path(dirpath) / f
            if not p.is_symlink():
                fsync_file(p)
        fsync_dir(dirpath)


def _sibling(parent: Path, prefix: str, name: str) -> Path:
    return parent / f"{prefix}{name}-{secrets.token_hex(4)}"


def _check_name(name: str, arg: str) -> None:
    if not name or name.startswith(".") or "/" in name or os.sep in name:
        raise ValueError(f"{arg} must be a plain, non-hidden directory name, got {name!r}")


def atomic_write_dir(final: Path, write: Callable[[Path], None], *, fsync: bool = True) -> Path:
    """Run `write(tmp)` on a fresh temp dir next to `final`, then rename it to `final`; returns `final`.

    If `write` raises, the temp dir is removed and the error propagates: `final` is untouched. A process killed
    mid-write leaves only a `.tmp-*` dir (ignored by readers, removed by `prune`). If `final` exists it is
    renamed aside, replaced, then deleted; a crash in that short window leaves no `final` (its `.old-*` copy
    remains), so callers should not rewrite the directory `latest` points to. With `fsync`, file contents and
    directories are flushed before the rename, so the commit survives a power loss as well as a crash.
    """
    final = Path(final)
    _check_name(final.name, "final")
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(parent, TMP_PREFIX, final.name)
    tmp.mkdir()
    try:
        write(tmp)
        if fsync:
            _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    aside = None
    if final.exists():
        aside = _sibling(parent, OLD_PREFIX, final.name)
        os.replace(final, aside)
    os.replace(tmp, final)
    if fsync:
        fsync_dir(parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return final


def write_latest(root: Path, name: str) -> None:
    """Point `root/latest` at the checkpoint dir `root/name` (temp file, fsync, os.replace, fsync of root)."""
    root = Path(root)
    _check_name(name, "name")
    if not (root / name).is_dir():
        raise FileNotFoundError(f"name {name!r}: no checkpoint directory {root / name} to point latest at")
    atomic_write_text(root / LATEST, name + "\n")


def find_latest(root: Path) -> Path | None:
    """The checkpoint dir `root/latest` names; None if the pointer is missing, malformed or dangling."""
    pointer = Path(root) / LATEST
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not name or name.startswith(".") or "/" in name or os.sep in name:
        return None
    target = Path(root) / name
    return target if target.is_dir() else None


def list_checkpoints(root: Path) -> list[Path]:
    """Committed `step_<n>` dirs under root, in increasing step order (temp dirs and other entries ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_RE.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def prune(root: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints, never the one `latest` names; returns those deleted.

    Each doomed dir is first renamed to `.old-*` (so a crash mid-delete never leaves a half checkpoint that
    looks committed). Leftover `.tmp-*` / `.old-*` entries from crashed writes are removed too, so call this
    only from the single writer, after a commit.
    """
    if not isinstance(keep_last, (int, np.integer)) or keep_last < 0:
        raise ValueError(f"keep_last must be a non-negative int, got {keep_last!r}")
    root = Path(root)
    checkpoints = list_checkpoints(root)
    keep = {p.name for p in checkpoints[len(checkpoints) - keep_last:]} if keep_last else set()
    latest = find_latest(root)
    if latest is not None:
        keep.add(latest.name)
    deleted = []
    for p in checkpoints:
        if p.name not in keep:
            aside = _sibling(root, OLD_PREFIX, p.name)
            os.replace(p, aside)
            shutil.rmtree(aside)
            deleted.append(p)
    if root.is_dir():
        for stale in root.iterdir():
            if stale.name.startswith((TMP_PREFIX, OLD_PREFIX)):
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
    return deleted


def capture_rng() -> dict:
    """States of python `random`, numpy's global generator, torch CPU and (if in use) CUDA generators.

    The result holds only lists, ints, floats, strings and None: it is JSON-serialisable and loads with
    `torch.load(weights_only=True)`. CUDA states are captured only when CUDA is already initialized in this
    process (capturing would otherwise create a CUDA context, e.g. on the driver, that nothing needs).
    """
    import torch

    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "version": RNG_STATE_VERSION,
        "python": [version, list(internal), gauss_next],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch_cpu": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict) -> None:
    """Inverse of `capture_rng`. CUDA states are set for the devices present (up to the saved count) and
    ignored in a process without CUDA."""
    import torch

    if state.get("version") != RNG_STATE_VERSION:
        raise ValueError(f"state version {state.get('version')!r}; expected {RNG_STATE_VERSION} (from capture_rng)")
    missing = [k for k in ("python", "numpy", "torch_cpu") if k not in state]
    if missing:
        raise ValueError(f"state lacks {missing}; expected the dict capture_rng returns")
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch_cpu"], dtype=torch.uint8))
    if "torch_cuda" in state and torch.cuda.is_available():
        for i, s in enumerate(state["torch_cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(torch.tensor(s, dtype=torch.uint8), device=i)
