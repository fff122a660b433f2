"""A persistent cache of LLM results: one sqlite file in a cache directory, shared safely by threads and processes.

Rows are (key, model, prompt version, a tag, the stored text, created): the key is the caller's digest of
everything that determines the answer, so a model or prompt change never reuses a stale row. Callers store only
successful results and never credentials. The judge (judge/cache.py: scores) and the caption providers
(curation/providers.py: reply texts) each keep their own table in their own file.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Sequence

_CHUNK = 500  # keys per SELECT (well under sqlite's bound-parameter limit)


class ReplyCache:
    """Text by key in `<cache_dir>/<filename>`, table `table` with columns (key, model, prompt_version, `tag`,
    `value`, created); WAL mode: use a local disk, not NFS. `setting` names the config field in errors."""

    def __init__(self, cache_dir: str | Path, filename: str, table: str, tag: str, value: str, setting: str):
        self.path = Path(cache_dir).expanduser() / filename
        self._table, self._value = table, value
        schema = (f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
                  f"prompt_version TEXT NOT NULL, {tag} TEXT NOT NULL, {value} TEXT NOT NULL, created REAL NOT NULL)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(schema)
        except (OSError, sqlite3.Error) as exc:
            raise RuntimeError(f"{setting}: cannot open the cache {self.path} ({exc}); point {setting} at a writable "
                               "local directory or set it to null") from exc
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """Stored text for those of `keys` that are present."""
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(unique), _CHUNK):
                chunk = unique[i:i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                found.update(dict(self._conn.execute(
                    f"SELECT key, {self._value} FROM {self._table} WHERE key IN ({marks})", chunk)))
        return found

    def put(self, key: str, value: str, *, model: str, prompt_version: str, tag: str) -> None:
        """Store one result (last writer wins)."""
        row = (key, model, prompt_version, tag, value, time.time())
        with self._lock:
            self._conn.execute(f"INSERT OR REPLACE INTO {self._table} VALUES (?, ?, ?, ?, ?, ?)", row)

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM {self._table}").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
