"""Ray plumbing in one place: connecting, creating the actor groups, and calling a pool with fault handling.

Every wait has a timeout from the config (`ray.*_timeout_s`). Stateless workers (reward, judge, rollout) are
created with restarts; a call that fails because its actor died is re-sent to a live worker, so no prompt is
lost, and results are keyed by id, so none is counted twice. The learner group is coupled by a collective and
fails fast: the job then resumes from its last checkpoint.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)


def actor_env(cfg) -> dict[str, str]:
    """Environment for every actor: vLLM's in-process CPU mode, thread counts, the user's extra variables."""
    env = {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_KVCACHE_SPACE": str(cfg.rollout.kv_cache_space_gib),
        # Ray sets OMP_NUM_THREADS=1 in actors and vLLM's CPU worker ignores torch.set_num_threads.
        "OMP_NUM_THREADS": str(cfg.rollout.threads_per_worker),
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
    ray.init(num_cpus=cfg.ray.num_cpus, num_gpus=cfg.ray.num_gpus, namespace=cfg.ray.namespace,
             include_dashboard=False, log_to_driver=True)
    return "local"


def bundles_by_node(pg) -> list[int]:
    """Bundle indices of a ready placement group ordered by node, so consecutive learner ranks share a node.
    Ray may place bundle i on any node of a PACK group; ranks assigned by bundle index alone can interleave nodes
    (ray-project/ray#51117), which spreads a node's ranks over the collective's ring."""
    import ray

    table = ray.util.placement_group_table(pg)
    nodes = table.get("bundles_to_node_id", {})
    return sorted(range(len(table["bundles"])), key=lambda i: (nodes.get(i, ""), i))


def actor_options(cfg, name: str, **kw) -> dict:
    """Options shared by every actor of the run: a readable name and the run's environment variables."""
    return {"name": name, "runtime_env": {"env_vars": actor_env(cfg)}, **kw}


def wait_ready(refs: Sequence, timeout_s: float, what: str) -> list:
    import ray

    try:
        return ray.get(list(refs), timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise TimeoutError(f"{what} not ready within {timeout_s:.0f} s (ray.init_timeout_s); check the cluster's "
                           f"free CPUs/GPUs against the requested resources") from None


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
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ActorUnavailableError) as err:
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
