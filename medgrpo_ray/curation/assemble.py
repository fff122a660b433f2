"""Assembly of curated records into the training sets (shared/reference/curation.md §4.2 G; issue 21 "Assembly").

Pure functions over records in the published format (dicts as curation/tasks.py builds them; `VideoRecord`s are
read through `to_dict()`), and one writer:

- `dedup`: drop repeats of (source, video_id, task, clip window, answer hash), keeping the first.
- `exclusion_ids` / `exclude`: no video of the public MedVidBench test file (its records' `metadata.video_id`, or
  the `video_id&&start&&end&&fps` ids of a submission) or of a plain id list may reach the output. Ids are matched
  as exact strings, whatever the source (a test id excludes that id in every source).
- `split_by_video`: a source's official split is kept (official *test* videos leave the training output, counted);
  a video without one goes to val when a seeded hash of (source, video id) falls under `val_fraction`. The split is
  a function of the video, so no video is in two splits.
- `balance`: the *standard* set. Water-filling of the target over tasks (a task with fewer records than its share
  gives the rest to the others), then over sources inside each task the same way, then round-robin over the
  videos of each (task, source) cell: one record per video per round, videos in a seeded order, records of a
  video in a seeded order, so a cell's records come from as many videos as its quota allows. Deterministic from
  the seed and independent of the input order; `mode="cap"` takes per-cell caps instead of a target.
- `manifest`: counts per task, source, variant (`_gpt` / `_gemini`), fps, decision, and rejects by reason.
- `write_outputs`: `large.parquet`, `standard.parquet` (records_io.write_parquet), optional `val.parquet` and JSON
  copies, then `manifest.json` last and atomically: a directory with a manifest is complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from medgrpo_ray.curation.exclusion import exclude, exclusion_ids  # noqa: F401 - part of the assembly API
from medgrpo_ray.medvidbench.tasks import canonical_dataset
from medgrpo_ray.curation.record_fields import (_curation, _d, _meta, answer_hash, source_of, task_of, variant_of,
                                                video_id_of, window_of)

MANIFEST_FORMAT = "medgrpo_ray.curation.manifest/1"
MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "trainval": "train", "val": "val", "valid": "val",
                  "validation": "val", "test": "test", "testing": "test"}


def dedup_key(record: Any) -> tuple:
    return (source_of(record), video_id_of(record), task_of(record), window_of(record), answer_hash(record))


def _content_key(record: Any) -> str:
    """A digest of the whole record: orders records independently of the input order."""
    return hashlib.sha256(json.dumps(_d(record), sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _rng(seed: int, *parts: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), *(zlib.crc32(p.encode("utf-8")) for p in parts)])


# ---- dedup ------------------------------------------------------------------------------------
def dedup(records: Iterable[Any]) -> tuple[list, int]:
    """Drop duplicates on (source, video_id, task, clip window, answer hash), keeping the first; returns
    (kept, dropped count). The source is part of the key: a video id may name different videos in two sources."""
    seen: set = set()
    kept, dropped = [], 0
    for r in records:
        key = dedup_key(r)
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        kept.append(r)
    return kept, dropped


# ---- splits -------------------------------------------------------------------------------------------------
@dataclass
class SplitResult:
    train: list
    val: list
    test: list                                          # records of official test videos (not training output)
    assignment: dict[tuple[str, str], str]              # (source, video_id) -> train / val / test
    test_excluded: Counter = field(default_factory=Counter)  # records of official test videos, by source
    official: Counter = field(default_factory=Counter)   # videos whose split came from the source, by split
    hashed: Counter = field(default_factory=Counter)     # videos split by the seeded hash, by split


def normalize_split(value: Any) -> Optional[str]:
    if value is None or str(value).strip() == "":
        return None
    s = _SPLIT_ALIASES.get(str(value).strip().lower())
    if s is None:
        raise ValueError(f"unknown split {value!r}: expected one of {', '.join(sorted(_SPLIT_ALIASES))}")
    return s


def hashed_split(source: str, video_id: str, val_fraction: float, seed: int) -> str:
    """train / val from a seeded hash of (source, video id): the same video always lands in the same split."""
    digest = hashlib.sha256(f"{int(seed)}\x1f{source}\x1f{video_id}".encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    return "val" if u < val_fraction else "train"


def split_by_video(records: Iterable[Any], official: Optional[Mapping[tuple[str, str], Optional[str]]] = None,
                   val_fraction: float = 0.0, seed: int = 0) -> SplitResult:
    """Assign every video one split: the source's official split where `official[(source, video_id)]` gives one
    (sources canonicalised), else the seeded hash. Official test videos are kept apart (and counted), never in
    train or val."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}: expected 0 <= val_fraction < 1")
    table = {(canonical_dataset(str(src)), str(vid)): normalize_split(sp)
             for (src, vid), sp in (official or {}).items()}
    out = SplitResult([], [], [], {})
    for r in records:
        key = (source_of(r), video_id_of(r))
        split = out.assignment.get(key)
        if split is None:
            split = table.get(key)
            if split is not None:
                out.official[split] += 1
            else:
                split = hashed_split(*key, val_fraction, seed)
                out.hashed[split] += 1
            out.assignment[key] = split
        if split == "test":
            out.test.append(r)
            out.test_excluded[key[0]] += 1
        else:
            (out.train if split == "train" else out.val).append(r)
    return out


