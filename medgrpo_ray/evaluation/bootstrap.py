"""Bootstrap intervals and paired comparisons over the records behind a leaderboard number.

Every leaderboard metric is a function of sums of small per-record statistics (hits and pairs per CVS component,
IoU and a count per TAL record, aspect scores and an ok flag per judged caption, ...): a `Sample` holds one row of
statistics per record and the metric's `aggregate`, which maps the column sums of each stratum to the value, the
way the metric module itself computes it (each module builds its Sample next to its value; a test checks that the
two agree). A resample draws, within each stratum, as many records as the stratum has, with replacement
(multinomial counts), so one matrix product gives every resample's sums. Strata: the datasets where the metric is a
mean of per-dataset values (cvs_acc, sa_acc, dvc_f1: the dataset mix is fixed by the test set, not sampled),
otherwise all of the task's records pooled.

Pure numpy; seeded per metric name, so a number's interval does not depend on which other numbers were computed.
docs/evaluation.md says what the intervals cover and what they do not.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

# stratum -> (B, K) column sums, stratum -> records in it  ->  (B,) values (NaN where the metric is undefined)
Aggregate = Callable[[Mapping[str, np.ndarray], Mapping[str, int]], np.ndarray]
POOLED = ""


@dataclass(frozen=True)
class Sample:
    """The per-record statistics behind one metric value.

    ids: record ids (one per row); datasets: each row's dataset; stats: (rows, K) additive statistics;
    aggregate: the metric from per-stratum column sums; by_dataset: strata are the datasets (else pooled).
    """

    ids: tuple[str, ...]
    datasets: tuple[str, ...]
    stats: np.ndarray
    aggregate: Aggregate
    by_dataset: bool = False

    def __post_init__(self) -> None:
        if self.stats.ndim != 2 or self.stats.shape[0] != len(self.ids) or len(self.ids) != len(self.datasets):
            raise ValueError(f"Sample: {len(self.ids)} ids, {len(self.datasets)} datasets, stats {self.stats.shape}")

    @property
    def n(self) -> int:
        return len(self.ids)

    def strata(self) -> dict[str, np.ndarray]:
        """stratum -> row indices."""
        keys = self.datasets if self.by_dataset else (POOLED,) * self.n
        out: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            out.setdefault(k, []).append(i)
        return {k: np.asarray(v, dtype=np.int64) for k, v in sorted(out.items())}

    def value(self) -> float:
        """The metric on all rows (equals the metric module's value)."""
        rows = self.strata()
        sums = {k: self.stats[idx].sum(axis=0, keepdims=True) for k, idx in rows.items()}
        return float(self.aggregate(sums, {k: len(idx) for k, idx in rows.items()})[0])

    def restrict(self, dataset: str) -> Sample:
        """The rows of one dataset: the same aggregate then gives the metric's per-dataset value."""
        keep = [i for i, d in enumerate(self.datasets) if d == dataset]
        return Sample(tuple(self.ids[i] for i in keep), tuple(self.datasets[i] for i in keep),
                      self.stats[keep], self.aggregate, self.by_dataset)

    def select(self, ids: Sequence[str]) -> Sample:
        """The rows of `ids`, in that order (each id once in this sample)."""
        index = {rid: i for i, rid in enumerate(self.ids)}
        keep = [index[rid] for rid in ids]
        return Sample(tuple(ids), tuple(self.datasets[i] for i in keep), self.stats[keep], self.aggregate,
                      self.by_dataset)


@dataclass(frozen=True)
class Interval:
    """A metric value with its bootstrap interval; `undefined`: resamples where the metric had no value."""

    mean: float
    low: float
    high: float
    n: int
    level: float
    resamples: int
    undefined: int = 0

    def to_json(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n, "level": self.level,
                "resamples": self.resamples, "undefined_resamples": self.undefined}

    def cell(self) -> str:
        """`0.333 [0.12, 0.55] n=15`, the form the Markdown tables use."""
        return f"{self.mean:.3f} [{self.low:.2f}, {self.high:.2f}] n={self.n}"


@dataclass(frozen=True)
class PairedDiff:
    """B - A over the records both have: the difference, its paired-bootstrap interval, and the share of resamples
    in which B is better (higher) than A."""

    a: float
    b: float
    delta: float
    low: float
    high: float
    b_better: float
    n: int
    level: float
    resamples: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_json(self) -> dict:
        return {"a": self.a, "b": self.b, "delta": self.delta, "low": self.low, "high": self.high,
                "b_better": self.b_better, "n": self.n, "excludes_zero": self.excludes_zero, "level": self.level,
                "resamples": self.resamples}


def rng_for(name: str, seed: int) -> np.random.Generator:
    """The generator of one metric's resamples: fixed by (seed, metric name)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def draw_counts(strata: Mapping[str, int], resamples: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """stratum -> (resamples, size) counts: how often each of its records is drawn in each resample."""
    return {k: rng.multinomial(n, np.full(n, 1.0 / n), size=resamples) for k, n in strata.items()}


def resampled_values(sample: Sample, counts: Mapping[str, np.ndarray]) -> np.ndarray:
    """(B,) metric values of the resamples given by `counts` (from draw_counts over sample.strata())."""
    rows = sample.strata()
    sums = {k: counts[k].astype(np.float64) @ sample.stats[idx] for k, idx in rows.items()}
    return np.asarray(sample.aggregate(sums, {k: len(idx) for k, idx in rows.items()}), dtype=np.float64)


def _bounds(values: np.ndarray, level: float) -> tuple[float, float, int]:
    ok = values[~np.isnan(values)]
    if not len(ok):
        return float("nan"), float("nan"), len(values)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(ok, [tail, 100.0 - tail])
    return float(low), float(high), len(values) - len(ok)


def interval(sample: Sample, name: str, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of one metric, resampling records within the sample's strata."""
    if sample.n == 0:
        raise ValueError(f"{name}: no records to resample")
    counts = draw_counts({k: len(v) for k, v in sample.strata().items()}, resamples, rng_for(name, seed))
    low, high, undefined = _bounds(resampled_values(sample, counts), level)
    return Interval(sample.value(), low, high, sample.n, level, resamples, undefined)


def common_ids(samples: Sequence[Sample]) -> list[str]:
    """Record ids present in every sample, in the first sample's order."""
    shared = set(samples[0].ids).intersection(*(s.ids for s in samples[1:]))
    return [rid for rid in samples[0].ids if rid in shared]


def paired(a: Sequence[Sample], b: Sequence[Sample], name: str, resamples: int = 1000, level: float = 0.95,
           seed: int = 0) -> PairedDiff:
    """Paired bootstrap of B - A on the records every sample has. Each side is one sample or several (seeds of
    one arm: the side's value is the mean over them); every resample draws the same records for all of them, so
    the interval covers the choice of test records, not the spread between seeds."""
    everything = [*a, *b]
    ids = common_ids(everything)
    if not ids:
        raise ValueError(f"{name}: the two sides share no records")
    aligned = [s.select(ids) for s in everything]
    first = aligned[0]
    for s in aligned[1:]:
        if s.datasets != first.datasets:
            raise ValueError(f"{name}: the same record ids belong to different datasets on the two sides; "
                             "compare results of the same records")
    counts = draw_counts({k: len(v) for k, v in first.strata().items()}, resamples, rng_for(name, seed))
    side_a = np.mean([resampled_values(s, counts) for s in aligned[:len(a)]], axis=0)
    side_b = np.mean([resampled_values(s, counts) for s in aligned[len(a):]], axis=0)
    va = float(np.mean([s.value() for s in aligned[:len(a)]]))
    vb = float(np.mean([s.value() for s in aligned[len(a):]]))
    diff = side_b - side_a
    low, high, _ = _bounds(diff, level)
    defined = diff[~np.isnan(diff)]
    better = float(np.mean(defined > 0)) if len(defined) else float("nan")
    return PairedDiff(va, vb, vb - va, low, high, better, len(ids), level, resamples)


# ---- aggregates shared by the metric modules ---------------------------------------------------------------------
def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def pooled_ratio(sums: Mapping[str, np.ndarray], sizes: Mapping[str, int]) -> np.ndarray:
    """Columns [count, total] over all strata: total / count (NaN when nothing was counted)."""
    s = sum(sums.values())
    return _safe_div(s[:, 1], s[:, 0])


def balanced_accuracy(s: np.ndarray) -> np.ndarray:
    """Columns [pairs_1..C, hits_1..C]: the mean over components with at least one pair of hits / pairs (0 if
    no component has a pair) — CVS's component- and SA's aspect-balanced accuracy."""
    c = s.shape[1] // 2
    pairs, hits = s[:, :c], s[:, c:]
    has = pairs > 0
    acc = np.where(has, hits / np.where(has, pairs, 1.0), 0.0)
    k = has.sum(axis=1)
    return np.where(k > 0, acc.sum(axis=1) / np.maximum(k, 1), 0.0)


def mean_over_strata(per_stratum: Callable[[np.ndarray, int], np.ndarray]) -> Aggregate:
    """An aggregate that averages a per-stratum value over the strata where it is defined (NaN where none is)."""
    def aggregate(sums: Mapping[str, np.ndarray], sizes: Mapping[str, int]) -> np.ndarray:
        values = np.stack([per_stratum(sums[k], sizes[k]) for k in sorted(sums)], axis=1)
        defined = ~np.isnan(values)
        with np.errstate(invalid="ignore"):
            return np.where(defined.any(axis=1),
                            np.where(defined, values, 0.0).sum(axis=1) / np.maximum(defined.sum(axis=1), 1),
                            np.nan)
    return aggregate


def nonzero_mean(values: np.ndarray) -> np.ndarray:
    """Row-wise mean of the non-zero entries (0 where all are zero): the judge's aspect and threshold pooling."""
    nz = values != 0
    return np.where(nz.any(axis=1), np.where(nz, values, 0.0).sum(axis=1) / np.maximum(nz.sum(axis=1), 1), 0.0)
