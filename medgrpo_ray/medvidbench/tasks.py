"""The MedVidBench vocabulary: canonical task and dataset names, and the mapping from published spellings.

`qa_type` in the published data has 11 variants for 8 tasks (`dense_captioning_gpt`, `..._gemini`, ...) and
`data_source` spells Cholec80-CVS two ways; everything downstream keys on the canonical names defined here.
"""
from __future__ import annotations

TASKS: tuple[str, ...] = (
    "tal",
    "stg",
    "next_action",
    "dense_captioning",
    "video_summary",
    "region_caption",
    "skill_assessment",
    "cvs_assessment",
)
CAPTION_TASKS: frozenset[str] = frozenset({"dense_captioning", "video_summary", "region_caption"})

DATASETS: tuple[str, ...] = (
    "CholecT50",
    "CholecTrack20",
    "Cholec80-CVS",
    "CoPESD",
    "AVOS",
    "EgoSurgery",
    "JIGSAWS",
    "NurViD",
)

_DATASET_ALIASES = {name.lower().replace("_", "-"): name for name in DATASETS}


def canonical_task(qa_type: str) -> str:
    """Map a published `qa_type` (e.g. `dense_captioning_gemini`, `dc`) to its canonical task name.

    Caption families match by substring, as the leaderboard's evaluators do. Raises ValueError for an
    unknown type.
    """
    q = (qa_type or "").strip().lower()
    if q in TASKS:
        return q
    if "dense_captioning" in q or q == "dc":
        return "dense_captioning"
    if "video_summary" in q:
        return "video_summary"
    if "region_caption" in q:
        return "region_caption"
    raise ValueError(f"unknown qa_type {qa_type!r}: expected one of {', '.join(TASKS)} (caption tasks may end in _gpt/_gemini)")


def canonical_dataset(data_source: str) -> str:
    """Map a published `data_source` (`Cholec80_CVS` or `Cholec80-CVS`, any case) to its canonical name.

    Unknown sources are returned stripped but otherwise unchanged, so a user's own dataset still groups.
    """
    s = (data_source or "").strip()
    return _DATASET_ALIASES.get(s.lower().replace("_", "-"), s)
