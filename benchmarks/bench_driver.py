"""The GRPO driver's own cost per step as the work grows: prompts per step (64 .. 16,384, G = 8) and rollout /
reward pool sizes (8 .. 1,000 workers). Writes benchmarks/results/driver.json with the growth exponents fitted.

What runs is the real driver: `Trainer.train_one_step` and its `WorkerPool`s (real `ray.wait` / `ray.get` on a
local Ray cluster), the real sampler, normalizer, advantages, sharding and metrics, plus the loop's per-step
logging (metrics.jsonl and rollouts.jsonl) and its GC settings (train_loop.tune_driver_gc). Only the actors are stand-ins: in-process objects whose `.remote()`
serializes its arguments as Ray would (driver cost, counted) and returns a `ray.put` of a ready-made result
(the worker's cost, timed apart and subtracted): G completions of 32 tokens per prompt, a reward per
completion, a learner summary. A second part starts up to 32 real, idle Ray actors and measures one `map` over
them, to show what the in-process stand-ins leave out. Timings are per step, the first step excluded.

    .venv/bin/python benchmarks/bench_driver.py [--prompts 64 256 1024 4096 16384] [--workers 8 64 1000]
"""
from __future__ import annotations

import argparse
import math
import os
import pickle
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from results_io import write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIMES: dict[str, float] = defaultdict(float)  # component -> seconds in the current step
G, TOKENS = 8, 32


@contextmanager
def timed(key: str):
    """Add the block's time to TIMES[key], less the stand-ins' own work inside it."""
    t0, inner0 = time.perf_counter(), TIMES["_standin"]
    try:
        yield
    finally:
        elapsed = time.perf_counter() - t0
        TIMES[key] += elapsed if key == "_standin" else elapsed - (TIMES["_standin"] - inner0)


def wrap(owner, name: str, key: str) -> None:
    """Time every call of owner.name under `key` (the driver imports these at call time)."""
    fn = getattr(owner, name)

    def timed_fn(*a, **kw):
        with timed(key):
            return fn(*a, **kw)

    setattr(owner, name, timed_fn)


class _Method:
    def __init__(self, make):
        self.make = make

    def remote(self, *args):
        import ray

        with timed("driver:serialize_args"):  # Ray pickles the arguments of every actor call on the driver
            pickle.dumps(args, protocol=5)
        with timed("_standin"):  # the worker's own work: not the driver's
            return ray.put(self.make(*args))

    def options(self, **_):
        return self


class StandIn:
    """An in-process stand-in for a rollout, reward or learner actor."""

    def rollout(self, items):
        from medgrpo_ray.rollout.types import Completion, RolloutGroup

        return [RolloutGroup(group_id=it.group_id, prompt_token_ids=list(range(200)), visual_tokens=64,
                             completions=[Completion(list(range(j, j + TOKENS)), [-0.5] * TOKENS, f"answer {j}")
                                          for j in range(G)], worker="standin") for it in items]

    def score(self, jobs):
        from medgrpo_ray.rewards.types import RewardResult

        return [(sid, RewardResult(((hash(sid) % 1000) / 1000.0), "ok", {})) for _, _, sid in jobs]

    def train_step(self, shard):
        return {"tokens": float(sum(len(s.completion_ids) for mb in shard.micro_batches for s in mb)), "loss": 0.1, "pg_loss": 0.1,
                "kl": 0.0, "clip_frac": 0.0, "ratio_mean": 1.0, "ratio_max": 1.0, "grad_norm": 1.0, "lr": 1e-6,
                "rollout_logprob_gap_sum": 0.0, "rollout_logprob_gap_max": 0.0, "reference_s": 0.0}



class _Handle:
    """What the driver holds for an actor: its methods, each with `.remote()`."""

    def __init__(self):
        s = StandIn()
        self.rollout, self.score, self.train_step = _Method(s.rollout), _Method(s.score), _Method(s.train_step)


class NoSync:
    def ensure(self):
        return 0

    def sync(self):
        return {}


