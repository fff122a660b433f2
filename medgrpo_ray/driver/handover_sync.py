"""The driver's side of the colocated weight sync: every learner rank hands its weights to the engine on its own
GPU (placement=colocated; medgrpo_ray/weight_sync/handover.py), after each step, on resume, and to an engine that
restarted.

Learner rank r and rollout worker r share a bundle (actor_groups.build_colocated): they talk through two Ray
queues of their own (`ray.util.queue.Queue`, zero-CPU actors made here): handles go to the engine, acknowledgements
back. Only these small messages travel; the tensor data stays on the GPU (CUDA IPC) or in shared memory (CPU).
Both queues are emptied before each hand-over, so nothing of a failed one (a bucket nobody took, a late
acknowledgement) is read by the next.

Same interface and guarantees as `WeightSyncer` (syncer.py): `sync()` numbers versions, `ensure()` re-sends the
latest version to engines that restarted (every rank joins under ZeRO-3, since the gathers are collective; only the
stale engines' ranks send), a hand-over that fails (an engine died mid-way, a timeout) is sent once more to the
engines not on the version, and a second failure or a learner rank that died stops the run (resume=auto continues).
"""
from __future__ import annotations

import logging
import time

from medgrpo_ray.driver.syncer import _first_line, actor_id, sync_failure_kind

log = logging.getLogger(__name__)


class HandoverSyncer:
    mode = "handover"

    def __init__(self, cfg, learners: list, rollout, memory=None) -> None:
        from ray.util.queue import Queue

        if len(learners) != len(rollout.workers):
            raise ValueError(f"colocated hand-over pairs each learner rank with one engine: {len(learners)} ranks, "
                             f"{len(rollout.workers)} engines")
        self.cfg, self.learners, self.rollout, self.memory = cfg, learners, rollout, memory
        self.version = 0
        self.last_seconds = 0.0
        opts = {"num_cpus": 0}
        self.queues = [(Queue(actor_options=opts), Queue(actor_options=opts)) for _ in learners]  # (to engine, to learner)

    def actors(self) -> list:
        """The queues' actors (Trainer.stop kills them with the run's other actors)."""
        return [q.actor for pair in self.queues for q in pair]

    @property
    def timeout_s(self) -> float:
        return self.cfg.ray.weight_sync_timeout_s

    def sync(self) -> dict[str, float]:
        """Hand the learner's weights to every engine as a new version; returns sync metrics."""
        t0 = time.perf_counter()
        self.version += 1
        sent = self._send_all([True] * len(self.learners))
        self.last_seconds = time.perf_counter() - t0
        return {"sync/bytes": float(sent)}

    def ensure(self) -> int:
        """Before a rollout: re-send the latest version to every engine that restarted since (version 0); returns
        how many did."""
        import ray

        if not self.version:
            return 0
        versions = ray.get([w.version.options(max_task_retries=-1).remote() for w in self.rollout.workers],
                           timeout=self.cfg.ray.init_timeout_s)
        stale = [v != self.version for v in versions]
        if any(stale):
            log.warning("%d engine(s) restarted since the last sync; handing them the weights again", sum(stale))
            self._send_all(stale)
        return sum(stale)

    def _send_all(self, targets: list[bool]) -> int:
        """Hand the current version to the engines of `targets`; when that fails, once more to the engines that
        are not on it. A learner rank that died, or a second failure, raises."""
        try:
            return self._handover(targets)
        except Exception as err:  # noqa: BLE001 - classified below
            first = self._classify(err)
        log.warning("weight hand-over %d failed (%s); sending it again to the engines not on it", self.version, first)
        import ray

        versions = ray.get([w.version.options(max_task_retries=-1).remote() for w in self.rollout.workers],
                           timeout=self.cfg.ray.init_timeout_s)  # waits through a restart
        try:
            return self._handover([v != self.version for v in versions])
        except Exception as err:  # noqa: BLE001
            again = self._classify(err)
            msg = (f"weight hand-over {self.version} failed ({first}) and again ({again}); the run stops here, "
                   "resume=auto continues from the last checkpoint (ray.weight_sync_timeout_s bounds each try)")
            raise (TimeoutError if again.startswith("timeout") else RuntimeError)(msg) from err

    def _classify(self, err: BaseException) -> str:
        import ray

        from medgrpo_ray.weight_sync.handover import HandoverRefused

        kind = sync_failure_kind(err, {actor_id(l) for l in self.learners})
        cause = err.as_instanceof_cause() if isinstance(err, ray.exceptions.RayTaskError) else err
        if kind is None and isinstance(cause, HandoverRefused):
            kind = "engine refused or died"
        if kind is None:
            raise err
        if kind == "learner":
            raise RuntimeError(f"a learner rank died during weight hand-over {self.version}: the learner group has no "
                               "restarts, so the run stops here; resume=auto continues from the last checkpoint "
                               f"({_first_line(err)})") from err
        return f"{kind}: {_first_line(err)}"

    def _handover(self, targets: list[bool]) -> int:
        import ray

        if not any(targets):
            return 0
        if self.memory is not None:
            self.memory.before_sync()
        for (to_engine, to_learner), t in zip(self.queues, targets):
            if t:
                for q in (to_engine, to_learner):
                    n = q.qsize()
                    if n:
                        q.get_nowait_batch(n)
        bucket = int(self.cfg.rollout.weight_sync_bucket_mb * 2**20)
        calls = {l.handover_send.remote(self.version, bucket, q[0], q[1], self.timeout_s, t): ("learner", r)
                 for r, (l, q, t) in enumerate(zip(self.learners, self.queues, targets))}
        calls.update({w.handover_receive.remote(self.version, q[0], q[1], self.timeout_s): ("engine", r)
                      for r, (w, q, t) in enumerate(zip(self.rollout.workers, self.queues, targets)) if t})
        return self._collect(calls)

    def _collect(self, calls: dict) -> int:
        """Wait for every call of one hand-over (so none is still running when it is sent again); an engine that
        died makes its rank stop waiting for acknowledgements at once (an abort message on its queue). Raises the
        first error (a learner's before an engine's), else returns the bytes handed over."""
        import ray

        from medgrpo_ray.driver.cluster import actor_died
        from medgrpo_ray.weight_sync.handover import abort_ack

        pending, errors, sent = list(calls), [], 0
        deadline = time.monotonic() + self.timeout_s + 10
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                raise TimeoutError(f"weight hand-over {self.version} did not finish within {self.timeout_s:.0f} s "
                                   "(ray.weight_sync_timeout_s)")
            role, rank = calls[done[0]]
            try:
                out = ray.get(done[0])
            except Exception as err:  # noqa: BLE001 - every call is waited for, then the first error raised
                errors.append((role != "learner", err))
                if role == "engine" and actor_died(err):
                    self.queues[rank][1].put(abort_ack(self.version, f"engine {rank} died during the hand-over"))
                continue
            if role == "learner":
                sent += int(out)
        if errors:
            raise sorted(errors, key=lambda e: e[0])[0][1]
        return sent
