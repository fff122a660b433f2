"""The gate every template record passes: this project's evaluator scores the record with its own answer as the
prediction, and anything short of a perfect score rejects it, with the reason counted.

This catches format drift between the builders and the leaderboard's parsers (STG time keys the evaluator cannot
look up, a zero-length TAG span whose IoU with itself is 0, a NAP answer outside the class list the evaluator picks
for the record's dataset and procedure, an SA aspect name spelled differently) before a record is written.
"""
from __future__ import annotations

from typing import Mapping, Optional

from medgrpo_ray.evaluation.cvs import evaluate_cvs
from medgrpo_ray.evaluation.nap import evaluate_nap
from medgrpo_ray.evaluation.sa import evaluate_sa
from medgrpo_ray.evaluation.stg import record_miou
from medgrpo_ray.evaluation.tal import record_scores

PERFECT = 1.0 - 1e-9


def as_self_prediction(record: Mapping) -> dict:
    """The merged-results form of a curated record, its reference answer as the model's answer."""
    from medgrpo_ray.data.records import VideoRecord

    rec = VideoRecord.from_dict(dict(record), source="curation")
    return rec.to_eval_dict(prediction=rec.answer)


def self_score_problem(record: Mapping) -> Optional[str]:
    """None when the evaluator gives the record a perfect score against itself, else why not."""
    try:
        item = as_self_prediction(record)
    except Exception as err:  # noqa: BLE001 - a record the loader refuses is rejected with its message
        return f"not a valid record: {err}"
    task, rid = item["qa_type"], "self"
    if task == "tal":
        scores = record_scores(rid, item)
        bad = {tau: v for tau, v in scores.items() if tau <= 0.5 and (v[0] < PERFECT or v[1] < PERFECT)}
        return None if not bad else f"tal: self meanIoU/recall {bad} (zero-length or unparseable span?)"
    if task == "stg":
        miou = record_miou(rid, item)
        return None if miou is not None and miou >= PERFECT else f"stg: self mIoU {miou} (time keys or boxes)"
    evaluators = {"next_action": evaluate_nap, "skill_assessment": evaluate_sa, "cvs_assessment": evaluate_cvs}
    if task not in evaluators:
        return f"no self-check for task {task!r}"
    metric = evaluators[task]([(rid, item)])
    if metric.value is None or metric.value < PERFECT or metric.counted != 1:
        return f"{task}: self score {metric.value} ({metric.note or 'counted ' + str(metric.counted)})"
    # SA and CVS score only the aspects found in both answer and GT: every GT aspect must have been paired
    paired = {"skill_assessment": "aspect_acc", "cvs_assessment": "component_acc"}.get(task)
    if paired:
        truth = (item["struc_info"][0].get("skill_scores") or item["struc_info"][0].get("cvs_scores") or {}) \
            if item.get("struc_info") else {}
        got = next(iter(metric.details.get(paired, {}).values()), {})
        missing = sorted(set(truth) - set(got))
        if missing:
            return f"{task}: self score leaves {missing} unpaired (names the parser does not read back)"
    return None
