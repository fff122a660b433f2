"""Read the fields that rewards and the evaluator need from a record in the published format.

A record is a Mapping with the published keys (qa_type, struc_info, gnd, metadata{fps, ...}, data_source,
question, answer) or an object offering them through `.to_dict()`. Errors name the record and the field.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from medgrpo_ray.medvidbench.tasks import canonical_dataset, canonical_task

_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")


def as_mapping(record: Any) -> Mapping:
    """The record as a Mapping (records of the data layer convert through `.to_dict()`)."""
    if isinstance(record, Mapping):
        return record
    to_dict = getattr(record, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise TypeError(f"a record must be a Mapping or offer .to_dict(); got {type(record).__name__}")


def text(value: Any) -> str:
    """A text field as str ("" for None)."""
    return "" if value is None else str(value)


def record_task(record: Mapping, rid: str = "?") -> str:
    """Canonical task of the record's `qa_type`; ValueError naming the record otherwise."""
    try:
        return canonical_task(text(record.get("qa_type")))
    except ValueError as err:
        raise ValueError(f"record {rid}: field qa_type: {err}") from None


def record_dataset(record: Mapping) -> str:
    """Canonical dataset: `data_source`, else `dataset_name` (the leaderboard's merge fallback), else a
    heuristic on `metadata.video_id` (partial, see docs/evaluation.md), else "Unknown"."""
    for key in ("data_source", "dataset_name"):
        value = text(record.get(key)).strip()
        if value and value.lower() != "unknown":
            return canonical_dataset(value)
    video_id = text((record.get("metadata") or {}).get("video_id")).strip()
    if "_part" in video_id:
        return "CoPESD"
    if video_id.lower().startswith("video"):
        return "CholecT50"
    if _YOUTUBE_ID.match(video_id):
        return "AVOS"
    return "Unknown"


def record_fps(record: Mapping, rid: str = "?") -> float:
    """`metadata.fps` as a positive float (published as a string such as "0.5")."""
    raw = (record.get("metadata") or {}).get("fps")
    try:
        fps = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"record {rid}: metadata.fps is {raw!r}; expected a number such as \"1.0\"") from None
    if not fps > 0:
        raise ValueError(f"record {rid}: metadata.fps is {raw!r}; expected a positive number")
    return fps


def frame_size(record: Mapping) -> tuple[float, float] | None:
    """(width, height) of the source frames if the metadata carries them, else None.

    Looked up as metadata `frame_size` = [W, H], or `width`/`height`, or `frame_width`/`frame_height`. The
    published records carry none of these; the data layer may add them.
    """
    meta = record.get("metadata") or {}
    size = meta.get("frame_size")
    pairs = [size] if isinstance(size, (list, tuple)) and len(size) == 2 else []
    pairs += [(meta.get("width"), meta.get("height")), (meta.get("frame_width"), meta.get("frame_height"))]
    for w, h in pairs:
        try:
            wf, hf = float(w), float(h)
        except (TypeError, ValueError):
            continue
        if wf > 0 and hf > 0:
            return wf, hf
    return None