# ---- balancing ----------------------------------------------------------------------------------------------
def water_fill(available: Mapping[str, int], target: int, order: Sequence[str]) -> dict[str, int]:
    """Split `target` as equally as possible over groups without giving a group more than it has: a group with
    less than its share keeps all it has and the rest goes to the others. Quotas of unsaturated groups differ by
    at most one; the extra units of an uneven split go to the first groups in `order`."""
    quota = {k: 0 for k in order}
    remaining = max(0, min(int(target), sum(max(0, int(available[k])) for k in order)))
    active = [k for k in order if available[k] > 0]
    while remaining > 0 and active:
        share = remaining // len(active)
        if share == 0:
            for k in active[:remaining]:
                quota[k] += 1
            break
        for k in active:
            give = min(share, available[k] - quota[k])
            quota[k] += give
            remaining -= give
        active = [k for k in active if quota[k] < available[k]]
    return quota


def _seeded_order(keys: Iterable[str], seed: int, *parts: str) -> list[str]:
    keys = sorted(keys)
    return [keys[i] for i in _rng(seed, *parts).permutation(len(keys))]


def round_robin(records: Sequence[Any], quota: int, seed: int, *parts: str) -> list:
    """Up to `quota` records, one per video per round: videos in a seeded order, records of a video in a seeded
    order (both over content-sorted lists, so the input order does not matter)."""
    by_video: dict[str, list] = defaultdict(list)
    for r in records:
        by_video[video_id_of(r)].append(r)
    rng = _rng(seed, *parts, "records")
    queues = []
    for vid in _seeded_order(by_video, seed, *parts, "videos"):
        rs = sorted(by_video[vid], key=_content_key)
        queues.append([rs[i] for i in rng.permutation(len(rs))])
    picked: list = []
    depth = 0
    while len(picked) < quota and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(picked) < quota:
                picked.append(q[depth])
        depth += 1
    return picked


def _cap_for(caps: Optional[Mapping], task: str, source: str) -> Optional[int]:
    """A cell's cap: keys (task, source), "task/source", task, or "*" (the first present wins)."""
    if not caps:
        return None
    for key in ((task, source), f"{task}/{source}", task, "*"):
        if key in caps and caps[key] is not None:
            return int(caps[key])
    return None


def balance(records: Iterable[Any], target_total: Optional[int], seed: int = 0, mode: str = "equal",
            caps: Optional[Mapping] = None) -> tuple[list, list[dict]]:
    """The standard set and its table (one row per (task, source) cell: available records and videos, the task's
    and the cell's quota, what was selected and from how many videos).

    mode "equal": water-fill `target_total` over tasks, then each task's quota over its sources, then round-robin
    over videos inside each cell; `caps` (optional) bound a cell's availability first. mode "cap": a cell takes
    min(available, cap) records by the same round-robin; `target_total` is not used. Tasks and sources are
    filled in a seeded order (the units of an uneven split go to the first ones); output grouped by task, source.
    """
    if mode not in ("equal", "cap"):
        raise ValueError(f"balance mode {mode!r}: expected 'equal' or 'cap'")
    if mode == "equal" and (target_total is None or target_total < 0):
        raise ValueError("balance mode 'equal' needs a target_total >= 0")
    cells: dict[tuple[str, str], list] = defaultdict(list)
    for r in records:
        cells[(task_of(r), source_of(r))].append(r)
    avail = {c: len(rs) if _cap_for(caps, *c) is None else min(len(rs), _cap_for(caps, *c)) for c, rs in cells.items()}
    tasks = sorted({t for t, _ in cells})
    sources_of = {t: sorted(s for tt, s in cells if tt == t) for t in tasks}
    if mode == "equal":
        task_avail = {t: sum(avail[(t, s)] for s in sources_of[t]) for t in tasks}
        task_quota = water_fill(task_avail, target_total, _seeded_order(tasks, seed, "tasks"))
        quota = {}
        for t in tasks:
            q = water_fill({s: avail[(t, s)] for s in sources_of[t]}, task_quota[t],
                           _seeded_order(sources_of[t], seed, "sources", t))
            quota.update({(t, s): n for s, n in q.items()})
    else:
        quota = dict(avail)
        task_quota = {t: sum(quota[(t, s)] for s in sources_of[t]) for t in tasks}
    selected, table = [], []
    for t in tasks:
        for s in sources_of[t]:
            got = round_robin(cells[(t, s)], quota[(t, s)], seed, t, s)
            selected.extend(got)
            table.append({"task": t, "source": s, "available": len(cells[(t, s)]),
                          "videos_available": len({video_id_of(r) for r in cells[(t, s)]}),
                          "cap": _cap_for(caps, t, s), "task_quota": task_quota[t], "quota": quota[(t, s)],
                          "selected": len(got), "videos_selected": len({video_id_of(r) for r in got})})
    return selected, table


