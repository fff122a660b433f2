"""The driver's side of weight sync: learner rank 0 -> every rollout worker, after each step and on resume.

Two paths (`rollout.weight_sync`):
- `broadcast` (default): a collective group of learner rank 0 and the rollout workers (medgrpo_ray/weight_sync/collective.py;
  gloo on CPU, NCCL when both sides hold GPUs). The weights go GPU -> GPU in buckets, never through the object
  store. Before each sync the driver asks every worker which group epoch it belongs to; a worker that restarted
  (epoch 0) makes the driver build a new epoch that every member joins, then the sync goes on in it.
- `object_store`: learner rank 0's state dict is put in Ray's object store once and every worker fetches it by
  reference (the fallback; no collective group).
Either way a sync that cannot finish raises TimeoutError within `ray.weight_sync_timeout_s`, naming the setting.
"""
from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class WeightSyncer:
    def __init__(self, cfg, learners: list, rollout) -> None:
        self.cfg, self.learners, self.rollout = cfg, learners, rollout
        self.mode = cfg.rollout.weight_sync
        self.version = 0  # syncs done; a worker reporting another version has stale weights
        self.epoch = 0  # the broadcast group's epoch (0: not built yet)
        self.metas = None
        self.last_seconds = 0.0

    @property
    def timeout_s(self) -> float:
        return self.cfg.ray.weight_sync_timeout_s

    def _get(self, refs: list, what: str):
        import ray

        try:
            return ray.get(refs, timeout=self.timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(f"{what} did not finish within {self.timeout_s:.0f} s (ray.weight_sync_timeout_s)"
                               ) from None

    # ---- the two paths -------------------------------------------------------------------------------------
    def sync(self) -> dict[str, float]:
        """Send learner rank 0's weights to every rollout worker as a new version; returns sync metrics."""
        t0 = time.perf_counter()
        self.version += 1
        if self.mode == "broadcast":
            self._ensure_group()
            sent = self._broadcast(self.rollout.workers)
        else:
            sent = self._object_store(self.rollout.workers)
        self.last_seconds = time.perf_counter() - t0  # the step's timing_s/weight_sync measures it for the metrics
        return {"sync/bytes": float(sent)}  # deterministic: resumed and straight runs log the same

    def _broadcast(self, workers: list) -> int:
        bucket = int(self.cfg.rollout.weight_sync_bucket_mb * 2**20)
        sends = [l.sync_send.remote(bucket) for l in self.learners]  # every rank: ZeRO-3 gathers collectively
        recvs = [w.sync_receive.remote(self.version) for w in workers]
        out = self._get(sends + recvs, f"broadcast weight sync {self.version} (epoch {self.epoch})")
        return int(out[0])

    def _object_store(self, workers: list) -> int:
        refs = [l.state_dict.remote() for l in self.learners]  # collective under ZeRO-3: every rank takes part
        state_ref = refs[0]
        retries = -1  # load_weights is idempotent: retried until the worker is back (bounded by the timeout)
        acks = [w.load_weights.options(max_task_retries=retries).remote(state_ref, self.version) for w in workers]
        out = self._get(acks + refs[1:], f"object-store weight sync {self.version}")
        return int(sum(out[:len(acks)]))  # bytes each worker loaded

    # ---- the broadcast group ---------------------------------------------------------------------------------
    def _ensure_group(self) -> None:
        """Build a new group epoch when there is none or a worker is not in the current one (it restarted)."""
        import ray

        retries = -1  # wait through a restart, bounded by the timeout
        epochs = self._get([w.sync_epoch.options(max_task_retries=retries).remote() for w in self.rollout.workers],
                           "asking the rollout workers for their weight-sync group")
        if self.epoch and all(e == self.epoch for e in epochs):
            return
        if self.metas is None:
            self.metas = ray.get(self.learners[0].sync_metas.remote(), timeout=self.timeout_s)
        self.epoch += 1
        if self.epoch > 1:
            log.warning("weight sync: %d rollout worker(s) not in group epoch %d (restarted); building epoch %d",
                        sum(e != self.epoch - 1 for e in epochs), self.epoch - 1, self.epoch)
        host, port = ray.get(self.learners[0].address.remote(), timeout=self.timeout_s)
        world = 1 + len(self.rollout.workers)
        backend = self.backend()
        bucket = int(self.cfg.rollout.weight_sync_bucket_mb * 2**20)
        joins = [l.sync_join.remote(host, port, world, self.epoch, self.timeout_s, backend) for l in self.learners]
        joins += [w.sync_join.remote(host, port, i + 1, world, self.epoch, self.timeout_s, backend, self.metas, bucket)
                  for i, w in enumerate(self.rollout.workers)]
        # The members' own rendezvous times out after timeout_s; the driver waits a little longer for their errors.
        try:
            ray.get(joins, timeout=self.timeout_s + 10)
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(f"weight-sync group epoch {self.epoch} did not form within {self.timeout_s:.0f} s "
                               "(ray.weight_sync_timeout_s): a rollout worker never joined") from None
        except ray.exceptions.RayTaskError as err:
            cause = err.as_instanceof_cause()
            if isinstance(cause, TimeoutError):
                raise TimeoutError(str(cause).splitlines()[-1]) from None
            raise

    def backend(self) -> str:
        """NCCL when learners and rollout workers hold GPUs, gloo otherwise (the same code on CPU)."""
        gpus = self.cfg.learner.num_gpus_per_rank > 0 and self.cfg.rollout.num_gpus_per_worker > 0
        return "nccl" if gpus else "gloo"

    # ---- restarted workers -------------------------------------------------------------------------------------
    def ensure(self) -> int:
        """Before a rollout: re-send the latest weights to any worker that restarted since the last sync (it
        starts from the initial checkpoint); returns how many did. Broadcast mode rebuilds the group and
        re-broadcasts the same version to every worker (a worker already on it loads identical weights)."""
        import ray

        if not self.version:
            return 0
        retries = -1  # wait through a restart; bounded by the timeout below
        versions = ray.get([w.version.options(max_task_retries=retries).remote() for w in self.rollout.workers],
                           timeout=self.cfg.ray.init_timeout_s)
        stale = [w for w, v in zip(self.rollout.workers, versions) if v != self.version]
        if stale:
            log.warning("%d rollout worker(s) restarted since the last sync; re-sending weights", len(stale))
            if self.mode == "broadcast":
                self._ensure_group()
                self._broadcast(self.rollout.workers)
            else:
                self._object_store(stale)
        return len(stale)
