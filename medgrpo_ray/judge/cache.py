"""Persistent judge cache: one sqlite file in a cache directory, shared safely by threads and processes.

Keyed by a hash of (model, prompt version, task, prediction, reference), so repeated evaluations and restarts
cost no calls, and a prompt or model change never reuses stale scores. Only successful scores are stored
(failures are retried next time). Rows hold the key hash, model, prompt version, task and scores: no texts,
no credentials.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Sequence

from medgrpo_ray.judge.types import ASPECTS

_SCHEMA = """CREATE TABLE IF NOT EXISTS judge_scores (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    task TEXT NOT NULL,
    scores TEXT NOT NULL,
    created REAL NOT NULL
)"""
_CHUNK = 500  # keys per SELECT (well under sqlite's bound-parameter limit)


def cache_key(model: str, prompt_version: str, task: str, prediction: str, reference: str) -> str:
    """Stable hex digest identifying one judgement."""
    blob = json.dumps([model, prompt_version, task, prediction, reference], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
    """Scores by cache key in `<cache_dir>/judge_cache.sqlite3` (WAL mode; use a local disk, not NFS)."""

    FILENAME = "judge_cache.sqlite3"

    def __init__(self, cache_dir: str | Path):
        self.path = Path(cache_dir) / self.FILENAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise RuntimeError(
                f"judge.cache_dir: cannot open the judge cache {self.path} ({exc}); "
                "point judge.cache_dir at a writable local directory or set it to null"
            ) from exc
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, int]]:
        """Cached scores for those of `keys` that are present."""
        found: dict[str, dict[str, int]] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(unique), _CHUNK):
                chunk = unique[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(f"SELECT key, scores FROM judge_scores WHERE key IN ({marks})", chunk)
                for key, scores in rows:
                    parsed = json.loads(scores)
                    if set(parsed) == set(ASPECTS):  # ignore rows from an incompatible aspect set
                        found[key] = {a: int(parsed[a]) for a in ASPECTS}
        return found

    def put(self, key: str, scores: dict[str, int], *, model: str, prompt_version: str, task: str) -> None:
        """Store one successful judgement (last writer wins; all writers agree up to judge noise)."""
        row = (key, model, prompt_version, task, json.dumps(scores), time.time())
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO judge_scores VALUES (?, ?, ?, ?, ?, ?)", row)

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM judge_scores").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