def make_trainer(cfg, records, workers: int, run_dir: Path):
    from medgrpo_ray.driver.cluster import WorkerPool
    from medgrpo_ray.rewards.normalization import RewardNormalizer
    from medgrpo_ray.data.quarantine import Quarantine
    from medgrpo_ray.data.sampler import BalancedSampler
    from medgrpo_ray.driver.rollout_ahead import RolloutAhead
    from medgrpo_ray.driver.trainer import Trainer

    t = Trainer.__new__(Trainer)  # the driver without its cluster: the actors are stand-ins
    t.cfg, t.run_dir, t.records = cfg, run_dir, records
    t.normalizer = RewardNormalizer({}, warmup_count=64)
    t.sampler = BalancedSampler([(r.dataset, r.task) for r in records], seed=0)
    wrap(t.sampler, "next_batch", "sampling")
    t.quarantine = Quarantine(run_dir / "quarantine.jsonl")
    t.failed_steps_in_row, t.step, t.last_rollouts = 0, 0, []
    t.ahead = RolloutAhead()
    t.rollout = WorkerPool(lambda i: _Handle(), workers, "rollout", 600)
    t.rewards = WorkerPool(lambda i: _Handle(), workers, "reward", 600)
    t.learners = [_Handle() for _ in range(8)]
    t.references = t.judges = None
    t.syncer = NoSync()
    return t


def instrument() -> None:
    import medgrpo_ray.driver.cluster as cluster
    import medgrpo_ray.grpo.batch as batch
    import medgrpo_ray.tracking.metrics as metrics
    import medgrpo_ray.grpo.step_data as step_data

    wrap(cluster, "split", "splitting")
    wrap(cluster.WorkerPool, "map", "pool_map (dispatch, ray.wait/get, dedup)")
    wrap(step_data, "collect_samples", "reward bookkeeping + normalization")
    wrap(step_data, "select_trained", "advantages")
    wrap(step_data, "signal_metrics", "metrics")
    wrap(metrics, "reward_metrics", "metrics")
    wrap(batch, "shard_samples", "sharding")


def one_config(cfg, records, prompts: int, workers: int, steps: int, tmp: Path) -> dict:
    import dataclasses

    from medgrpo_ray.tracking.metrics import MetricsLogger
    from medgrpo_ray.driver.train_loop import tune_driver_gc

    cfg = dataclasses.replace(cfg, algorithm=dataclasses.replace(cfg.algorithm, prompts_per_step=prompts))
    run = tmp / f"p{prompts}-w{workers}"
    run.mkdir(parents=True)
    t = make_trainer(cfg, records, workers, run)
    tune_driver_gc()  # as launch/train.py's loop does after setup
    logger = MetricsLogger(run, tensorboard=False)
    per_step = []
    for k in range(steps + 1):
        TIMES.clear()
        t0 = time.perf_counter()
        m = t.train_one_step()
        with timed("logging (metrics.jsonl, rollouts.jsonl)"):
            logger.log(t.step, m)
            logger.log_rollouts(t.step, t.last_rollouts)
        wall = time.perf_counter() - t0
        if k:
            parts = {key: v for key, v in TIMES.items() if key != "_standin"}
            per_step.append({"driver_s": wall - TIMES["_standin"], "parts": parts})
    n = len(per_step)
    parts = defaultdict(float)
    for p in per_step:
        for key, v in p["parts"].items():
            parts[key] += v / n
    out = {"prompts": prompts, "samples": prompts * G, "workers": workers,
           "driver_s": sum(p["driver_s"] for p in per_step) / n,
           "parts_s": {k: round(v, 5) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])}}
    print(f"prompts {prompts:6d} workers {workers:5d}: driver {out['driver_s']:.3f} s/step", flush=True)
    return out


