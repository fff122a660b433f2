"""RolloutWorker: a Ray actor holding one generation engine (vLLM or HF) around `RolloutCore`."""
from __future__ import annotations

import logging
import os
import time
from collections import deque

import ray

log = logging.getLogger("actors.rollout_worker")


@ray.remote
class RolloutWorker:
    def __init__(self, cfg, model_dir: str, name: str) -> None:
        from medgrpo_ray.tracking.console import quiet_process

        quiet_process(cfg.logging.level, cfg.logging.engine_level, name)
        from medgrpo_ray.config.devices import process_device
        from medgrpo_ray.rollout.core import RolloutCore

        self.name = name
        # The GPU Ray assigned, masked or not (ray.noset_cuda_visible_devices): config/devices.py
        self.device = process_device(ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"),
                                     cfg.ray.noset_cuda_visible_devices)
        self.core = RolloutCore(cfg, model_dir, name=name, device_index=self.device.index)
        self.weights_version = 0  # 0: the checkpoint it started from; the driver numbers each sync
        self.journal_ = deque(maxlen=512)  # (wall time, event): what this worker did, in order (journal())
        self.handovers = 0  # weight versions received by hand-over (colocated)
        if cfg.placement == "colocated" and cfg.rollout.colocated_memory == "sleep":
            self.sleep()  # a (re)started engine never holds its share while its learner rank does: memory_phases.py

    def _note(self, event: str) -> None:
        self.journal_.append((time.time(), event))

    def journal(self) -> list:
        """The worker's recent calls as (wall time, event), oldest first: rollout, sleep, wake_up, handover, ..."""
        return list(self.journal_)

    def sleep(self, level: int = 1) -> bool:
        """Colocated sleep mode: free the engine's GPU memory (a logged no-op where vLLM has no sleep mode)."""
        self._note("sleep")
        return self.core.sleep(level)

    def wake_up(self, tags=None) -> bool:
        """Bring back what sleeps of `tags` (None: all)."""
        self._note("wake_up" if tags is None else "wake_up:" + ",".join(tags))
        return self.core.wake_up(tags)

    def ready(self) -> dict:
        return {"name": self.name, "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}

    def rollout(self, items: list) -> list:
        self._note("rollout")
        return self.core.rollout(items)

    def load_weights(self, state: dict, version: int) -> int:
        """Apply new policy weights (passed by object reference, never through the driver) and reset caches.
        Idempotent: safe to retry. Returns the bytes loaded."""
        self.core.load_weights(state)
        self.weights_version = version
        return sum(t.numel() * t.element_size() for t in state.values())

    def sync_join(self, host: str, port: int, rank: int, world_size: int, epoch: int, timeout_s: float,
                  backend: str, metas: list, bucket_bytes: int) -> int:
        """Join (epoch `epoch` of) the weight-sync group as `rank`; leaves an earlier epoch's group first."""
        from medgrpo_ray.weight_sync.collective import SyncGroup, plan_buckets

        old, self.sync_group = getattr(self, "sync_group", None), None
        if old is not None:
            old.close()
        device = self.device.torch if backend == "nccl" else "cpu"
        self.sync_group = SyncGroup(host, port, rank, world_size, epoch, timeout_s, backend, device)
        self.sync_plan = (metas, plan_buckets(metas, bucket_bytes))
        return epoch

    def sync_epoch(self) -> int:
        """The weight-sync group epoch this worker is a member of (0: none, e.g. after a restart, or its group
        failed in a sync: the driver then builds a new epoch)."""
        group = getattr(self, "sync_group", None)
        return 0 if group is None or group.broken else group.epoch

    def sync_receive(self, version: int) -> int:
        """Receive a broadcast sync straight into the engine, bucket by bucket; returns the tensors loaded.

        A sync that fails part-way leaves the engine unservable (vLLM's in-place reload moves each layer to the
        meta device until all its weights arrived), so this worker then exits: Ray restarts it from the checkpoint
        and the driver's next group epoch sends it the weights (docs/failure_policy.md)."""
        from medgrpo_ray.weight_sync.collective import receive

        metas, buckets = self.sync_plan
        count = 0

        def stream():
            nonlocal count
            for pair in receive(self.sync_group, metas, buckets):
                count += 1
                yield pair

        try:
            self.core.load_weights_stream(stream())
        except Exception as err:  # noqa: BLE001 - any failure mid-reload: the engine holds half its weights
            log.error("%s: weight sync %d stopped after %d tensors (%s: %s); exiting so Ray restarts this worker",
                      self.name, version, count, type(err).__name__, str(err).splitlines()[0][:300] if str(err) else "")
            logging.shutdown()
            os._exit(1)
        self.weights_version = version
        return count

    def handover_receive(self, version: int, to_engine, to_learner, timeout_s: float) -> int:
        """Colocated weight sync: receive version `version` from the learner rank on this GPU through the two
        queues (medgrpo_ray/weight_sync/handover.py: handles in, acknowledgements out) straight into the engine;
        returns the tensors loaded. As with a broadcast, a hand-over that fails part-way leaves the engine half
        loaded, so this worker exits and Ray restarts it (the driver re-sends it the weights)."""
        from medgrpo_ray.weight_sync.handover import HandoverReceiver, StaleVersion, queue_transport

        self._note(f"handover:{version}")
        send_ack, recv = queue_transport(to_learner, to_engine)  # ray.util.queue.Empty is a queue.Empty
        receiver = HandoverReceiver(send_ack, recv, timeout_s, version=self.weights_version)
        count, started = 0, False

        def load(pairs):
            nonlocal started
            started = True  # from here vLLM's in-place reload has taken the layers apart
            self.core.load_weights_stream(counted(pairs))

        def counted(pairs):
            nonlocal count
            for pair in pairs:
                count += 1
                yield pair

        try:
            got = receiver.receive(load)
        except Exception as err:  # noqa: BLE001 - any failure mid-reload: the engine holds half its weights
            if not started or isinstance(err, StaleVersion):  # nothing loaded: the engine is intact
                raise
            log.error("%s: weight hand-over %d stopped after %d tensors (%s: %s); exiting so Ray restarts this worker",
                      self.name, version, count, type(err).__name__, str(err).splitlines()[0][:300] if str(err) else "")
            logging.shutdown()
            os._exit(1)
        if got != version:
            raise RuntimeError(f"{self.name}: hand-over delivered version {got}, the driver sent {version}")
        self.weights_version = version
        self.handovers += 1
        return count

    def sync_stats(self) -> dict:
        """How this worker's weights arrived: versions by hand-over, and its broadcast group epoch (0: never in one)."""
        return {"version": self.weights_version, "handovers": self.handovers, "sync_epoch": self.sync_epoch()}

    def probe_storage(self, uri: str) -> str:
        """Can this worker's node reach the checkpoint storage? (checked at start; see medgrpo_ray/checkpoint/storage.py)"""
        from medgrpo_ray.checkpoint.storage import probe

        return probe(uri, f"{self.name} on node {ray.util.get_node_ip_address()}")

    def version(self) -> int:
        """Which sync this worker's weights come from (0 after a (re)start: the initial checkpoint)."""
        return self.weights_version

    def score(self, items: list, completions: list[list[int]]) -> list[list[float]]:
        """Engine log-probs of given completion tokens for given records (weight-sync checks)."""
        return self.core.score(items, completions)
