"""Atomic file writes: a reader sees the old file or the whole new one, never a torn one.

The idiom (write a temporary name in the same directory, flush and fsync it, `os.replace` it over the target,
fsync the directory) in one place: `atomic_path` for writers that need a path of their own (PyAV, Parquet
writers, streaming JSON), and `atomic_write_text` / `atomic_write_bytes` / `atomic_write_json` for content in
hand. A failure or a kill before the rename leaves the target as it was; a temporary file left by a kill is
named `.tmp-<name>-<random><suffix>` beside it (hidden; checkpoint pruning removes such leftovers).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Iterator

TMP_PREFIX = ".tmp-"  # every temporary name starts so: hidden, and removable by a cleanup that knows it


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or a new entry in directory `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a closed file's contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path: Path, suffix: str = "") -> Path:
    """A fresh temporary name beside `path`; `suffix` keeps an extension a library reads (".mp4", ".parquet")."""
    return path.with_name(f"{TMP_PREFIX}{path.name}-{secrets.token_hex(4)}{suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "", fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s new content to; on a clean exit it replaces `path` atomically.

    On an exception the temporary file is removed and `path` is left as it was. With `fsync` the content and the
    rename are flushed to disk (a crash of the machine, not only of the process, keeps one whole version). A
    symbolic link is written through (its target is replaced, the link stays), a replaced file keeps its permission
    bits, and a target that is not a regular file (/dev/stdout, a FIFO) is written in place: it cannot be renamed over.
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    if path.exists() and not path.is_file():
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path, suffix)
    try:
        yield tmp
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8", fsync: bool = True) -> Path:
    """Write `text` to `path` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode(encoding), fsync=fsync)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, sort_keys: bool = False,
                      ensure_ascii: bool = True, fsync: bool = True) -> Path:
    """Write `obj` as JSON (json.dumps's escaping unless `ensure_ascii=False`, trailing newline) to `path`
    atomically; returns the path."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii) + "\n"
    return atomic_write_text(path, text, fsync=fsync)