def fit_exponent(xs, ys) -> float:
    """Least-squares slope of log y over log x."""
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def real_actor_map(counts, chunk_items: int = 16) -> list[dict]:
    """One `WorkerPool.map` over N real, idle Ray actors (echo), each given one chunk."""
    import ray

    from medgrpo_ray.driver.cluster import WorkerPool

    @ray.remote(num_cpus=0)
    class Echo:
        def score(self, jobs):
            return [(sid, None) for _, _, sid in jobs]

    out = []
    for n in counts:
        pool = WorkerPool(lambda i: Echo.remote(), n, "echo", 300)
        ray.get([w.score.remote([]) for w in pool.workers])  # started
        jobs = [({}, "", f"{i}") for i in range(n * chunk_items)]
        from medgrpo_ray.driver.cluster import split

        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            res = pool.map("score", split(jobs, n), key=lambda p: p[0])
            times.append(time.perf_counter() - t0)
            assert len(res) == len(jobs)
        out.append({"actors": n, "map_s": round(min(times), 4), "per_call_ms": round(1000 * min(times) / n, 3)})
        print(f"real idle actors {n}: map {min(times):.3f} s", flush=True)
        for w in pool.workers:
            ray.kill(w)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", nargs="+", type=int, default=[64, 256, 1024, 4096, 16384])
    ap.add_argument("--workers", nargs="+", type=int, default=[8, 64, 1000])
    ap.add_argument("--steps", type=int, default=2, help="steps averaged per configuration (after one warm-up)")
    ap.add_argument("--real-actors", nargs="+", type=int, default=[2, 8, 32])
    ap.add_argument("--step-s", type=float, default=100.0, help="the realistic step time the overhead is compared to "
                    "(docs/decisions.md, driver at scale: a lower bound for 16,384 prompts x 8 on a 7B video VLM)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/driver.json"))
    a = ap.parse_args()
    import ray

    from medgrpo_ray.config import load_config
    from medgrpo_ray.data.records_io import load_records
    from medgrpo_ray.data.synthetic import generate

    instrument()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "syn", seed=0, n_train=64, n_test=0)  # every source and task: all the strata
        records = load_records(tmp / "syn" / "train.json")[0]
        cfg = load_config(None, ["algorithm.group_size=8", "normalization.enabled=true", "learner.num_ranks=8",
                                 "rollout.max_failed_steps=0"])
        results = [one_config(cfg, records, p, w, a.steps, tmp) for w in a.workers for p in a.prompts]
        real = real_actor_map(a.real_actors)
    ray.shutdown()
    exps = {}
    for w in a.workers:
        rows = [r for r in results if r["workers"] == w]
        exps[f"over_prompts_at_{w}_workers"] = round(fit_exponent([r["prompts"] for r in rows],
                                                                  [r["driver_s"] for r in rows]), 3)
    for p in a.prompts:
        rows = [r for r in results if r["prompts"] == p]
        if len(rows) > 1:
            exps[f"over_workers_at_{p}_prompts"] = round(fit_exponent([r["workers"] for r in rows],
                                                                      [r["driver_s"] for r in rows]), 3)
    big = max(results, key=lambda r: (r["prompts"], r["workers"]))
    payload = {"benchmark": "driver_overhead", "cpu_count": os.cpu_count(), "group_size": G,
               "completion_tokens": TOKENS, "results": results, "growth_exponents": exps,
               "largest": {"prompts": big["prompts"], "workers": big["workers"], "driver_s": round(big["driver_s"], 3),
                           "assumed_step_s": a.step_s, "fraction_of_step": round(big["driver_s"] / a.step_s, 4),
                           "fraction_of_a_60_s_step": round(big["driver_s"] / 60.0, 4)},
               "real_idle_actors": real,
               "notes": ["driver_s: the step's wall time minus the stand-ins' own work (result building, ray.put)",
                         "parts are exclusive of the stand-ins' work but overlap where one timed function calls "
                         "another (serialize_args inside pool_map)",
                         f"assumed_step_s: {a.step_s:.0f} s, see docs/decisions.md (driver at scale)",
                         "in-process stand-ins return every result at once, so the driver's deserialization of a "
                         "step's results is all on the critical path here; with real workers finishing at different "
                         "times most of it overlaps the wait for the slowest one"]}
    write_results(a.out, payload, echo={"growth_exponents": exps, "largest": payload["largest"], "real_idle_actors": real})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
