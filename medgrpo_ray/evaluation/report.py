"""Render an EvalReport as a Markdown table (overall row, then one row per dataset)."""
from __future__ import annotations

from medgrpo_ray.evaluation.types import METRICS, EvalReport

NOT_COMPUTED_CELL = "n/c"


def _cell(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:.3f}"


def to_markdown(report: EvalReport) -> str:
    """Markdown: the leaderboard row (3 dp, "n/c" = not computed), per-dataset rows, then notes."""
    lines = ["| scope | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    lines.append("| overall | " + " | ".join(_cell(report.metrics[m].value, NOT_COMPUTED_CELL) for m in METRICS) + " |")
    for dataset in report.datasets():
        cells = []
        for m in METRICS:
            per = report.metrics[m].per_dataset
            cells.append(_cell(per.get(dataset), NOT_COMPUTED_CELL if dataset in per else ""))
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    notes = [f"- {m}: {report.metrics[m].note}" for m in METRICS if report.metrics[m].note]
    notes += [f"- {n}" for n in report.notes]
    counts = ", ".join(f"{m} {report.metrics[m].counted}/{report.metrics[m].total}" for m in METRICS)
    lines += ["", f"Records: {report.n_records}. Counted/total per metric: {counts}."]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"
