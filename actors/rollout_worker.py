"""RolloutWorker: a Ray actor holding one generation engine (vLLM or HF) around `RolloutCore`."""
from __future__ import annotations

import logging
import os

import ray


@ray.remote
class RolloutWorker:
    def __init__(self, cfg, model_dir: str, name: str) -> None:
        logging.basicConfig(level=cfg.logging.level, format=f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s")
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
        from medgrpo_ray.data.clips import clip_for_record
        from medgrpo_ray.data.prompts import prompt_text, vllm_request
        from medgrpo_ray.data.records import VideoRecord

        reqs = []
        for it in items:
            rec = VideoRecord.from_dict(it.record)
            clip = clip_for_record(rec, self.core.budget, cache=self.core.cache, video_root=self.core.cfg.data.video_root)
            reqs.append(vllm_request(prompt_text(self.core.processor, rec.question), clip))
        return self.core.engine.score(reqs, completions)
