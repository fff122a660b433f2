"""Field checks for MedVidBench records: numbers, boxes and each task's `struc_info` shape.

The shapes accepted are the ones the leaderboard's evaluators read (docs/data.md). A problem raises
`FieldError(field, problem)`; `VideoRecord` adds the file and record index. Checks never modify values.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

CVS_KEYS: tuple[str, ...] = ("two_structures", "cystic_plate", "hepatocystic_triangle")


class FieldError(Exception):
    """A field problem: the field's path (e.g. `struc_info[0].spans[1].end`) and what is wrong and expected."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field, self.problem = field, problem


def number(value: Any, where: str, *, positive: bool = False, minimum: float | None = None) -> float:
    """A finite float from a number or a numeric string (the published data spells numbers both ways)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FieldError(where, f"is {value!r}; expected a number (or a numeric string such as \"1.0\")")
    try:
        x = float(value)
    except ValueError:
        raise FieldError(where, f"is {value!r}; expected a number (or a numeric string such as \"1.0\")") from None
    if not math.isfinite(x) or (positive and x <= 0) or (minimum is not None and x < minimum):
        bound = ("a positive number" if positive else f"a number >= {minimum}" if minimum is not None
                 else "a finite number")
        raise FieldError(where, f"is {value!r}; expected {bound}")
    return x


def int_like(value: Any, where: str, lo: int = 0, hi: int | None = None) -> int:
    """An integer in [lo, hi] from an int or a string of digits (frame indices are published as strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().lstrip("-").isdigit():
        raise FieldError(where, f"is {value!r}; expected an integer (or a string of digits)")
    x = int(value)
    if x < lo or (hi is not None and x > hi):
        upto = f" to {hi}" if hi is not None else ""
        raise FieldError(where, f"is {value!r}; expected an integer from {lo}{upto}")
    return x


def box(value: Any, where: str) -> tuple[float, float, float, float]:
    """[x1, y1, x2, y2] with x1 <= x2 and y1 <= y2 (pixels)."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise FieldError(where, f"is {value!r}; expected a box [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (number(v, f"{where}[{i}]") for i, v in enumerate(value))
    if x2 < x1 or y2 < y1:
        raise FieldError(where, f"is {list(value)!r}; expected x1 <= x2 and y1 <= y2")
    return x1, y1, x2, y2


def _items(struc_info: Any, where: str = "struc_info") -> list[Any]:
    if not isinstance(struc_info, list):
        raise FieldError(where, f"is a {type(struc_info).__name__}; expected a list")
    return struc_info


def _check_tal(si: Any) -> None:
    """A list of {spans: [{start, end}]} (or one such dict, as the first public evaluator accepts)."""
    for i, item in enumerate([si] if isinstance(si, Mapping) else _items(si)):
        at = "struc_info" if isinstance(si, Mapping) else f"struc_info[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("spans"), list):
            raise FieldError(f"{at}.spans", f"{at} is {item!r}; expected a dict with a list `spans` of {{start, end}}")
        for j, span in enumerate(item["spans"]):
            if not isinstance(span, Mapping) or "start" not in span or "end" not in span:
                raise FieldError(f"{at}.spans[{j}]", f"is {span!r}; expected {{\"start\": s, \"end\": e}} in seconds")
            start = number(span["start"], f"{at}.spans[{j}].start", minimum=0.0)
            if number(span["end"], f"{at}.spans[{j}].end") < start:
                raise FieldError(f"{at}.spans[{j}].end",
                                 f"span {dict(span)!r} ends before it starts; expected end >= start")


def _check_stg(si: Any) -> None:
    """The first item's `bbox_dict` {"<seconds>": [x1, y1, x2, y2]} (a bare dict is the box dict itself)."""
    items = [si] if isinstance(si, Mapping) else _items(si)
    if not items:
        return
    item, at = items[0], "struc_info" if isinstance(si, Mapping) else "struc_info[0]"
    if not isinstance(item, Mapping):
        raise FieldError(at, f"is {item!r}; expected a dict with `bbox_dict`")
    boxes = item["bbox_dict"] if "bbox_dict" in item else item
    at = f"{at}.bbox_dict" if "bbox_dict" in item else at
    if not isinstance(boxes, Mapping) or not boxes:
        raise FieldError(at, f"is {boxes!r}; expected a non-empty dict {{\"<seconds>\": [x1, y1, x2, y2]}}")
    for key, value in boxes.items():
        number(key, f"{at} key {key!r}", minimum=0.0)
        box(value, f"{at}[{key!r}]")


def _check_dense_captioning(si: Any) -> None:
    """[{start, end, caption}], [[...]] or NurViD's [{"dc_segments": [...]}]; captions must be text if given."""
    segments: list[tuple[str, Any]] = []
    for i, item in enumerate(_items(si)):
        if isinstance(item, list):
            segments += [(f"struc_info[{i}][{j}]", seg) for j, seg in enumerate(item)]
        elif isinstance(item, Mapping) and "dc_segments" in item:
            if not isinstance(item["dc_segments"], list):
                raise FieldError(f"struc_info[{i}].dc_segments",
                                 f"is {item['dc_segments']!r}; expected a list of segments")
            segments += [(f"struc_info[{i}].dc_segments[{j}]", seg) for j, seg in enumerate(item["dc_segments"])]
        else:
            segments.append((f"struc_info[{i}]", item))
    for where, seg in segments:
        if not isinstance(seg, Mapping) or "start" not in seg or "end" not in seg:
            raise FieldError(where, f"is {seg!r}; expected {{\"start\": s, \"end\": e, \"caption\": text}}")
        start = number(seg["start"], f"{where}.start", minimum=0.0)
        if number(seg["end"], f"{where}.end") < start:
            raise FieldError(f"{where}.end", f"segment {dict(seg)!r} ends before it starts; expected end >= start")
        if "caption" in seg and not isinstance(seg["caption"], str):
            raise FieldError(f"{where}.caption", f"is {seg['caption']!r}; expected text")


def _check_skill(si: Any) -> None:
    """[{skill_level: N|I|E (or a word or digit), skill_scores: {aspect: int}}]."""
    for i, item in enumerate(_items(si)):
        if not isinstance(item, Mapping) or not ("skill_scores" in item or "skill_level" in item):
            raise FieldError(f"struc_info[{i}]",
                             f"is {item!r}; expected a dict with `skill_level` and/or `skill_scores`")
        level = item.get("skill_level")
        if level is not None and (isinstance(level, bool) or not isinstance(level, (str, int))):
            raise FieldError(f"struc_info[{i}].skill_level", f"is {level!r}; expected N, I or E (or a word or digit)")
        scores = item.get("skill_scores")
        if scores is None:
            continue
        if not isinstance(scores, Mapping):
            raise FieldError(f"struc_info[{i}].skill_scores", f"is {scores!r}; expected a dict {{aspect: score}}")
        for name, score in scores.items():
            int_like(score, f"struc_info[{i}].skill_scores[{name!r}]")


def _check_cvs(si: Any) -> None:
    """[{cvs_scores: {two_structures, cystic_plate, hepatocystic_triangle}}], each 0..2."""
    for i, item in enumerate(_items(si)):
        scores = item.get("cvs_scores") if isinstance(item, Mapping) else None
        if not isinstance(scores, Mapping):
            raise FieldError(f"struc_info[{i}].cvs_scores",
                             f"struc_info[{i}] is {item!r}; expected {{\"cvs_scores\": {{...}}}}")
        for key in CVS_KEYS:
            if key not in scores:
                raise FieldError(f"struc_info[{i}].cvs_scores.{key}",
                                 f"is missing; expected keys {', '.join(CVS_KEYS)}")
            int_like(scores[key], f"struc_info[{i}].cvs_scores.{key}", 0, 2)


_STRUC_CHECKS = {"tal": _check_tal, "stg": _check_stg, "dense_captioning": _check_dense_captioning,
                 "skill_assessment": _check_skill, "cvs_assessment": _check_cvs}


def check_struc_info(task: str, struc_info: Any) -> None:
    """Validate `struc_info` of a canonical task; next_action and the caption tasks take any value (their ground
    truth is the answer text)."""
    if task in _STRUC_CHECKS:
        _STRUC_CHECKS[task](struc_info)
