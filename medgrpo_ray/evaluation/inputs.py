"""Read evaluation inputs: the published merged results file and the leaderboard submission format.

Kept apart from the pure evaluator; these are the only functions of the package that touch files.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from medgrpo_ray.evaluation.evaluator import as_items
from medgrpo_ray.evaluation.types import Item


def _read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def is_submission(data: Any) -> bool:
    """True for a leaderboard submission: a list of {id, qa_type, prediction}."""
    return isinstance(data, list) and bool(data) and isinstance(data[0], Mapping) and "prediction" in data[0]


def _with_conversation_fields(rec: Mapping) -> dict:
    """Fill gnd/question from SFT-style `conversations` when the GT record has no gnd."""
    out = dict(rec)
    turns = rec.get("conversations") or []
    if "gnd" not in out and len(turns) > 1:
        out["gnd"] = turns[1].get("value", "")
    if "question" not in out and turns:
        out["question"] = str(turns[0].get("value", "")).removeprefix("<video>\n")
    return out


def merge_submission(predictions: list[Mapping], ground_truth: Any) -> tuple[list[Item], list[str]]:
    """Pair a submission with GT records by list position (the leaderboard's rule: ids are not unique).

    Returns (items with `answer` = prediction, warnings). Lengths must be equal.
    """
    gt_items = as_items(ground_truth)
    if len(predictions) != len(gt_items):
        raise ValueError(
            f"submission has {len(predictions)} predictions but the GT file has {len(gt_items)} records; "
            "the leaderboard matches by list position, so both must have the same length and order"
        )
    items, mismatched = [], 0
    for pred, (rid, gt) in zip(predictions, gt_items):
        rec = _with_conversation_fields(gt)
        rec["answer"] = "" if pred.get("prediction") is None else str(pred["prediction"])
        mismatched += str(pred.get("qa_type", rec.get("qa_type"))) != str(rec.get("qa_type"))
        items.append((rid, rec))
    warnings = [f"{mismatched} submission rows have a qa_type different from the GT record at the same position (GT used)"] if mismatched else []
    return items, warnings


def load_results(path: str | Path, gt_path: str | Path | None = None) -> tuple[list[Item], list[str]]:
    """Items from a merged results file, or from a submission file plus `gt_path`."""
    data = _read_json(path)
    if is_submission(data):
        if gt_path is None:
            raise ValueError(f"{path} is a leaderboard submission (list of id/qa_type/prediction); pass the GT file too (--gt)")
        return merge_submission(data, _read_json(gt_path))
    if isinstance(data, list) and data and isinstance(data[0], Mapping) and "answer" not in data[0]:
        raise ValueError(f"{path}: records have no 'answer' field; expected the merged results format (dict keyed \"0\"..\"N-1\")")
    return as_items(data), []
