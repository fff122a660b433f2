"""Judge throughput against the local test server (100 ms per reply) -> benchmarks/results/judge.json.

Measures JudgeClient (async, one shared loop) at max_in_flight 1, 8, 32, 128 against the concurrency bound
concurrency / latency, and a plain pool of 10 threads making synchronous openai calls, as the leaderboard's
judge scripts do (bound 10 / latency). Every request is a distinct pair (no cache, no dedup), one attempt.

Run: python benchmarks/bench_judge.py [--latency 0.1] [--out benchmarks/results/judge.json]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from medgrpo_ray.config.schema import JudgeConfig
from medgrpo_ray.judge.client import build_judge
from medgrpo_ray.judge.prompt import build_prompt, parse_reply
from medgrpo_ray.io.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "MEDGRPO_BENCH_JUDGE_KEY"
REF = "The grasper retracts the gallbladder fundus while the hook dissects the cystic duct."


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "judge_server.py"), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"the test judge server did not start (said {line!r})")
    return proc, f"http://127.0.0.1:{line.split()[1]}/v1"


def pairs(n: int, tag: str) -> list[tuple[str, str]]:
    return [(f"The grasper retracts the gallbladder, sample {tag}-{i}.", REF) for i in range(n)]


def bench_client(base_url: str, concurrency: int, latency: float) -> dict:
    cfg = JudgeConfig(base_url=base_url, model="bench-judge", api_key_env=KEY_ENV, timeout_s=30.0, max_attempts=1,
                      max_in_flight=concurrency, requests_per_minute=0.0, cache_dir=None)  # no pacing, no cache: the in-flight bound alone
    with build_judge(cfg) as client:
        client.score_pairs(pairs(min(concurrency, 8), f"warm{concurrency}"), "video_summary")
        n = max(20, 8 * concurrency)
        start, cpu = time.perf_counter(), time.process_time()
        results = client.score_pairs(pairs(n, f"c{concurrency}"), "video_summary")
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    throughput = n / elapsed
    bound = concurrency / latency
    return {"mode": "JudgeClient (async)", "concurrency": concurrency, "requests": n, "ok": sum(r.ok for r in results),
            "elapsed_s": round(elapsed, 3), "throughput_rps": round(throughput, 1), "bound_rps": round(bound, 1),
            "efficiency": round(throughput / bound, 3), "client_cpu_ms_per_request": round(1000 * cpu / n, 2)}


def bench_thread_pool(base_url: str, latency: float, threads: int = 10) -> dict:
    client = openai.OpenAI(base_url=base_url, api_key=os.environ[KEY_ENV], timeout=30.0, max_retries=0)

    def one(pair: tuple[str, str]) -> bool:
        prompt = build_prompt(pair[0], pair[1], "video_summary")
        reply = client.chat.completions.create(model="bench-judge", messages=prompt.messages, temperature=0.0, max_tokens=200)
        return bool(parse_reply(reply.choices[0].message.content, prompt.nonce))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, pairs(threads, "warm-pool")))
        n = 20 * threads
        start, cpu = time.perf_counter(), time.process_time()
        ok = sum(pool.map(one, pairs(n, "pool")))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    client.close()
    throughput = n / elapsed
    bound = threads / latency
    return {"mode": f"thread pool of {threads} sync openai calls (leaderboard style)", "concurrency": threads, "requests": n,
            "ok": ok, "elapsed_s": round(elapsed, 3), "throughput_rps": round(throughput, 1), "bound_rps": round(bound, 1),
            "efficiency": round(throughput / bound, 3), "client_cpu_ms_per_request": round(1000 * cpu / n, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "judge.json")
    args = parser.parse_args(argv)
    os.environ.setdefault(KEY_ENV, "bench-key-not-a-secret")  # the local server accepts any key
    proc, base_url = start_server(args.latency)
    try:
        rows = [bench_client(base_url, c, args.latency) for c in (1, 8, 32, 128)]
        rows.append(bench_thread_pool(base_url, args.latency))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    for row in rows:
        print(f"{row['mode']:<58} c={row['concurrency']:<4} {row['throughput_rps']:>7.1f} req/s "
              f"(bound {row['bound_rps']:>6.1f}, {100 * row['efficiency']:.0f} %), client CPU {row['client_cpu_ms_per_request']} ms/req")
    result = {
        "benchmark": "judge throughput against tests/judge_server.py",
        "latency_s": args.latency,
        "rows": rows,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "openai": openai.__version__,
                    "note": "client and server share this machine's cores"},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_json(args.out, result, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
