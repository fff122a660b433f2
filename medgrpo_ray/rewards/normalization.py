"""Cross-dataset logistic reward normalization (MedGRPO): r = 1 / (1 + exp(-k * (x - p50) / IQR)).

Per (dataset, task), p50 and IQR = p75 - p25 come from a baseline's raw rewards (a statistics file written by
launch/norm_stats.py). The median maps to 0.5, the map is strictly increasing, bounded in (0, 1) and has a
non-zero derivative everywhere; a zero IQR is replaced by `iqr_floor`.

A (dataset, task) without statistics follows `missing_policy`:
- "online": the first `warmup_count` raw rewards pass through unchanged (raw rewards are already in [0, 1])
  while they are collected; then p50/IQR are computed from them and frozen, and later rewards are normalized.
- "raw": raw rewards pass through unchanged, always.
- "error": KeyError naming the pair and the fix.
`state_dict()` / `load_state_dict()` carry the statistics and unfinished warm-up buffers through checkpoints.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from medgrpo_ray.medvidbench.tasks import canonical_dataset, canonical_task
from medgrpo_ray.io.atomic import atomic_write_json

MISSING_POLICIES = ("online", "raw", "error")
STATS_VERSION = 1

Key = tuple[str, str]  # (canonical dataset, canonical task)


@dataclass(frozen=True)
class NormStats:
    """Statistics of one (dataset, task): median, interquartile range, count, and where they came from."""

    p50: float
    iqr: float
    n: int
    source: str = "file"  # "file" or "online"


def logistic(x: float, p50: float, iqr: float, k: float) -> float:
    """1 / (1 + exp(-k (x - p50) / iqr)), computed without overflow."""
    z = k * (x - p50) / iqr
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def compute_stats(rows: Iterable[tuple[str, str, float]], source: str = "file") -> dict[Key, NormStats]:
    """(dataset, task, raw reward) rows -> per-(dataset, task) p50 and IQR (numpy linear percentiles)."""
    groups: dict[Key, list[float]] = {}
    for dataset, task, raw in rows:
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(f"raw reward for ({dataset}, {task}) is {raw!r}; expected a finite number")
        groups.setdefault((canonical_dataset(dataset), canonical_task(task)), []).append(value)
    out = {}
    for key, values in sorted(groups.items()):
        p25, p50, p75 = np.percentile(np.asarray(values, dtype=np.float64), [25, 50, 75])
        out[key] = NormStats(float(p50), float(p75 - p25), len(values), source)
    return out


def stats_to_json(stats: Mapping[Key, NormStats]) -> dict:
    """{"version": 1, "stats": {dataset: {task: {p50, iqr, n, source}}}} (JSON-serialisable)."""
    nested: dict[str, dict[str, dict]] = {}
    for (dataset, task), s in sorted(stats.items()):
        nested.setdefault(dataset, {})[task] = asdict(s)
    return {"version": STATS_VERSION, "stats": nested}


def stats_from_json(data: Mapping) -> dict[Key, NormStats]:
    """Inverse of stats_to_json; ValueError naming the entry that is malformed."""
    if data.get("version") != STATS_VERSION:
        raise ValueError(f"normalization statistics version {data.get('version')!r}; expected {STATS_VERSION} (recompute with launch/norm_stats.py)")
    out = {}
    for dataset, tasks in (data.get("stats") or {}).items():
        for task, s in tasks.items():
            try:
                out[(canonical_dataset(dataset), canonical_task(task))] = NormStats(
                    float(s["p50"]), float(s["iqr"]), int(s["n"]), str(s.get("source", "file"))
                )
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"normalization statistics entry {dataset}/{task} is malformed ({err}); expected p50, iqr, n") from None
    return out


def load_stats(path: str | Path) -> dict[Key, NormStats]:
    with open(path, encoding="utf-8") as f:
        return stats_from_json(json.load(f))


def save_stats(stats: Mapping[Key, NormStats], path: str | Path) -> None:
    """Write the statistics file every later GRPO run reads, atomically: a kill mid-write leaves the old file."""
    atomic_write_json(path, stats_to_json(stats), indent=2)


class RewardNormalizer:
    """Maps raw rewards to normalized rewards per (dataset, task); see the module docstring for the policy."""

    def __init__(
        self,
        stats: Mapping[Key, NormStats] | None = None,
        *,
        k: float = 1.0,
        iqr_floor: float = 0.05,
        warmup_count: int = 64,
        missing_policy: str = "online",
    ) -> None:
        if not k > 0:
            raise ValueError(f"normalization k must be > 0, got {k}")
        if not iqr_floor > 0:
            raise ValueError(f"normalization iqr_floor must be > 0 (it replaces a zero IQR), got {iqr_floor}")
        if warmup_count < 1:
            raise ValueError(f"normalization warmup_count must be >= 1, got {warmup_count}")
        if missing_policy not in MISSING_POLICIES:
            raise ValueError(f"normalization missing_policy {missing_policy!r}; expected one of {MISSING_POLICIES}")
        self.k, self.iqr_floor, self.warmup_count, self.missing_policy = float(k), float(iqr_floor), int(warmup_count), missing_policy
        self.stats: dict[Key, NormStats] = {(canonical_dataset(d), canonical_task(t)): s for (d, t), s in (stats or {}).items()}
        self.warmup: dict[Key, list[float]] = {}

    def normalize(self, dataset: str, task: str, raw: float) -> float:
        """The normalized reward of one raw reward (in (0, 1); raw passthrough during warm-up / policy "raw")."""
        x = float(raw)
        if not math.isfinite(x):
            raise ValueError(f"raw reward for ({dataset}, {task}) is {raw!r}; expected a finite number")
        key = (canonical_dataset(dataset), canonical_task(task))
        s = self.stats.get(key)
        if s is None:
            if self.missing_policy == "error":
                raise KeyError(f"no normalization statistics for {key}; add them to the statistics file (launch/norm_stats.py) or set missing_policy to 'online' or 'raw'")
            if self.missing_policy == "raw":
                return x
            buffer = self.warmup.setdefault(key, [])
            buffer.append(x)
            if len(buffer) >= self.warmup_count:
                self.stats[key] = compute_stats([(key[0], key[1], v) for v in buffer], source="online")[key]
                del self.warmup[key]
            return x
        return logistic(x, s.p50, max(s.iqr, self.iqr_floor), self.k)

    __call__ = normalize

    def normalize_many(self, rows: Iterable[tuple[str, str, float]]) -> list[float]:
        """normalize() over (dataset, task, raw) rows, in order."""
        return [self.normalize(d, t, x) for d, t, x in rows]

    def state_dict(self) -> dict:
        """JSON-serialisable state: settings, statistics (file and frozen online ones) and warm-up buffers."""
        return {
            "settings": {"k": self.k, "iqr_floor": self.iqr_floor, "warmup_count": self.warmup_count, "missing_policy": self.missing_policy},
            **stats_to_json(self.stats),
            "warmup": [[d, t, list(v)] for (d, t), v in sorted(self.warmup.items())],
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore statistics and warm-up buffers; settings must equal this normalizer's (the config's)."""
        saved = dict(state.get("settings") or {})
        mine = self.state_dict()["settings"]
        if saved != mine:
            raise ValueError(f"checkpoint normalization settings {saved} differ from the configured {mine}; use the run's settings or start a new run")
        self.stats = stats_from_json(state)
        self.warmup = {(canonical_dataset(d), canonical_task(t)): [float(x) for x in v] for d, t, v in state.get("warmup") or []}
