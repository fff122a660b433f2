"""Which videos may not reach the training output: the public MedVidBench test split's (or any given list's).

`exclusion_ids` reads video ids from a records file (its metadata.video_id), a merged results dict, a submission
(`video_id&&start&&end&&fps` ids), a plain list (one id per line) or records; `exclude` drops every record of
those videos and counts them by source. Ids are matched as exact strings, whatever the source.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

from medgrpo_ray.curation.record_fields import id_from_text, source_of, video_id_of

RECORD_SUFFIXES = (".json", ".jsonl", ".parquet", ".pq")


def _ids_from_item(item: Any) -> Iterable[str]:
    if isinstance(item, str):
        vid = id_from_text(item)
        return [vid] if vid else []
    if isinstance(item, Mapping) and not ("metadata" in item or "video_id" in item or "id" in item):
        # a merged-results file: {"0": record, "1": record, ...}
        return [v for value in item.values() for v in _ids_from_item(value)]
    if isinstance(item, Mapping) or hasattr(item, "shared_dict"):
        return [video_id_of(item)]
    if isinstance(item, list):
        return [v for value in item for v in _ids_from_item(value)]
    raise ValueError(f"cannot read a video id from {type(item).__name__}")


def _ids_from_file(path: Path) -> set[str]:
    suffix = path.suffix.lower()
    if suffix == ".json":
        with open(path, encoding="utf-8") as f:
            return set(_ids_from_item(json.load(f)))
    if suffix == ".jsonl":
        ids: set[str] = set()
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    ids.update(_ids_from_item(json.loads(line)))
        return ids
    if suffix in (".parquet", ".pq"):
        from medgrpo_ray.data.records_io import iter_dicts

        ids = set()
        for index, d in iter_dicts(path):
            if not isinstance(d, Mapping):
                raise ValueError(f"{path}: item {index} is unreadable ({d}); its video could not be excluded")
            ids.update(_ids_from_item(d))
        return ids
    with open(path, encoding="utf-8") as f:  # a plain list: one id per line, '#' comments
        return {id_from_text(line) for line in f if line.strip() and not line.lstrip().startswith("#")}


def _looks_like_path(text: str) -> bool:
    return "&&" not in text and ("/" in text or os.sep in text or Path(text).suffix.lower() in
                                 RECORD_SUFFIXES + (".txt", ".csv", ".lst"))


def exclusion_ids(paths_or_records: Any) -> set[str]:
    """Video ids to exclude, from any mix of: a MedVidBench records file (.json list, merged results dict keyed
    "0".."N-1", .jsonl, .parquet: each record's metadata.video_id), a submission file (rows whose `id` is
    `video_id&&start&&end&&fps`), a plain text list (one id per line, or an `&&` id), record dicts or VideoRecords,
    or id strings. A file that yields no id raises: an empty exclusion list is more likely the wrong file."""
    items = [paths_or_records] if isinstance(paths_or_records, (str, os.PathLike, Mapping)) else paths_or_records
    ids: set[str] = set()
    for item in items:
        if isinstance(item, str) and not Path(item).is_file() and _looks_like_path(item):
            raise FileNotFoundError(f"{item}: exclusion list not found")
        if isinstance(item, os.PathLike) or (isinstance(item, str) and Path(item).is_file()):
            found = _ids_from_file(Path(item))
            if not found:
                raise ValueError(f"{item}: no video ids found; expected a MedVidBench records / submission file "
                                 "or one id per line")
            ids |= found
        else:
            ids.update(_ids_from_item(item))
    ids.discard("")
    return ids


def exclude(records: Iterable[Any], ids: Iterable[str]) -> tuple[list, Counter]:
    """Drop every record whose video id is in `ids`; returns (kept, excluded count by source)."""
    ids = set(ids)
    kept, excluded = [], Counter()
    for r in records:
        if video_id_of(r) in ids:
            excluded[source_of(r)] += 1
        else:
            kept.append(r)
    return kept, excluded


