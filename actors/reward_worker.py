"""RewardWorker: stateless, restartable scoring of completions with the rule-based task rewards.

Idempotent: the same (record, completion) always gives the same result, so a retried call after a restart
changes nothing. Caption tasks go to the JudgeWorker when a judge is configured.
"""
from __future__ import annotations

import ray


@ray.remote
class RewardWorker:
    def __init__(self, format_weight: float = 0.0) -> None:
        from medgrpo_ray.rewards import RewardSettings

        self.settings = RewardSettings(format_weight=format_weight)

    def score(self, items: list[tuple[dict, str, str]]) -> list:
        """items: (eval record dict, completion text, sample id) -> [(sample id, RewardResult)], never raising."""
        from medgrpo_ray.rewards import compute_reward
        from medgrpo_ray.rewards.types import RewardResult

        out = []
        for record, text, sid in items:
            try:
                out.append((sid, compute_reward(record, text, self.settings, rid=sid)))
            except Exception as err:  # noqa: BLE001 - a reward bug must not kill the step; it is reported per sample
                out.append((sid, RewardResult(None, f"reward error: {type(err).__name__}: {err}", {})))
        return out
