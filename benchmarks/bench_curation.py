"""Throughput of the curation stage's template half on this machine: converted sources -> records that passed the
self-score gate, per second, and where the time goes (conversion, building, self-check, assembly).

    python benchmarks/bench_curation.py [--videos 12] [--records-per-video 3] [--out benchmarks/results/curation.json]

Exports the synthetic scenes in the four native formats (curation/synthetic_export.py; not timed), then times each
step in one process on the same units. The caption half (two providers, in-flight bounds) is not built yet, so its
units-per-second rows are absent (docs/curation.md, status).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from results_io import write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=12, help="synthetic videos per native format")
    ap.add_argument("--records-per-video", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/curation.json"))
    a = ap.parse_args()
    from medgrpo_ray.config.curation import load_curation_config
    from medgrpo_ray.curation.assemble import assemble
    from medgrpo_ray.workflows.curation import build_unit, convert_sources, synthetic_sources, units

    cfg = load_curation_config(None, [f"records_per_video={a.records_per_video}", "standard_total=0"])
    with tempfile.TemporaryDirectory() as tmp:
        sources = synthetic_sources(Path(tmp) / "native", cfg.seed, a.videos)
        t0 = time.perf_counter()
        videos, _ = convert_sources(sources)
        t1 = time.perf_counter()
        entries = [build_unit(v, task, k, cfg) for v, task, k in units(videos, cfg)]
        t2 = time.perf_counter()
        records = [e["record"] for e in entries if "record" in e]
        result = assemble(records, seed=0, target_total=0)
        t3 = time.perf_counter()
    n_units, n_records = len(entries), len(records)
    res = {"benchmark": "curation_templates", "cpu_count": os.cpu_count(), "videos": len(videos),
           "units": n_units, "records_passed": n_records, "records_kept": len(result["large"]) + len(result["val"]),
           "seconds": {"convert": round(t1 - t0, 3), "build_and_selfcheck": round(t2 - t1, 3),
                       "assemble": round(t3 - t2, 3)},
           "units_per_s": round(n_units / (t2 - t1), 1), "records_per_s_end_to_end": round(n_records / (t3 - t0), 1),
           "notes": ["one process; the synthetic export is not timed; units a source cannot answer (e.g. STG on "
                     "NurViD) count as units and are rejected in microseconds",
                     "caption units per second (providers at 8/32/128 in flight) not measured: the caption "
                     "providers are not built yet"]}
    write_results(a.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
