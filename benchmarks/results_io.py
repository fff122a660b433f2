"""Where the benchmarks' JSON results go: one writer, so every result file has the same form."""
from __future__ import annotations

import json
from pathlib import Path

from medgrpo_ray.io.atomic import atomic_write_json


def write_results(out: str | Path, payload: dict, echo: dict | None = None) -> Path:
    """Write `payload` as indented JSON to `out` atomically (parents created) and print `echo` (default: the payload)."""
    out = atomic_write_json(out, payload, indent=1)
    print(json.dumps(payload if echo is None else echo, indent=1))
    return out
