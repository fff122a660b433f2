"""Paired comparison of two evaluations of the same records (e.g. SFT vs GRPO, or two ablation arms).

Per leaderboard number, and per dataset, B - A with a paired-bootstrap interval (bootstrap.paired: every resample
draws the same records on both sides) and the share of resamples in which B is better. Records are matched by
their key in the merged results ("0".."N-1", the input position); a key whose record differs between the files
(question, task, reference answer or dataset) is an error: those are not the same records. Keys present in one
file only are reported and left out of the paired numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from medgrpo_ray.evaluation.bootstrap import PairedDiff, paired
from medgrpo_ray.evaluation.evaluator import evaluate, with_intervals
from medgrpo_ray.evaluation.types import METRICS, EvalReport, Item

IDENTITY_FIELDS = ("qa_type", "question", "gnd", "data_source")


@dataclass(frozen=True)
class DiffRow:
    metric: str
    dataset: str | None  # None: the leaderboard number itself
    diff: PairedDiff

    def to_json(self) -> dict:
        return {"metric": self.metric, "dataset": self.dataset, **self.diff.to_json()}


@dataclass
class Comparison:
    rows: list[DiffRow]
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    not_compared: dict[str, str] = field(default_factory=dict)  # metric -> why there is no row

    def overall(self) -> dict[str, DiffRow]:
        return {r.metric: r for r in self.rows if r.dataset is None}

    def to_json(self) -> dict:
        return {"rows": [r.to_json() for r in self.rows], "only_in_a": self.only_a, "only_in_b": self.only_b,
                "not_compared": self.not_compared}


def record_keys(a: Sequence[Item], b: Sequence[Item]) -> tuple[list[str], list[str]]:
    """(keys only in A, keys only in B); raises ValueError when a shared key holds a different record."""
    ra, rb = dict(a), dict(b)
    differ = [k for k in ra if k in rb and any(ra[k].get(f) != rb[k].get(f) for f in IDENTITY_FIELDS)]
    if differ:
        raise ValueError(f"{len(differ)} record keys hold different records in the two files (first: {differ[:5]}; "
                         f"compared fields {IDENTITY_FIELDS}): compare results of the same records file")
    return [k for k in ra if k not in rb], [k for k in rb if k not in ra]


def _sides(reports: Sequence[EvalReport], metric: str):
    samples = [r.metrics[metric].sample for r in reports]
    if any(r.metrics[metric].value is None for r in reports) or any(s is None or not s.n for s in samples):
        return None
    return samples


def compare_reports(a: EvalReport | Sequence[EvalReport], b: EvalReport | Sequence[EvalReport],
                    resamples: int = 1000, level: float = 0.95, seed: int = 0, per_dataset: bool = True,
                    only_a: Sequence[str] = (), only_b: Sequence[str] = ()) -> Comparison:
    """B - A per metric (and per dataset) on the records both sides have. A side given as several reports (the
    seeds of one arm) is their mean; the interval then covers the choice of records, not seed-to-seed spread."""
    side_a = [a] if isinstance(a, EvalReport) else list(a)
    side_b = [b] if isinstance(b, EvalReport) else list(b)
    rows, skipped = [], {}
    for m in METRICS:
        sa, sb = _sides(side_a, m), _sides(side_b, m)
        if sa is None or sb is None:
            skipped[m] = "not computed on both sides"
            continue
        try:
            rows.append(DiffRow(m, None, paired(sa, sb, m, resamples, level, seed)))
        except ValueError as err:
            skipped[m] = str(err)
            continue
        if not per_dataset:
            continue
        datasets = sorted(set.intersection(*(set(s.datasets) for s in [*sa, *sb])))
        for d in datasets:
            da, db = [s.restrict(d) for s in sa], [s.restrict(d) for s in sb]
            diff = paired(da, db, f"{m}/{d}", resamples, level, seed)
            if diff.a == diff.a and diff.b == diff.b:  # NaN: the metric has no value for this dataset
                rows.append(DiffRow(m, d, diff))
    return Comparison(rows, list(only_a), list(only_b), skipped)


def _num(v: float, digits: int = 3) -> str:
    return "n/a" if v != v else f"{v:.{digits}f}"


def diff_cell(d: PairedDiff) -> str:
    """`+0.120 [+0.03, +0.21] *` (a star where the interval excludes 0)."""
    if d.low != d.low:
        return f"{d.delta:+.3f}"
    return f"{d.delta:+.3f} [{d.low:+.2f}, {d.high:+.2f}]" + (" *" if d.excludes_zero else "")


def comparison_markdown(cmp: Comparison, name_a: str = "A", name_b: str = "B",
                        intervals: Mapping[str, Mapping[str, object]] | None = None) -> str:
    """The paired table: per metric A, B, B - A with its interval, P(B better), n; then per-dataset rows.
    `intervals`: optional side -> metric -> Interval, shown next to each side's value."""
    level = cmp.rows[0].diff.level if cmp.rows else 0.95
    cell = lambda side, m, v: (intervals[side][m].cell() if intervals and m in intervals.get(side, {})  # noqa: E731
                               else _num(v))
    lines = [f"| metric | {name_a} | {name_b} | change [{level:.0%} paired interval] | P({name_b} better) | n |",
             "|---|---|---|---|---|---|"]
    for m in METRICS:
        r = cmp.overall().get(m)
        if r is None:  # not computed on at least one side: each side's own number where it has one
            side = lambda name: intervals[name][m].cell() if intervals and m in intervals.get(name, {}) else "n/c"  # noqa: E731
            lines.append(f"| {m} | {side(name_a)} | {side(name_b)} |  |  |  |")
            continue
        d = r.diff
        lines.append(f"| {m} | {cell(name_a, m, d.a)} | {cell(name_b, m, d.b)} | {diff_cell(d)} | "
                     f"{_num(d.b_better, 2)} | {d.n} |")
    per = [r for r in cmp.rows if r.dataset is not None]
    if per:
        lines += ["", f"| dataset | metric | {name_a} | {name_b} | change [{level:.0%} paired interval] | "
                      f"P({name_b} better) | n |", "|---|---|---|---|---|---|---|"]
        for r in sorted(per, key=lambda r: (r.dataset, METRICS.index(r.metric))):
            d = r.diff
            lines.append(f"| {r.dataset} | {r.metric} | {_num(d.a)} | {_num(d.b)} | {diff_cell(d)} | "
                         f"{_num(d.b_better, 2)} | {d.n} |")
    lines += ["", f"`*`: the {level:.0%} paired-bootstrap interval of the change excludes 0 ({cmp.rows[0].diff.resamples if cmp.rows else 0} "
                  "resamples of the test records; docs/evaluation.md says what it covers). n/c: not computed."]
    if cmp.only_a or cmp.only_b:
        lines.append(f"Records in one file only (left out of the paired numbers): {name_a} {len(cmp.only_a)} "
                     f"{cmp.only_a[:10]}, {name_b} {len(cmp.only_b)} {cmp.only_b[:10]}.")
    return "\n".join(lines) + "\n"


def compare_results(items_a: Sequence[Item], items_b: Sequence[Item], names: tuple[str, str] = ("A", "B"),
                    resamples: int = 1000, level: float = 0.95, seed: int = 0, per_dataset: bool = True,
                    **scorers) -> tuple[dict, str]:
    """Evaluate both sides (`scorers`: evaluate()'s judge / embedder / nurvid_table), give each number its
    interval, compare them paired: (JSON payload, Markdown). Raises ValueError when they are not the same records."""
    only_a, only_b = record_keys(items_a, items_b)
    boot = (resamples, level, seed)
    reports = [with_intervals(evaluate(dict(items), **scorers), *boot) for items in (items_a, items_b)]
    cmp = compare_reports(reports[0], reports[1], *boot, per_dataset=per_dataset, only_a=only_a, only_b=only_b)
    intervals = {n: r.intervals for n, r in zip(names, reports)}
    payload = {"names": list(names), **cmp.to_json(),
               "intervals": {n: {m: ci.to_json() for m, ci in iv.items()} for n, iv in intervals.items()},
               "n_records": {n: r.n_records for n, r in zip(names, reports)}}
    return payload, comparison_markdown(cmp, *names, intervals=intervals)
