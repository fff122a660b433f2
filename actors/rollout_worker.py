"""RolloutWorker: a Ray actor holding one generation engine (vLLM or HF) around `RolloutCore`."""
from __future__ import annotations

import os

import ray


@ray.remote
class RolloutWorker:
    def __init__(self, cfg, model_dir: str, name: str) -> None:
        from medgrpo_ray.console import quiet_process

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
        Idempotent: safe to retry."""
        self.core.load_weights(state)
        self.weights_version = version
        return len(state)

    def version(self) -> int:
        """Which sync this worker's weights come from (0 after a (re)start: the initial checkpoint)."""
        return self.weights_version

    def score(self, items: list, completions: list[list[int]]) -> list[list[float]]:
        """Engine log-probs of given completion tokens for given records (weight-sync checks)."""
        return self.core.score(items, completions)
