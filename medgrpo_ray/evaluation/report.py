"""Render an EvalReport as a Markdown table (overall row, then one row per dataset)."""
from __future__ import annotations

from medgrpo_ray.evaluation.types import METRICS, EvalReport

NOT_COMPUTED_CELL = "n/c"


def _cell(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:.3f}"


def interval_table(report: EvalReport) -> list[str]:
    """One row per metric: `0.333 [0.12, 0.55] n=15` (value, bootstrap interval, records it rests on)."""
    level = next(iter(report.intervals.values())).level if report.intervals else 0.95
    lines = [f"| metric | value [{level:.0%} interval] n |", "|---|---|"]
    for m in METRICS:
        ci = report.intervals.get(m)
        value = report.metrics[m].value
        lines.append(f"| {m} | {ci.cell() if ci else _cell(value, NOT_COMPUTED_CELL)} |")
    return lines


def to_markdown(report: EvalReport) -> str:
    """Markdown: the leaderboard row (3 dp, "n/c" = not computed), per-dataset rows, then notes; with
    intervals (evaluator.with_intervals), first a table of each number with its interval and n."""
    lines = (interval_table(report) + [""]) if report.intervals else []
    lines += ["| scope | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
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
