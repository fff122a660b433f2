"""Ground truth from a record's `struc_info` (and `gnd` where the leaderboard falls back to it), per task.

Shapes accepted are the ones the leaderboard reads (docs/evaluation.md): TAL and STG read `struc_info`
only; SA and CVS parse the `gnd` text when `struc_info` is empty. Malformed entries raise ValueError naming
the record (`where`) and the field.
"""
from __future__ import annotations

from typing import Any, Mapping

from medgrpo_ray.rewards.parsers import parse_cvs, parse_skill
from medgrpo_ray.rewards.types import Box, CaptionSegment, CvsAnswer, SkillAnswer, level_from_mean

_LEVELS = {"n": "novice", "i": "intermediate", "e": "expert", "1": "novice", "2": "intermediate", "3": "expert"}


def _float(value: Any, where: str, field: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"record {where}: struc_info {field} is {value!r}; expected a number") from None


def _int(value: Any, where: str, field: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"record {where}: struc_info {field} is {value!r}; expected an integer score") from None


def tal_spans(struc_info: Any, where: str = "?") -> list[tuple[float, float]]:
    """All `spans[*].{start, end}` of every dict in the struc_info list (seconds, GT order)."""
    spans: list[tuple[float, float]] = []
    if not isinstance(struc_info, list):
        return spans
    for item in struc_info:
        if not isinstance(item, Mapping):
            continue
        for span in item.get("spans") or []:
            if isinstance(span, Mapping) and "start" in span and "end" in span:
                spans.append((_float(span["start"], where, "spans.start"), _float(span["end"], where, "spans.end")))
    return spans


def stg_boxes(struc_info: Any, where: str = "?") -> list[tuple[str, Box | None]]:
    """(timestamp key, box) in GT dict order from the first list item's `bbox_dict` (a bare dict, or an item
    without `bbox_dict`, is taken as the box dict itself). A box that is not four numbers is None."""
    item = struc_info[0] if isinstance(struc_info, list) and struc_info else struc_info
    if not isinstance(item, Mapping):
        return []
    boxes = item.get("bbox_dict", item)
    if not isinstance(boxes, Mapping):
        return []
    out: list[tuple[str, Box | None]] = []
    for key, value in boxes.items():
        _float(key, where, "bbox_dict key")
        box = None
        if isinstance(value, (list, tuple)) and len(value) == 4:
            try:
                box = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                box = None
        out.append((str(key), box))  # type: ignore[arg-type]
    return out


def caption_segments(struc_info: Any, where: str = "?") -> list[CaptionSegment]:
    """Dense-caption GT from `[{start, end, caption}]`, `[[...]]` or NurViD `[{"dc_segments": [...]}]`;
    segments without a `caption` are ignored."""
    if not isinstance(struc_info, list):
        return []
    flat: list[Any] = []
    for item in struc_info:
        if isinstance(item, list):
            flat.extend(item)
        elif isinstance(item, Mapping) and isinstance(item.get("dc_segments"), list):
            flat.extend(item["dc_segments"])
        else:
            flat.append(item)
    out = []
    for seg in flat:
        if isinstance(seg, Mapping) and "caption" in seg and "start" in seg and "end" in seg:
            out.append(CaptionSegment(_float(seg["start"], where, "start"), _float(seg["end"], where, "end"), str(seg["caption"])))
    return out


def normalise_level(value: Any) -> str | None:
    """GT skill level from N/I/E, 1/2/3, or a word containing novice/intermediate/expert."""
    s = str(value).strip().lower() if value is not None else ""
    if s in _LEVELS:
        return _LEVELS[s]
    for word in ("novice", "intermediate", "expert"):
        if word in s:
            return word
    return None


def skill_truth(struc_info: Any, gnd: str, where: str = "?") -> tuple[str | None, dict[str, int]]:
    """(GT level, GT aspect scores) from `skill_level`/`skill_scores` of the first struc_info item; the
    `gnd` text is parsed for whatever struc_info does not give."""
    item = struc_info[0] if isinstance(struc_info, list) and struc_info else None
    level, aspects = None, {}
    if isinstance(item, Mapping):
        level = normalise_level(item.get("skill_level"))
        scores = item.get("skill_scores")
        if isinstance(scores, Mapping):
            aspects = {str(k): _int(v, where, f"skill_scores[{k!r}]") for k, v in scores.items()}
    if level is None or not aspects:
        parsed = parse_skill(gnd)
        if isinstance(parsed, SkillAnswer):
            level = level or level_from_mean(sum(parsed.numbers) / len(parsed.numbers))
            aspects = aspects or dict(parsed.aspects)
    return level, aspects


def cvs_truth(struc_info: Any, gnd: str, where: str = "?") -> dict[str, int]:
    """GT CVS components from the first struc_info item's `cvs_scores`, else parsed from `gnd`."""
    item = struc_info[0] if isinstance(struc_info, list) and struc_info else None
    if isinstance(item, Mapping) and isinstance(item.get("cvs_scores"), Mapping):
        return {str(k): _int(v, where, f"cvs_scores[{k!r}]") for k, v in item["cvs_scores"].items()}
    parsed = parse_cvs(gnd)
    return dict(parsed.components) if isinstance(parsed, CvsAnswer) else {}