# ---- manifest and files -------------------------------------------------------------------------------------
def counts(records: Iterable[Any]) -> dict:
    """Counts of one set: records, videos, and per task, source, (task, source), variant, fps, decision, split."""
    by: dict[str, Counter] = {k: Counter() for k in ("task", "source", "task_source", "variant", "fps", "decision")}
    videos, n = set(), 0
    for rec in records:
        r = _d(rec)
        t, s = task_of(r), source_of(r)
        n += 1
        videos.add((s, video_id_of(r)))
        by["task"][t] += 1
        by["source"][s] += 1
        by["task_source"][f"{t}/{s}"] += 1
        by["variant"][variant_of(r)] += 1
        by["fps"][str(_meta(r).get("fps"))] += 1
        decision = _curation(r).get("decision")
        if decision is not None:
            by["decision"][str(decision)] += 1
    return {"records": n, "videos": len(videos), **{f"by_{k}": dict(sorted(c.items())) for k, c in by.items()}}


def manifest(large: Iterable[Any], standard: Iterable[Any], rejects: Optional[Mapping[str, int]] = None,
             extra: Optional[Mapping[str, Any]] = None) -> dict:
    """The run's manifest: counts of the large and standard sets, rejects by reason, and `extra` (settings, the
    balance table, dedup / exclusion / split counts) merged in at the top level (a clash raises)."""
    out = {"format": MANIFEST_FORMAT, "large": counts(large), "standard": counts(standard),
           "rejects": dict(sorted(Counter(rejects or {}).items(), key=lambda kv: (-kv[1], kv[0])))}
    for k, v in (extra or {}).items():
        if k in out:
            raise ValueError(f"manifest extra key {k!r} clashes with a built-in key")
        out[k] = v
    return out


def _video_records(records: Iterable[Any]):
    from medgrpo_ray.data.records import VideoRecord

    for r in records:
        yield r if isinstance(r, VideoRecord) else VideoRecord.from_dict(r, source="<curation>")


def write_outputs(out_dir: str | os.PathLike, large: Sequence[Any], standard: Sequence[Any], manifest: Mapping,
                  val: Optional[Sequence[Any]] = None, json_copies: bool = False) -> dict[str, str]:
    """Write `large.parquet`, `standard.parquet` (and `val.parquet` when given; `.json` copies when asked) with
    records_io, then `manifest.json` last, atomically, with the files and their counts. An old manifest is removed
    first, so a directory holds a manifest only once every file of that run is written. A record the records
    format rejects raises (RecordError) before the manifest is written. Returns name -> path."""
    from medgrpo_ray.data.records_io import write_json, write_parquet
    from medgrpo_ray.io.atomic import atomic_write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    sets = {"large": large, "standard": standard, **({"val": val} if val is not None else {})}
    files, paths = {}, {}
    for name, records in sets.items():
        path = out / f"{name}.parquet"
        files[path.name] = write_parquet(_video_records(records), path)
        paths[path.name] = str(path)
        if json_copies:
            jpath = out / f"{name}.json"
            files[jpath.name] = write_json(_video_records(records), jpath)
            paths[jpath.name] = str(jpath)
    atomic_write_json(out / MANIFEST, {**manifest, "files": files})
    paths[MANIFEST] = str(out / MANIFEST)
    return paths


def assemble(records: Iterable[Any], *, seed: int = 0, target_total: Optional[int] = 51_505, mode: str = "equal",
             caps: Optional[Mapping] = None, exclusion: Any = (), official: Optional[Mapping] = None,
             val_fraction: float = 0.0, rejects: Optional[Mapping[str, int]] = None) -> dict:
    """dedup -> exclude -> split -> balance -> manifest. Returns {large, val, standard, manifest}: `large` is the
    train split, `standard` is balanced from it; the manifest holds every count removed on the way."""
    kept, dropped = dedup(records)
    ids = exclusion_ids(exclusion) if exclusion else set()
    kept, excluded = exclude(kept, ids)
    split = split_by_video(kept, official, val_fraction, seed)
    standard, table = balance(split.train, target_total, seed, mode, caps)
    m = manifest(split.train, standard, rejects, {
        "settings": {"seed": seed, "target_total": target_total, "mode": mode, "val_fraction": val_fraction,
                     "caps": {"/".join(k) if isinstance(k, tuple) else str(k): v for k, v in (caps or {}).items()}},
        "dedup_dropped": dropped, "excluded_ids": len(ids), "excluded_by_source": dict(sorted(excluded.items())),
        "official_test_excluded_by_source": dict(sorted(split.test_excluded.items())),
        "val": counts(split.val), "videos_by_split": {"official": dict(split.official), "hashed": dict(split.hashed)},
        "balance": table})
    return {"large": split.train, "val": split.val, "standard": standard, "manifest": m}
