"""Checkpoint storage that every node can reach: a shared directory or an object-store URI (`checkpoint.storage`).

Locations go through pyarrow's filesystems, as in Ray Train: `/shared/ckpts` (a path every node mounts),
`s3://bucket/prefix` (credentials from the usual AWS environment variables; `?endpoint_override=host:port&
scheme=http` for an S3-compatible server), `gs://...`, and whatever `pyarrow.fs.FileSystem.from_uri` takes.
Writers stage files on their own node's disk and upload them (`upload_dir`); readers download what they need
(`download_dir`). A checkpoint counts only once `latest` under the run's prefix names it, and the driver writes
`latest` after checking that every part each writer reported is there (`missing_parts`). `probe` runs on every
node at start, so a location one node cannot reach fails before any training, naming the node and the setting.
Pure pyarrow, no Ray: the actors and the driver call these functions.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from medgrpo_ray.io.atomic import atomic_write_text

LATEST = "latest"


@dataclass(frozen=True)
class Location:
    """A resolved storage location: its filesystem and the base path in it (no trailing slash)."""

    uri: str  # as configured (may carry a query string; never credentials in logs: see describe())
    fs: object
    base: str

    def join(self, *parts: str) -> str:
        return "/".join([self.base.rstrip("/"), *[p.strip("/") for p in parts if p]])

    def describe(self) -> str:
        """The URI without query string or user info, for messages."""
        u = self.uri.split("?", 1)[0]
        if "://" in u and "@" in u.split("://", 1)[1].split("/", 1)[0]:
            scheme, rest = u.split("://", 1)
            u = f"{scheme}://***@{rest.split('@', 1)[1]}"
        return u


def resolve(uri: str) -> Location:
    """Location of a path or URI; a plain path must be absolute (every node resolves it the same way)."""
    import pyarrow.fs as pafs

    if "://" not in uri:
        path = os.path.expanduser(uri)
        if not os.path.isabs(path):
            raise ValueError(f"checkpoint.storage={uri!r} is a relative path: give an absolute path every node "
                             "mounts, or an object-store URI (s3://bucket/prefix)")
        return Location(uri, pafs.LocalFileSystem(), path.rstrip("/") or "/")
    fs, base = pafs.FileSystem.from_uri(uri)
    return Location(uri, fs, base.rstrip("/"))


def upload_dir(local: str | Path, loc: Location, dest: str) -> dict[str, int]:
    """Copy every file under `local` to `dest` in the location; returns {relative path: size} of what it sent."""
    import pyarrow.fs as pafs

    local = Path(local)
    sent = {}
    for p in sorted(local.rglob("*")):
        if p.is_file():
            rel = p.relative_to(local).as_posix()
            target = f"{dest}/{rel}"
            parent = target.rsplit("/", 1)[0]
            loc.fs.create_dir(parent, recursive=True)
            pafs.copy_files(str(p), target, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=loc.fs)
            sent[rel] = p.stat().st_size
    return sent


def download_file(loc: Location, src: str, local: str | Path) -> None:
    """Copy one file of the location to the local path `local` (parents created)."""
    import pyarrow.fs as pafs

    Path(local).parent.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(src, str(local), source_filesystem=loc.fs, destination_filesystem=pafs.LocalFileSystem())


def download_dir(loc: Location, src: str, local: str | Path) -> int:
    """Copy every file under `src` in the location to `local`; returns how many."""
    import pyarrow.fs as pafs

    local = Path(local)
    n = 0
    for info in loc.fs.get_file_info(pafs.FileSelector(src, recursive=True, allow_not_found=True)):
        if info.type == pafs.FileType.File:
            download_file(loc, info.path, local / info.path[len(src.rstrip("/")) + 1:])
            n += 1
    if n == 0:
        raise FileNotFoundError(f"nothing under {src} in checkpoint storage {loc.describe()}")
    return n


def list_sizes(loc: Location, prefix: str) -> dict[str, int]:
    """{relative path: size} of every file under `prefix`."""
    import pyarrow.fs as pafs

    out = {}
    for info in loc.fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True)):
        if info.type == pafs.FileType.File:
            out[info.path[len(prefix.rstrip("/")) + 1:]] = int(info.size)
    return out


def missing_parts(loc: Location, prefix: str, expected: dict[str, int]) -> list[str]:
    """Parts reported by the writers that are absent under `prefix` or have another size."""
    have = list_sizes(loc, prefix)
    return sorted(rel for rel, size in expected.items() if have.get(rel) != size)


def write_text(loc: Location, path: str, text: str) -> None:
    """Replace the file whole: an object store's PUT is atomic; on a filesystem the text goes to a temporary
    name first and is moved over the target (a crash never leaves a torn `latest`)."""
    import pyarrow.fs as pafs

    if isinstance(loc.fs, pafs.LocalFileSystem):
        atomic_write_text(path, text)
        return
    loc.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with loc.fs.open_output_stream(path) as f:
        f.write(text.encode("utf-8"))


def read_text(loc: Location, path: str) -> str | None:
    """The file's text, or None if it does not exist."""
    import pyarrow.fs as pafs

    if loc.fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with loc.fs.open_input_stream(path) as f:
        return f.read().decode("utf-8")


def delete_dir(loc: Location, path: str) -> None:
    import pyarrow.fs as pafs

    if loc.fs.get_file_info(path).type == pafs.FileType.Directory:
        loc.fs.delete_dir(path)


def probe(uri: str, who: str) -> str:
    """Write, read back and delete a small file at the location; OSError naming `who` and the setting when
    that fails. Returns `who`."""
    try:
        loc = resolve(uri)
        path = loc.join(".probe", f"{who.replace('/', '_').replace(' ', '_')}-{secrets.token_hex(4)}")
        write_text(loc, path, who)
        ok = read_text(loc, path) == who
        loc.fs.delete_file(path)
    except Exception as err:  # noqa: BLE001 - every failure becomes the one clear message
        raise OSError(f"checkpoint.storage {uri.split('?', 1)[0]!r} is not reachable from {who}: "
                      f"{type(err).__name__}: {str(err).splitlines()[0][:300]}; give a location every learner and "
                      "rollout node can write (a shared mount or an object-store URI)") from None
    if not ok:
        raise OSError(f"checkpoint.storage {uri.split('?', 1)[0]!r}: {who} read back something else than it wrote")
    return who
