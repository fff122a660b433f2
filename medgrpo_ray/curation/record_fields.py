"""Fields of a curated record in the published format (a dict as curation/tasks.py builds it, or a VideoRecord),
read the same way by assembly and exclusion."""
from __future__ import annotations

import hashlib
from typing import Any, Mapping

from medgrpo_ray.medvidbench.tasks import canonical_dataset, canonical_task

VARIANTS = ("gpt", "gemini")


def _d(record: Any) -> Mapping:
    """The published dict of a record (a dict as is; a VideoRecord through its shared dict)."""
    if isinstance(record, Mapping):
        return record
    shared = getattr(record, "shared_dict", None)
    if shared is None:
        raise TypeError(f"expected a record dict or VideoRecord, got {type(record).__name__}")
    return shared()


def _curation(r: Mapping) -> Mapping:
    c = r.get("curation")
    return c if isinstance(c, Mapping) else {}


def _meta(r: Mapping) -> Mapping:
    m = r.get("metadata")
    return m if isinstance(m, Mapping) else {}


def task_of(record: Any) -> str:
    """Canonical task of the record's qa_type (`dense_captioning_gpt` -> `dense_captioning`); an unknown qa_type
    is kept as spelt (lower case)."""
    q = str(_d(record).get("qa_type") or "")
    try:
        return canonical_task(q)
    except ValueError:
        return q.strip().lower()


def source_of(record: Any) -> str:
    r = _d(record)
    return canonical_dataset(str(r.get("data_source") or r.get("dataset_name") or ""))


def variant_of(record: Any) -> str:
    """`gpt` / `gemini` from the qa_type suffix, else `none` (template tasks)."""
    q = str(_d(record).get("qa_type") or "").strip().lower()
    for v in VARIANTS:
        if q.endswith("_" + v):
            return v
    return "none"


def id_from_text(text: str) -> str:
    """The video id of a submission-style id `video_id&&start&&end&&fps` (a bare id is returned stripped)."""
    return str(text).split("&&", 1)[0].strip()


def video_id_of(record: Any) -> str:
    """`metadata.video_id`, else a top-level `video_id`, else the video part of a submission `id`; raises
    ValueError where the record names no video (it could not be checked against the exclusion list)."""
    r = _d(record)
    for value in (_meta(r).get("video_id"), r.get("video_id"),
                  id_from_text(r["id"]) if isinstance(r.get("id"), str) else None):
        if value is not None and str(value).strip():
            return str(value).strip()
    raise ValueError(f"record names no video (metadata.video_id): unit {_curation(r).get('unit')!r}, "
                     f"qa_type {r.get('qa_type')!r}")


def window_of(record: Any) -> tuple:
    """The clip window: curation.clip (seconds), else metadata start_time/end_time, else the frame range."""
    r = _d(record)
    clip = _curation(r).get("clip")
    if isinstance(clip, (list, tuple)) and len(clip) == 2:
        return ("s", round(float(clip[0]), 3), round(float(clip[1]), 3))
    m = _meta(r)
    if m.get("start_time") is not None or m.get("end_time") is not None:
        return ("s", m.get("start_time"), m.get("end_time"))
    return ("f", str(m.get("input_video_start_frame")), str(m.get("input_video_end_frame")))


def answer_of(record: Any) -> str:
    turns = _d(record).get("conversations") or []
    answers = [t.get("value", "") for t in turns if isinstance(t, Mapping) and t.get("from") == "gpt"]
    return str(answers[-1]) if answers else ""


def answer_hash(record: Any) -> str:
    return hashlib.sha256(answer_of(record).encode("utf-8")).hexdigest()[:16]


