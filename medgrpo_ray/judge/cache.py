"""Persistent judge cache: one sqlite file in a cache directory, shared safely by threads and processes.

Keyed by a hash of (model, prompt version, task, prediction, reference), so repeated evaluations and restarts
cost no calls, and a prompt or model change never reuses stale scores. Only successful scores are stored
(failures are retried next time). Rows hold the key hash, model, prompt version, task and scores: no texts,
no credentials.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

from medgrpo_ray.judge.types import ASPECTS
from medgrpo_ray.llm.reply_cache import ReplyCache



def cache_key(model: str, prompt_version: str, task: str, prediction: str, reference: str) -> str:
    """Stable hex digest identifying one judgement."""
    blob = json.dumps([model, prompt_version, task, prediction, reference], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
    """Scores by cache key in `<cache_dir>/judge_cache.sqlite3` (llm/reply_cache.py: WAL mode; a local disk, not
    NFS). Scores are stored as JSON; rows of an incompatible aspect set are ignored on read."""

    FILENAME = "judge_cache.sqlite3"

    def __init__(self, cache_dir: str | Path):
        self._store = ReplyCache(cache_dir, self.FILENAME, "judge_scores", "task", "scores", "judge.cache_dir")
        self.path = self._store.path

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, int]]:
        """Cached scores for those of `keys` that are present."""
        found: dict[str, dict[str, int]] = {}
        for key, scores in self._store.get_many(keys).items():
            parsed = json.loads(scores)
            if set(parsed) == set(ASPECTS):  # ignore rows from an incompatible aspect set
                found[key] = {a: int(parsed[a]) for a in ASPECTS}
        return found

    def put(self, key: str, scores: dict[str, int], *, model: str, prompt_version: str, task: str) -> None:
        """Store one successful judgement (last writer wins; all writers agree up to judge noise)."""
        self._store.put(key, json.dumps(scores), model=model, prompt_version=prompt_version, tag=task)

    def __len__(self) -> int:
        return len(self._store)

    def close(self) -> None:
        self._store.close()
