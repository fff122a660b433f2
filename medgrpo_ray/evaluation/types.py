"""Result types of the leaderboard-exact evaluator."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol

import numpy as np

from medgrpo_ray.evaluation.bootstrap import Interval, Sample

# The leaderboard row, in the leaderboard's order (app.py::METRICS).
METRICS: tuple[str, ...] = (
    "cvs_acc",
    "nap_acc",
    "sa_acc",
    "stg_miou",
    "tag_miou_03",
    "tag_miou_05",
    "dvc_f1",
    "dvc_llm",
    "vs_llm",
    "rc_llm",
)
NOT_COMPUTED = "not computed"

Item = tuple[str, Mapping]  # (record id, record)


class Embedder(Protocol):
    """A sentence embedder (e.g. all-MiniLM-L6-v2) for the NAP nearest-class fallback."""

    def encode(self, texts: list[str]) -> np.ndarray:
        """(N, D) embeddings, one row per text."""
        ...


@dataclass(frozen=True)
class Metric:
    """One leaderboard number with its per-dataset breakdown.

    value None means not computed (`note` says why, e.g. no judge configured, no records) - never 0.
    counted: records that entered the number; total: records of the task. `sample`: the per-record statistics
    behind the value (bootstrap.Sample), for intervals and paired comparisons; not serialized.
    """

    name: str
    value: float | None
    per_dataset: dict[str, float | None] = field(default_factory=dict)
    counted: int = 0
    total: int = 0
    note: str = ""
    details: dict = field(default_factory=dict)
    sample: Sample | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict:
        return {
            "value": self.value,
            "per_dataset": self.per_dataset,
            "counted": self.counted,
            "total": self.total,
            "note": self.note,
            "details": self.details,
        }


def not_computed(name: str, reason: str, total: int = 0) -> Metric:
    return Metric(name, None, {}, 0, total, f"{NOT_COMPUTED}: {reason}")


@dataclass(frozen=True)
class EvalReport:
    """The ten leaderboard numbers (`metrics`, keyed by METRICS) and notes about what could not be reproduced."""

    metrics: dict[str, Metric]
    notes: tuple[str, ...] = ()
    n_records: int = 0
    intervals: dict[str, Interval] = field(default_factory=dict)  # metric -> bootstrap interval (with_intervals)

    def row(self, digits: int | None = None) -> dict[str, float | None]:
        """name -> value; rounded to `digits` (the leaderboard stores 3) when given."""
        return {
            m: (None if self.metrics[m].value is None else (round(self.metrics[m].value, digits) if digits is not None else self.metrics[m].value))
            for m in METRICS
        }

    def datasets(self) -> list[str]:
        return sorted({d for m in self.metrics.values() for d in m.per_dataset})

    def to_json(self) -> dict:
        metrics = {m: self.metrics[m].to_json() for m in METRICS}
        for m, ci in self.intervals.items():
            metrics[m]["ci"] = ci.to_json()
        return {
            "leaderboard_row": self.row(3),
            "not_computed": [m for m in METRICS if self.metrics[m].value is None],
            "metrics": metrics,
            "notes": list(self.notes),
            "n_records": self.n_records,
        }
