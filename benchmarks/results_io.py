"""Where the benchmarks' JSON results go: one writer, so every result file has the same form."""
from __future__ import annotations

import json
from pathlib import Path


def write_results(out: str | Path, payload: dict, echo: dict | None = None) -> Path:
    """Write `payload` as indented JSON to `out` (parents created) and print `echo` (default: the payload)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1) + "\n")
    print(json.dumps(payload if echo is None else echo, indent=1))
    return out
