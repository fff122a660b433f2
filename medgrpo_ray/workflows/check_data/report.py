"""The data check's report: one `Problem` per bad record, totals and counts by reason, a printed summary and the
JSON file `launch/check_data.py` writes (`--report`), written atomically."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medgrpo_ray.io.atomic import atomic_write_json


@dataclass
class Problem:
    """One bad record: where it is, why (`reason`, the key counted in `by_reason`) and the field or file at fault."""

    source: str
    index: int | None
    reason: str  # "field:metadata.fps", "decode:missing file", "decode:timeout", ...
    message: str
    uid: str | None = None  # known when the record itself is valid (decode problems)
    video_id: str | None = None
    field: str | None = None  # the record field at fault (field problems)
    file: str | None = None  # the video or frame file at fault (decode problems), resolved against video_root

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class CheckReport:
    """What a check found, filled record by record in file order (`add`)."""

    source: str = ""
    video_root: str = ""
    budget: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 0.0
    workers: int = 0
    records: int = 0
    ok: int = 0
    bad: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    elapsed_s: float = 0.0
    clean_out: str | None = None
    clean_records: int | None = None

    def add(self, problem: Problem | None) -> None:
        """Count one record: good (None) or bad."""
        self.records += 1
        if problem is None:
            self.ok += 1
            return
        self.bad += 1
        self.by_reason[problem.reason] = self.by_reason.get(problem.reason, 0) + 1
        self.problems.append(problem)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "video_root": self.video_root, "budget": self.budget, "timeout_s": self.timeout_s,
            "workers": self.workers,
            "totals": {"records": self.records, "ok": self.ok, "bad": self.bad},
            "by_reason": dict(sorted(self.by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
            "problems": [p.to_json() for p in self.problems],
            "elapsed_s": round(self.elapsed_s, 3),
            "clean_out": self.clean_out, "clean_records": self.clean_records,
        }

    def summary(self, max_lines: int = 10) -> str:
        """Totals, counts by reason (most frequent first) and the first `max_lines` problems, for the terminal."""
        rate = self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0
        lines = [f"{self.source}: {self.records} records, {self.ok} ok, {self.bad} bad "
                 f"({self.elapsed_s:.1f} s, {rate:.1f} records/s)"]
        lines += [f"  {reason}: {n}" for reason, n in self.to_json()["by_reason"].items()]
        for p in self.problems[:max_lines]:
            lines.append(f"  - {p.source}#{p.index} [{p.reason}] {p.field or p.file or ''}: {p.message}")
        if len(self.problems) > max_lines:
            lines.append(f"  ... {len(self.problems) - max_lines} more in the report")
        return "\n".join(lines)


def write_report(report: CheckReport, path: str | os.PathLike) -> Path:
    """Write `report` as JSON (indent 1, UTF-8) to `path` atomically: a reader never sees a partial report."""
    return atomic_write_json(path, report.to_json(), indent=1, ensure_ascii=False)
