"""A record sampler balanced over strata (e.g. (dataset, task)) with exact, compact resume.

The sampler produces one endless stream of record indices; `next_batch(n)` takes the next n. Each draw takes
the next stratum of a *cycle* (every stratum once, in a seeded shuffled order that is re-shuffled each cycle),
then the next record of that stratum's seeded permutation (re-permuted when exhausted: one epoch per stratum).
So over any number of draws every stratum's count is within 1 of draws / num_strata, whatever the strata
sizes: small strata repeat more often (an epoch of a small stratum is short), large ones are subsampled.

Every permutation is a pure function of (seed, stratum, epoch) or (seed, cycle), so the state is a few
counters: `state_dict()` is small, JSON-serialisable and restores the stream exactly. Strata are numbered in
order of first appearance in `strata` (never by hash, which varies between processes for strings).

`exclude(indices)` takes records out of the stream (quarantined records): a draw that lands on an excluded
record takes the next record of the same stratum, and a stratum whose records are all excluded is skipped in
the cycle. The excluded set is part of the state, so a resumed sampler skips the same records.
"""
from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np

STATE_VERSION = 1
_STRATUM_STREAM, _CYCLE_STREAM = 0, 1  # separate seed streams for record permutations and cycle orders


class BalancedSampler:
    """Balanced round-robin over strata; `strata[i]` is the stratum key of record i.

    Example: strata = ["a", "a", "a", "b"], seed 0. Every cycle of 2 draws yields one record of "a" (0, 1 or 2,
    each once per 3 cycles, in a seeded order) and record 3; so next_batch(4) holds two of {0, 1, 2} and 3 twice.
    A record can appear twice in one batch when its stratum is smaller than the batch's share of it.
    """

    def __init__(self, strata: Sequence[Hashable], seed: int) -> None:
        if len(strata) == 0:
            raise ValueError("strata is empty: the sampler needs at least one record")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        index: dict[Hashable, int] = {}
        members: list[list[int]] = []
        for i, key in enumerate(strata):
            s = index.setdefault(key, len(index))
            if s == len(members):
                members.append([])
            members[s].append(i)
        self.seed = int(seed)
        self.keys: list[Hashable] = list(index)  # stratum keys, in order of first appearance
        self._members = [np.asarray(m, dtype=np.int64) for m in members]
        self.batches_drawn = 0
        self._cycle = 0  # index of the current cycle
        self._cycle_pos = 0  # draws taken from the current cycle
        self._epochs = [0] * len(members)  # per stratum: completed passes over its records
        self._cursors = [0] * len(members)  # per stratum: records taken in the current epoch
        self._perm_cache: dict[int, tuple[int, np.ndarray]] = {}
        self._order_cache: tuple[int, np.ndarray] | None = None
        self._stratum_of = np.empty(len(strata), dtype=np.int64)
        for s, m in enumerate(members):
            self._stratum_of[m] = s
        self._excluded: set[int] = set()
        self._excluded_per_stratum = [0] * len(members)

    def exclude(self, indices) -> None:
        """Never draw these record indices again (ValueError for an index out of range)."""
        for i in indices:
            i = int(i)
            if not 0 <= i < len(self._stratum_of):
                raise ValueError(f"exclude: record index {i} out of range (0..{len(self._stratum_of) - 1})")
            if i not in self._excluded:
                self._excluded.add(i)
                self._excluded_per_stratum[int(self._stratum_of[i])] += 1

    @property
    def excluded(self) -> set[int]:
        return set(self._excluded)

    @property
    def num_strata(self) -> int:
        return len(self._members)

    def stratum_sizes(self) -> list[int]:
        """Records per stratum, in `keys` order."""
        return [len(m) for m in self._members]

    def _cycle_order(self, cycle: int) -> np.ndarray:
        if self._order_cache is None or self._order_cache[0] != cycle:
            rng = np.random.default_rng([self.seed, _CYCLE_STREAM, cycle])
            self._order_cache = (cycle, rng.permutation(self.num_strata))
        return self._order_cache[1]

    def _permutation(self, stratum: int, epoch: int) -> np.ndarray:
        cached = self._perm_cache.get(stratum)
        if cached is None or cached[0] != epoch:
            rng = np.random.default_rng([self.seed, _STRATUM_STREAM, stratum, epoch])
            cached = (epoch, self._members[stratum][rng.permutation(len(self._members[stratum]))])
            self._perm_cache[stratum] = cached
        return cached[1]

    def _draw(self) -> int:
        if len(self._excluded) == len(self._stratum_of):
            raise RuntimeError("every training record is excluded (quarantined): nothing left to sample; see "
                               "quarantine.jsonl in the run directory")
        while True:
            if self._cycle_pos == self.num_strata:
                self._cycle += 1
                self._cycle_pos = 0
            s = int(self._cycle_order(self._cycle)[self._cycle_pos])
            self._cycle_pos += 1
            if self._excluded_per_stratum[s] == len(self._members[s]):
                continue  # every record of this stratum is excluded
            while True:
                record = int(self._permutation(s, self._epochs[s])[self._cursors[s]])
                self._cursors[s] += 1
                if self._cursors[s] == len(self._members[s]):
                    self._epochs[s] += 1
                    self._cursors[s] = 0
                if record not in self._excluded:
                    return record

    def next_batch(self, n: int) -> list[int]:
        """The next n record indices of the stream (n >= 1); counts one batch."""
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        batch = [self._draw() for _ in range(int(n))]
        self.batches_drawn += 1
        return batch

    def state_dict(self) -> dict:
        """JSON-serialisable counters that determine the rest of the stream (plus sizes, to check on load)."""
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "stratum_sizes": self.stratum_sizes(),
            "batches_drawn": self.batches_drawn,
            "cycle": self._cycle,
            "cycle_pos": self._cycle_pos,
            "epochs": list(self._epochs),
            "cursors": list(self._cursors),
            "excluded": sorted(self._excluded),
        }

    def load_state_dict(self, d: dict) -> None:
        """Continue exactly where the saved sampler stopped; ValueError if the state belongs to other data/seed."""
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"sampler state version {d.get('version')!r}; expected {STATE_VERSION}")
        if d.get("seed") != self.seed:
            raise ValueError(f"sampler state seed {d.get('seed')!r} differs from this sampler's seed {self.seed}")
        if list(d.get("stratum_sizes", [])) != self.stratum_sizes():
            raise ValueError(
                f"sampler state stratum_sizes {d.get('stratum_sizes')!r} differ from the records' "
                f"{self.stratum_sizes()}: the training records or their (dataset, task) keys changed since the save"
            )
        epochs, cursors = [int(x) for x in d["epochs"]], [int(x) for x in d["cursors"]]
        cycle, cycle_pos = int(d["cycle"]), int(d["cycle_pos"])
        if not 0 <= cycle_pos <= self.num_strata or cycle < 0:
            raise ValueError(f"sampler state cycle/cycle_pos out of range: {cycle}/{cycle_pos}")
        if len(epochs) != self.num_strata or len(cursors) != self.num_strata:
            raise ValueError(f"sampler state epochs/cursors must have {self.num_strata} entries (one per stratum)")
        if any(not 0 <= c < n for c, n in zip(cursors, self.stratum_sizes())) or min(epochs) < 0:
            raise ValueError(f"sampler state cursors {cursors} / epochs {epochs} out of range")
        self.batches_drawn = int(d["batches_drawn"])
        self._cycle, self._cycle_pos = cycle, cycle_pos
        self._epochs, self._cursors = epochs, cursors
        self._excluded, self._excluded_per_stratum = set(), [0] * self.num_strata
        self.exclude(d.get("excluded", []))
        self._perm_cache.clear()
        self._order_cache = None
