"""RolloutWorker: a Ray actor holding one generation engine (vLLM or HF) around `RolloutCore`."""
from __future__ import annotations

import os

import ray


@ray.remote
class RolloutWorker:
    def __init__(self, cfg, model_dir: str, name: str) -> None:
        from medgrpo_ray.tracking.console import quiet_process

        quiet_process(cfg.logging.level, cfg.logging.engine_level, name)
        from medgrpo_ray.rollout.core import RolloutCore

        self.name = name
        self.core = RolloutCore(cfg, model_dir, name=name)
        self.weights_version = 0  # 0: the checkpoint it started from; the driver numbers each sync

    def ready(self) -> dict:
        return {"name": self.name, "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}

    def rollout(self, items: list) -> list:
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
        device = "cuda" if backend == "nccl" else "cpu"
        self.sync_group = SyncGroup(host, port, rank, world_size, epoch, timeout_s, backend, device)
        self.sync_plan = (metas, plan_buckets(metas, bucket_bytes))
        return epoch

    def sync_epoch(self) -> int:
        """The weight-sync group epoch this worker is a member of (0: none, e.g. after a restart)."""
        group = getattr(self, "sync_group", None)
        return 0 if group is None else group.epoch

    def sync_receive(self, version: int) -> int:
        """Receive a broadcast sync straight into the engine, bucket by bucket; returns the tensors loaded."""
        from medgrpo_ray.weight_sync.collective import receive

        metas, buckets = self.sync_plan
        count = 0

        def stream():
            nonlocal count
            for pair in receive(self.sync_group, metas, buckets):
                count += 1
                yield pair

        self.core.load_weights_stream(stream())
        self.weights_version = version
        return count

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
