"""The driver's side of weight sync: learner rank 0 -> every rollout worker, after each step and on resume.

Two paths (`rollout.weight_sync`):
- `broadcast` (default): a collective group of learner rank 0 and the rollout workers (medgrpo_ray/weight_sync/collective.py;
  gloo on CPU, NCCL when both sides hold GPUs). The weights go GPU -> GPU in buckets, never through the object
  store. Before each sync the driver asks every worker which group epoch it belongs to; a worker that restarted
  (epoch 0) makes the driver build a new epoch that every member joins, then the sync goes on in it.
- `object_store`: learner rank 0's state dict is put in Ray's object store once and every worker fetches it by
  reference (the fallback; no collective group).
Either way a sync that cannot finish raises within `ray.weight_sync_timeout_s`, naming the setting. A broadcast
that fails (a member's group timed out or aborted, a rollout worker died mid-sync) is sent once more in a new group
epoch, on gloo and NCCL alike (the NCCL group aborts only its own communicator: weight_sync/group_init.py); a
second failure, or a learner rank that died, stops the run, and `resume=auto` carries on from the last checkpoint
(docs/failure_policy.md, "Weight sync per backend").
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
            sent = self._send_all()
        else:
            sent = self._object_store(self.rollout.workers)
        self.last_seconds = time.perf_counter() - t0  # the step's timing_s/weight_sync measures it for the metrics
        return {"sync/bytes": float(sent)}  # deterministic: resumed and straight runs log the same

    def _send_all(self) -> int:
        """Broadcast the current version to every worker in the current group epoch; when that fails, once more in
        a new epoch. A learner rank that died, or a second failure, raises (the run stops; resume=auto)."""
        try:
            self._ensure_group()
            return self._broadcast(self.rollout.workers)
        except Exception as err:  # noqa: BLE001 - classified below; anything else is raised as it is
            kind = sync_failure_kind(err, {actor_id(l) for l in self.learners})
            if kind is None:
                raise
            if kind == "learner":
                raise RuntimeError(f"a learner rank died during weight sync {self.version} (epoch {self.epoch}): the "
                                   "learner group has no restarts, so the run stops here; resume=auto continues from "
                                   f"the last checkpoint ({_first_line(err)})") from err
            first = f"{kind}: {_first_line(err)}"
        log.warning("weight sync %d failed in group epoch %d (%s); building epoch %d and sending again",
                    self.version, self.epoch, first, self.epoch + 1)
        failed_epoch = self.epoch
        try:
            self._ensure_group(force=True)
            return self._broadcast(self.rollout.workers)
        except Exception as err:  # noqa: BLE001
            again = sync_failure_kind(err, {actor_id(l) for l in self.learners})
            msg = (f"weight sync {self.version} failed in group epoch {failed_epoch} ({first}) and again in epoch "
                   f"{self.epoch} ({again or type(err).__name__}: {_first_line(err)}); the run stops here, resume=auto "
                   "continues from the last checkpoint (ray.weight_sync_timeout_s bounds each try)")
            raise (TimeoutError if again == "timeout" else RuntimeError)(msg) from err

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
    def _ensure_group(self, force: bool = False) -> None:
        """Build a new group epoch when there is none, a worker is not in the current one (it restarted, or its
        group failed), or `force` (the last sync failed)."""
        import ray

        retries = -1  # wait through a restart, bounded by the timeout
        epochs = self._get([w.sync_epoch.options(max_task_retries=retries).remote() for w in self.rollout.workers],
                           "asking the rollout workers for their weight-sync group")
        if self.epoch and all(e == self.epoch for e in epochs) and not force:
            return
        if self.metas is None:
            self.metas = ray.get(self.learners[0].sync_metas.remote(), timeout=self.timeout_s)
        self.epoch += 1
        if self.epoch > 1 and not force:
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
                self._send_all()
            else:
                self._object_store(stale)
        return len(stale)


def actor_id(handle) -> str:
    """The hex id of an actor handle (what a RayActorError's `actor_id` names)."""
    return handle._actor_id.hex()


def sync_failure_kind(err: BaseException, learner_ids: set) -> str | None:
    """What made a broadcast sync fail: "learner" (a learner rank died: not recoverable), "rollout worker" (one
    died mid-sync), "timeout" (a member's group timed out or aborted, or the driver's wait ran out), or None (any
    other error: a bug, raised as it is)."""
    import ray

    from medgrpo_ray.driver.cluster import actor_died

    if actor_died(err):
        return "learner" if getattr(err, "actor_id", None) in learner_ids else "rollout worker"
    cause = err.as_instanceof_cause() if isinstance(err, ray.exceptions.RayTaskError) else err
    if isinstance(cause, (TimeoutError, ray.exceptions.GetTimeoutError)):
        return "timeout"
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[-1] if text else type(err).__name__)[:300]
