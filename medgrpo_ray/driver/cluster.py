"""Ray plumbing in one place: connecting, creating the actor groups, and calling a pool with fault handling.

Every wait has a timeout from the config (`ray.*_timeout_s`). Stateless workers (reward, judge, rollout) are
created with restarts; a call that fails because its actor died is re-sent to a live worker, so no prompt is
lost, and results are keyed by id, so none is counted twice. The learner group is coupled by a collective and
fails fast: the job then resumes from its last checkpoint. `WorkerPool.map` runs a known list of chunks;
`stream_chunks` is its streaming counterpart (a lazy chunk iterator, results handed on as they finish,
a record that kills its worker isolated and reported), used by inference over a split.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from typing import Any, Callable, Iterator, Sequence

log = logging.getLogger(__name__)


def actor_env(cfg) -> dict[str, str]:
    """Environment for every actor: vLLM's in-process CPU mode, the user's extra variables (the thread count is
    per actor: actor_options)."""
    env = {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_KVCACHE_SPACE": str(cfg.rollout.kv_cache_space_gib),
        "TOKENIZERS_PARALLELISM": "false",
        "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu" if not cfg.learner.num_gpus_per_rank else "cuda"),
    }
    from medgrpo_ray.tracking.console import engine_env

    env.update(engine_env(cfg.logging.engine_level))
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TORCH_EXTENSIONS_DIR", "HF_HOME"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update({k: str(v) for k, v in cfg.ray.env_vars.items()})
    return env


def init_ray(cfg) -> str:
    """Connect to the configured cluster, to RAY_ADDRESS (set by `ray job submit`), or start a local one."""
    import ray

    if ray.is_initialized():
        return "existing"
    # No job-level runtime_env here: under `ray job submit` the job's own (working_dir, env) must stay in force;
    # each actor gets its environment variables through `actor_options`, which Ray merges with the job's.
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS", "")
    if address:
        ray.init(address=address, namespace=cfg.ray.namespace, log_to_driver=True)
        return address
    ctx = ray.init(num_cpus=cfg.ray.num_cpus, num_gpus=cfg.ray.num_gpus, namespace=cfg.ray.namespace,
                   include_dashboard=False, log_to_driver=True)
    from medgrpo_ray.driver.reaper import start as start_reaper

    start_reaper(ctx.address_info["session_dir"])  # nothing of this cluster outlives this process (reaper.py)
    return "local"


def bundles_by_node(pg) -> list[int]:
    """Bundle indices of a ready placement group ordered by node, so consecutive learner ranks share a node.
    Ray may place bundle i on any node of a PACK group; ranks assigned by bundle index alone can interleave nodes
    (ray-project/ray#51117), which spreads a node's ranks over the collective's ring."""
    import ray

    table = ray.util.placement_group_table(pg)
    nodes = table.get("bundles_to_node_id", {})
    return sorted(range(len(table["bundles"])), key=lambda i: (nodes.get(i, ""), i))


NOSET_CUDA_VISIBLE_DEVICES = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"


def actor_threads(num_cpus, explicit: int | None = None) -> int:
    """Threads of an actor: `explicit` when set (> 0), else its reserved CPUs (at least one)."""
    if explicit:
        return int(explicit)
    return max(1, int(num_cpus or 0))


def actor_options(cfg, name: str, threads: int | None = None, **kw) -> dict:
    """Options shared by every actor of the run: a readable name and the run's environment variables; a GPU actor
    under `ray.noset_cuda_visible_devices` also keeps every GPU visible (it picks its own: config/devices.py)."""
    env = actor_env(cfg)
    # Ray sets OMP_NUM_THREADS=1 in actors (and vLLM's CPU worker ignores torch.set_num_threads): give each actor
    # the threads its reserved CPUs pay for, unless ray.env_vars sets them.
    env.setdefault("OMP_NUM_THREADS", str(actor_threads(kw.get("num_cpus"), threads)))
    if kw.get("num_gpus") and cfg.ray.noset_cuda_visible_devices:
        env[NOSET_CUDA_VISIBLE_DEVICES] = "1"
    return {"name": name, "runtime_env": {"env_vars": env}, **kw}


def wait_ready(refs: Sequence, timeout_s: float, what: str) -> list:
    import ray

    try:
        return ray.get(list(refs), timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise TimeoutError(f"{what} not ready within {timeout_s:.0f} s (ray.init_timeout_s); check the cluster's "
                           f"free CPUs/GPUs against the requested resources") from None


def actor_died(err: BaseException) -> bool:
    """Whether a call failed because its actor died (as opposed to raising in the method itself)."""
    import ray

    return isinstance(err, (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                            ray.exceptions.ActorUnavailableError))


def kill_actors(handles: Sequence, timeout_s: float = 10.0) -> int:
    """Force-kill actors (no restart) and wait, at most `timeout_s`, until each is reported dead; returns how many
    were not. A force kill ends the worker in its core worker (`_exit`), without Python's finalization, so a thread
    blocked in a read cannot keep the process alive as it can a graceful exit (docs/failure_policy.md)."""
    import ray

    for h in handles:
        try:
            ray.kill(h, no_restart=True)
        except Exception as err:  # noqa: BLE001 - already gone, or never created
            log.debug("ray.kill: %s", err)
    deadline, left = time.monotonic() + timeout_s, list(handles)
    while left and time.monotonic() < deadline:
        h = left[0]
        try:  # a call on a dead actor fails; one that returns came before the kill landed
            ray.get(h.__ray_ready__.remote(), timeout=max(0.1, deadline - time.monotonic()))
            time.sleep(0.05)
        except Exception as err:  # noqa: BLE001
            if actor_died(err):
                left.pop(0)
    return len(left)


class WorkerPool:
    """Named, restartable workers; `map` sends chunks to them and collects results as they finish."""

    def __init__(self, make: Callable[[int], Any], size: int, name: str, timeout_s: float) -> None:
        self.make, self.name, self.timeout_s = make, name, timeout_s
        self.workers = [make(i) for i in range(size)]
        self.failures = 0

    def map(self, method: str, chunks: Sequence[Any], key: Callable[[Any], Any]) -> dict:
        """Call `method(chunk)` for every chunk and return {key(result_item): item}.

        Chunks are handed out as workers finish (one call in flight per worker), so a fast worker takes more.
        A chunk whose worker died goes back to the front of the queue for another worker; the dead worker gets
        no more calls in this map (Ray restarts it in the background). A chunk that fails twice, a pool with no
        live worker left, or a map that outlives ray.get_timeout_s raises, naming the pool and the method."""
        import ray

        results: dict = {}
        queue = deque((chunk, 0) for chunk in chunks)
        pending: dict = {}
        idle = deque(range(len(self.workers)))  # a worker that dies is not put back
        deadline = time.monotonic() + self.timeout_s
        while queue or pending:
            while queue and idle:
                chunk, attempt = queue.popleft()
                w = idle.popleft()
                pending[getattr(self.workers[w], method).remote(chunk)] = (chunk, w, attempt)
            if not pending:
                raise RuntimeError(f"{self.name}: every worker died during {method}; {len(queue)} chunk(s) left")
            refs = list(pending)
            done, rest = ray.wait(refs, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                raise TimeoutError(f"{self.name}: {len(pending) + len(queue)} call(s) to {method} unfinished after "
                                   f"{self.timeout_s:.0f} s (ray.get_timeout_s)")
            if rest:  # take every call that has finished by now: one wait per batch of results, not per result
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                done += more
            for ref in done:
                chunk, w, attempt = pending.pop(ref)
                try:
                    for item in ray.get(ref):
                        results.setdefault(key(item), item)  # a re-sent chunk can never count twice
                    idle.append(w)
                except Exception as err:
                    if not actor_died(err):
                        raise
                    self.failures += 1
                    if attempt >= 1:
                        raise RuntimeError(f"{self.name}: {method} failed twice for one chunk: {err}") from None
                    log.warning("%s worker %d died during %s (%s); re-sending its %d item(s) to another worker",
                                self.name, w, method, type(err).__name__, len(chunk))
                    queue.appendleft((chunk, attempt + 1))
        return results

    def broadcast(self, method: str, *args, timeout_s: float | None = None) -> list:
        import ray

        refs = [getattr(w, method).remote(*args) for w in self.workers]
        try:
            return ray.get(refs, timeout=timeout_s or self.timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(f"{self.name}.{method} did not finish within {timeout_s or self.timeout_s:.0f} s") from None


def _first_line(err: BaseException, limit: int) -> str:
    return str(err).splitlines()[0][:limit] if str(err) else ""


def stream_chunks(workers: list, chunks: Iterator[list], on_done: Callable[[list, list], None],
                  on_lost: Callable[[Any, str], None], in_flight: int, timeout_s: float,
                  method: str = "rollout") -> dict:
    """Send chunks (lists of RolloutItem) to `workers` as they free up, at most `in_flight` calls per worker, and
    call `on_done(chunk, groups)` as each finishes. The chunk iterator is advanced only when a worker has room,
    so no more than `in_flight` chunks per worker are ever read ahead. Returns counts (calls, worker_deaths,
    resent, lost).

    When an actor dies, which of its queued calls killed it is not known (a call that finished may lose its reply
    when the next one crashes the process at once), so every call it had outstanding is re-sent *isolated*: alone
    on an idle worker, nothing queued behind it. An isolated chunk that kills its worker is split into single
    records, each isolated; a single record that kills its worker in isolation is given up
    (`on_lost(item, message)`). So one record that crashes its worker costs only itself, never a neighbour, and
    never stops the run. A dead worker is probed with `ready` and used again once Ray has restarted it. No call
    finishing within `timeout_s` raises TimeoutError; no live worker left with work remaining raises RuntimeError."""
    import ray

    pending: dict = {}  # ref -> (chunk, worker, attempt); attempt >= 1: isolated
    queued: list[list] = [[] for _ in workers]  # each worker's outstanding refs
    dead: set = set()  # outstanding refs of a dead incarnation, not yet reported
    probes: dict = {}  # ready() ref of a dead worker -> worker
    alive = set(range(len(workers)))
    retry: deque = deque()  # (chunk, attempt) to re-send isolated, first in line
    exhausted = False
    stats = {"calls": 0, "worker_deaths": 0, "resent": 0, "lost": 0}

    def submit(w: int, chunk: list, attempt: int) -> None:
        ref = getattr(workers[w], method).remote(chunk)
        pending[ref] = (chunk, w, attempt)
        queued[w].append(ref)
        stats["calls"] += 1

    while True:
        while retry:  # isolated re-sends take idle workers first; no new chunk is read while any waits
            idle = [w for w in sorted(alive) if not queued[w]]
            if not idle:
                break
            submit(idle[0], *retry.popleft())
        while not retry and not exhausted:
            free = [w for w in sorted(alive) if len(queued[w]) < in_flight
                    and not any(pending[r][2] for r in queued[w])]  # nothing behind an isolated call
            if not free:
                break
            chunk = next(chunks, None)
            if chunk is None:
                exhausted = True
                break
            submit(min(free, key=lambda i: len(queued[i])), chunk, 0)
        if not pending:
            if retry and not probes:
                raise RuntimeError(f"every rollout worker died; {sum(len(c) for c, _ in retry)} record(s) left")
            if not retry and exhausted:
                return stats
        done, _ = ray.wait(list(pending) + list(probes), num_returns=1, timeout=timeout_s)
        if not done:
            raise TimeoutError(f"no rollout call finished within {timeout_s:.0f} s (ray.get_timeout_s); "
                               f"{len(pending)} call(s) in flight")
        ref = done[0]
        if ref in probes:
            w = probes.pop(ref)
            try:
                ray.get(ref)
                alive.add(w)
                log.warning("rollout worker %d is back", w)
            except Exception as err:
                log.warning("rollout worker %d is gone for good (%s)", w, type(err).__name__)
            continue
        chunk, w, attempt = pending.pop(ref)
        queued[w].remove(ref)
        try:
            groups = ray.get(ref)
        except Exception as err:
            if not actor_died(err):
                raise
            if ref in dead:
                dead.discard(ref)
            else:  # the first call of this incarnation to report its death
                stats["worker_deaths"] += 1
                dead.update(queued[w])
                alive.discard(w)
                probes[workers[w].ready.remote()] = w
                log.warning("rollout worker %d died (%s: %s); re-sending its %d outstanding call(s) one at a time",
                            w, type(err).__name__, _first_line(err, 200), len(queued[w]) + 1)
            if attempt == 0:
                retry.append((chunk, 1))
                stats["resent"] += 1
            elif len(chunk) > 1:
                log.warning("an isolated chunk killed its worker; retrying its %d record(s) one by one", len(chunk))
                retry.extendleft(([it], 2) for it in reversed(chunk))
            else:
                stats["lost"] += 1
                on_lost(chunk[0], f"the rollout worker died running this record alone ({type(err).__name__}: "
                                  f"{_first_line(err, 300)})")
            continue
        dead.discard(ref)  # finished before its actor died
        on_done(chunk, groups)


def split(items: Sequence, parts: int) -> list[list]:
    """Contiguous, near-equal chunks (at most `parts`, none empty; no chunk for no items)."""
    if not items:
        return []
    parts = max(1, min(parts, len(items)))
    q, r = divmod(len(items), parts)
    out, i = [], 0
    for p in range(parts):
        n = q + (1 if p < r else 0)
        out.append(list(items[i:i + n]))
        i += n
    return out
