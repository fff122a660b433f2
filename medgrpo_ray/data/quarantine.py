"""Records that failed once (bad video, malformed, too long for the engine) and are never sampled again.

The driver adds a record the first time its group fails; the sampler then skips it. The set is part of the
checkpoint (exact resume: a resumed run skips the same records) and is listed in the run directory as
`quarantine.jsonl`, one line per record: uid, source file and index, step, kind and reason. Records rejected
when the split was read (malformed fields) are listed too, with step 0 and no training index.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from medgrpo_ray.io.atomic import atomic_write_text


@dataclass
class QuarantineEntry:
    uid: str
    source: str
    index: int | None  # the record's position in its source file
    reason: str  # the full message (names the record and the field, file or setting at fault)
    kind: str  # record | decode | too_long | over_batch_budget | engine | learner | load
    step: int  # training step of the failure (0: rejected at load)
    train_index: int | None = None  # position in the run's training records (None: never loaded)


class Quarantine:
    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path else None
        self.entries: list[QuarantineEntry] = []
        self._by_index: dict[int, QuarantineEntry] = {}

    def __contains__(self, train_index: int) -> bool:
        return train_index in self._by_index

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def indices(self) -> set[int]:
        """Training-record indices in quarantine (what the sampler skips)."""
        return set(self._by_index)

    def add(self, entry: QuarantineEntry) -> bool:
        """Add an entry; False (and nothing changes) if its training record is already in quarantine."""
        if entry.train_index is not None:
            if entry.train_index in self._by_index:
                return False
            self._by_index[entry.train_index] = entry
        self.entries.append(entry)
        return True

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.entries:
            out[e.kind] = out.get(e.kind, 0) + 1
        return out

    def state_dict(self) -> list[dict]:
        return [asdict(e) for e in self.entries]

    def load_state_dict(self, state: list[dict]) -> None:
        self.entries, self._by_index = [], {}
        for d in state:
            self.add(QuarantineEntry(**d))

    def write(self) -> None:
        """Rewrite `quarantine.jsonl` atomically (it always equals the in-memory set, also after a resume)."""
        if self.path is None:
            return
        atomic_write_text(self.path, "".join(json.dumps(asdict(e), ensure_ascii=False) + "\n" for e in self.entries))
