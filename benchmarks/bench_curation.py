"""Throughput of the curation stage on this machine: the template half (converted sources -> records that passed the
self-score gate, per second, and where the time goes) and the caption half (caption units decided per second
against a local caption server that answers after 100 ms, at 8 / 32 / 128 requests in flight).

    python benchmarks/bench_curation.py [--videos 12] [--records-per-video 3] [--latency 0.1]
                                        [--in-flight 8 32 128] [--out benchmarks/results/curation.json]

Exports the synthetic scenes in the four native formats (curation/synthetic_export.py; not timed), then times each
template step in one process on the same units. Captions: tests/caption_server.py runs as a subprocess (its replies
name every required fact, so both captions agree: one request per provider per unit); both providers point at it;
curation/caption_run.run_units (the run's own loop, reply cache in a fresh directory per level: no hits) captions
distinct units with captions.max_in_flight = N and each provider's max_in_flight = N. The bound: N requests in flight
/ latency = N / 0.1 requests per second, half that in units (two requests per unit).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from results_io import write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=12, help="synthetic videos per native format")
    ap.add_argument("--records-per-video", type=int, default=3)
    ap.add_argument("--latency", type=float, default=0.1, help="caption server reply latency in seconds")
    ap.add_argument("--in-flight", type=int, nargs="+", default=[8, 32, 128], help="caption requests in flight")
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
        captions = bench_captions(videos, cfg, a.latency, a.in_flight, Path(tmp))
    n_units, n_records = len(entries), len(records)
    res = {"benchmark": "curation_templates", "cpu_count": os.cpu_count(), "videos": len(videos),
           "units": n_units, "records_passed": n_records, "records_kept": len(result["large"]) + len(result["val"]),
           "seconds": {"convert": round(t1 - t0, 3), "build_and_selfcheck": round(t2 - t1, 3),
                       "assemble": round(t3 - t2, 3)},
           "units_per_s": round(n_units / (t2 - t1), 1), "records_per_s_end_to_end": round(n_records / (t3 - t0), 1),
           "captions": captions,
           "notes": ["one process; the synthetic export is not timed; units a source cannot answer (e.g. STG on "
                     "NurViD) count as units and are rejected in microseconds",
                     "captions: caption_run.run_units against tests/caption_server.py (a subprocess on 127.0.0.1, "
                     f"{a.latency * 1000:.0f} ms per reply), both providers on it, two requests per unit; bound_rps = "
                     "in_flight / latency, bound_units_per_s = half that; the client (three event loops: the run's "
                     "and one per provider) and the server share this machine's cores",
                     "captions: units_per_s x client_cpu_ms_per_unit / 1000 near 1 means the client process (one "
                     "GIL: the openai/httpx request path, the sqlite reply cache, the rule's checks) is the limit, not "
                     "the bound; server_max_in_flight below in_flight says the same"]}
    write_results(a.out, res)
    return 0


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "caption_server.py"), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"tests/caption_server.py did not start (said {line!r})")
    return proc, f"http://127.0.0.1:{line.split()[1]}"


def server_stats(url: str, reset: bool = False) -> dict:
    if reset:
        req = urllib.request.Request(f"{url}/admin/control", data=json.dumps({"requests": 0, "ok": 0,
                                     "max_in_flight": 0}).encode(), headers={"content-type": "application/json"})
    else:
        req = urllib.request.Request(f"{url}/admin/stats")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def bench_captions(videos, cfg, latency: float, levels: list[int], tmp: Path) -> dict:
    """Caption units per second at each bound on requests in flight, against the bound."""
    from collections import Counter

    from medgrpo_ray.config.curation import ProviderConfig
    from medgrpo_ray.curation.caption_run import LexicalEmbedder, run_units
    from medgrpo_ray.curation.caption_units import CAPTION_TASKS, build_unit as build_caption
    from medgrpo_ray.curation.providers import CaptionProvider
    from medgrpo_ray.curation.tasks import Unanswerable
    from medgrpo_ray.workflows.curation import task_settings

    need = max(100, 15 * max(levels)) + 8
    pool, k, built = {}, 0, 0
    t0 = time.perf_counter()
    while len(pool) < need and k < 200:
        for v in videos:
            for task in CAPTION_TASKS:
                try:
                    unit = build_caption(task, v, task_settings(cfg), k)
                except Unanswerable:
                    continue
                built += 1
                pool.setdefault(unit.input_text(), unit)  # distinct prompts only: no reply-cache hit inside a level
        k += 1
    build_s = time.perf_counter() - t0
    pool = list(pool.values())
    proc, url = start_server(latency)
    rows = []
    try:
        for n in levels:
            units = pool[: max(100, 15 * n)]
            mk = lambda name: CaptionProvider(ProviderConfig(  # noqa: E731
                name=name, base_url=f"{url}/v1", model=f"bench-{name}", api_key_env="", requests_per_minute=0.0,
                max_in_flight=n, timeout_s=30.0, max_retries=0, cache_dir=str(tmp / f"cache{n}" / name)))
            with mk("gpt") as pa, mk("gemini") as pb:
                run_units(pool[-8:], pa, pb, LexicalEmbedder(), max_in_flight=n)  # warm the connections (other units)
                warm = pa.stats().calls + pb.stats().calls
                server_stats(url, reset=True)
                start, cpu = time.perf_counter(), time.process_time()
                outcomes = run_units(units, pa, pb, LexicalEmbedder(), max_in_flight=n)
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
                requests = pa.stats().calls + pb.stats().calls - warm
            seen = server_stats(url)
            ups, rps = len(units) / elapsed, requests / elapsed
            rows.append({"in_flight": n, "units": len(units), "requests": requests,
                         "decisions": dict(Counter(o.decision.kind for o in outcomes)),
                         "elapsed_s": round(elapsed, 3), "units_per_s": round(ups, 1),
                         "bound_units_per_s": round(n / latency / 2, 1), "requests_per_s": round(rps, 1),
                         "bound_requests_per_s": round(n / latency, 1), "efficiency": round(rps / (n / latency), 3),
                         "server_max_in_flight": seen["max_in_flight"],
                         "client_cpu_ms_per_unit": round(1000 * cpu / len(units), 2)})
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {"latency_s": latency, "unit_build_ms_each": round(1000 * build_s / built, 3), "levels": rows}


if __name__ == "__main__":
    raise SystemExit(main())
