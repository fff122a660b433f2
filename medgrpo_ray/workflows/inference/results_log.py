"""The inference run's results log, `predictions.jsonl`: its durable progress and the state a restart resumes from.

One line per answered input position (`result_row`: a prediction, or the error and reason that stand for it).
Each finished chunk is appended, flushed and fsynced (`ResultsLog.write`), so a SIGKILL loses at most the chunks
in flight. A restart reads the file back (`read_results`); a last line torn by the kill is left out and cut off
the file (`repair_results`), so its record is redone and the next append starts on a fresh line.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

PREDICTIONS = "predictions.jsonl"


def result_row(position: int, uid: str | None, prediction: str = "", error: str | None = None,
               reason: str = "") -> dict:
    """One line of predictions.jsonl: a prediction, or the error (and reason) that stands for it."""
    return {"position": position, "uid": uid, "prediction": prediction or "", "error": error, "reason": reason}


@dataclass
class ResumeState:
    """What a predictions file holds, read back for a restart."""

    rows: dict[int, dict] = field(default_factory=dict)  # position -> row (first occurrence kept)
    valid_bytes: int = 0  # length of the file up to the end of its last complete line
    torn: bool = False  # the file ended in an incomplete line (killed mid-write)
    invalid_lines: int = 0  # complete lines that were not a row (should never happen; skipped)
    duplicates: int = 0  # positions seen more than once (kept the first; should never happen)


def read_results(path: str | os.PathLike) -> ResumeState:
    """What a predictions file holds. The last line counts only if it ends with a newline and parses: a line
    torn by a kill is left out (`torn`, `valid_bytes` = where it starts) and its record is redone."""
    state = ResumeState()
    p = Path(path)
    if not p.exists():
        return state
    data = p.read_bytes()
    end = data.rfind(b"\n") + 1  # everything after the last newline is an incomplete line
    state.torn = end < len(data)
    state.valid_bytes = end
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            position = row["position"]
            if not isinstance(row, dict) or not isinstance(position, int) or isinstance(position, bool):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            state.invalid_lines += 1
            continue
        if position in state.rows:
            state.duplicates += 1
            continue
        state.rows[position] = row
    return state


def repair_results(path: str | os.PathLike) -> ResumeState:
    """`read_results`, then cut a torn last line off the file so that appended lines start on a fresh line."""
    state = read_results(path)
    if state.torn:
        with open(path, "r+b") as f:
            f.truncate(state.valid_bytes)
            f.flush()
            os.fsync(f.fileno())
    return state


class ResultsLog:
    """Append-only predictions.jsonl: `write(rows)` appends the rows of one chunk, flushes and fsyncs."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.f = open(self.path, "a", encoding="utf-8")

    def write(self, rows: Iterable[dict]) -> None:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        if text:
            self.f.write(text)
            self.f.flush()
            os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()
