"""The leaderboard-exact evaluator: records in the published merged format -> the ten leaderboard numbers."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from medgrpo_ray.evaluation.bootstrap import interval
from medgrpo_ray.evaluation.captions import evaluate_dvc_llm, evaluate_summary_like
from medgrpo_ray.evaluation.cvs import evaluate_cvs
from medgrpo_ray.evaluation.dvc import evaluate_dvc
from medgrpo_ray.evaluation.nap import evaluate_nap
from medgrpo_ray.medvidbench.nap_classes import NURVID_PROCEDURES
from medgrpo_ray.evaluation.sa import evaluate_sa
from medgrpo_ray.evaluation.stg import evaluate_stg
from medgrpo_ray.evaluation.tal import evaluate_tal
from medgrpo_ray.evaluation.types import EvalReport, Embedder, Item
from medgrpo_ray.rewards.fields import as_mapping, record_dataset, record_task

if TYPE_CHECKING:  # keep the evaluator importable without the judge's client libraries
    from medgrpo_ray.judge.types import CaptionJudge


def as_items(records: Mapping[str, Any] | Sequence[Any]) -> list[Item]:
    """(record id, record) pairs in original order from a merged dict keyed "0".."N-1" or a list."""
    if isinstance(records, Mapping):
        try:
            keys = sorted(records, key=int)
        except (TypeError, ValueError):
            raise ValueError("merged results must be keyed by record index strings \"0\"..\"N-1\"") from None
        return [(str(k), as_mapping(records[k])) for k in keys]
    return [(str(i), as_mapping(r)) for i, r in enumerate(records)]


def evaluate(
    records: Mapping[str, Any] | Sequence[Any],
    *,
    judge: CaptionJudge | None = None,
    embedder: Embedder | None = None,
    nurvid_table: Mapping[str, tuple[str, ...]] | None = None,
) -> EvalReport:
    """Compute cvs_acc, nap_acc, sa_acc, stg_miou, tag_miou_03/05, dvc_f1, dvc_llm, vs_llm, rc_llm with
    per-dataset breakdowns, as the MedVidBench leaderboard does (docs/evaluation.md).

    Each record needs qa_type, answer (model output), gnd, struc_info, metadata.fps and data_source. Caption
    columns are None ("not computed") without `judge`; NAP answers that are not an exact class are counted
    wrong without `embedder` (the report says how many). `nurvid_table` overrides the NurViD procedure table.
    """
    items = as_items(records)
    by_task: dict[str, list[Item]] = defaultdict(list)
    for rid, rec in items:
        by_task[record_task(rec, rid)].append((rid, rec))
    tag03, tag05 = evaluate_tal(by_task["tal"])
    metrics = {
        "cvs_acc": evaluate_cvs(by_task["cvs_assessment"]),
        "nap_acc": evaluate_nap(by_task["next_action"], embedder, nurvid_table),
        "sa_acc": evaluate_sa(by_task["skill_assessment"]),
        "stg_miou": evaluate_stg(by_task["stg"]),
        "tag_miou_03": tag03,
        "tag_miou_05": tag05,
        "dvc_f1": evaluate_dvc(by_task["dense_captioning"]),
        "dvc_llm": evaluate_dvc_llm(by_task["dense_captioning"], judge),
        "vs_llm": evaluate_summary_like(by_task["video_summary"], judge, "video_summary", "vs_llm"),
        "rc_llm": evaluate_summary_like(by_task["region_caption"], judge, "region_caption", "rc_llm"),
    }
    notes = []
    nurvid_nap = any(record_dataset(rec) == "NurViD" for _, rec in by_task["next_action"])
    if nurvid_nap and not (NURVID_PROCEDURES if nurvid_table is None else nurvid_table):
        notes.append("nap_acc: the NurViD procedure table is empty; NurViD classes = the NurViD GT labels present")
    unknown = sum(record_dataset(rec) == "Unknown" for _, rec in items)
    if unknown:
        notes.append(f"{unknown} records have no data_source and matched no dataset heuristic (grouped as Unknown)")
    return EvalReport(metrics, tuple(notes), len(items))


def with_intervals(report: EvalReport, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> EvalReport:
    """The report with a bootstrap interval for every computed number (evaluation/bootstrap.py; seeded,
    deterministic): resampling records within each task the way the metric averages them."""
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"bootstrap settings: resamples={resamples} must be >= 1 and level={level} in (0, 1)")
    intervals = {name: interval(m.sample, name, resamples, level, seed)
                 for name, m in report.metrics.items() if m.value is not None and m.sample is not None and m.sample.n}
    return replace(report, intervals=intervals)
