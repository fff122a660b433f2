"""JudgeWorker: the caption rewards (medical LLM judge + semantic similarity) as a restartable Ray actor.

Stateless apart from the judge's persistent cache, which makes retried calls free: a restarted worker that
re-scores a sample reads the cached verdict instead of calling the API again.
"""
from __future__ import annotations


import ray


@ray.remote
class JudgeWorker:
    def __init__(self, cfg) -> None:
        from medgrpo_ray.tracking.console import quiet_process

        quiet_process(cfg.logging.level, cfg.logging.engine_level, "judge")
        from medgrpo_ray.judge.caption_reward import CaptionRewardSettings
        from medgrpo_ray.judge.client import build_judge

        r = cfg.reward
        self.settings = CaptionRewardSettings(judge_weight=r.caption_judge_weight,
                                              fallback_to_similarity=r.caption_fallback_to_similarity)
        self.judge = build_judge(cfg.judge)
        self.encoder = None
        if r.caption_judge_weight < 1.0 or r.caption_fallback_to_similarity:
            from medgrpo_ray.models.embedding import SentenceEmbedder

            self.encoder = SentenceEmbedder(similarity_model_dir(r.similarity_model, cfg.model.cache_dir))

    def score(self, items: list[tuple[dict, str, str]]) -> list:
        """items: (eval record dict, completion text, sample id) -> [(sample id, RewardResult)] (caption quality)."""
        from medgrpo_ray.judge.caption_reward import CaptionSample, caption_rewards
        from medgrpo_ray.rewards.ground_truth import caption_segments
        from medgrpo_ray.rewards.types import RewardResult
        from medgrpo_ray.medvidbench.tasks import canonical_task

        samples, ids, out = [], [], []
        for record, text, sid in items:
            task = canonical_task(record["qa_type"])
            try:
                ref = caption_segments(record.get("struc_info"), sid) if task == "dense_captioning" else record.get("gnd") or ""
            except ValueError as err:
                out.append((sid, RewardResult(None, f"caption reference: {err}", {})))
                continue
            samples.append(CaptionSample(prediction=text, reference=ref, task=task))
            ids.append(sid)
        out.extend(zip(ids, caption_rewards(samples, self.judge, self.encoder, self.settings)))
        return out

    def stats(self) -> dict:
        return self.judge.stats().as_metrics("judge/")


def similarity_model_dir(setting: str, cache_dir: str) -> str:
    """`tiny:text_encoder` builds (once) the offline tiny encoder; anything else is a model directory."""
    if setting == "tiny:text_encoder":
        from pathlib import Path

        from medgrpo_ray.models.tiny_text_encoder import build_tiny_text_encoder

        return str(build_tiny_text_encoder(Path(cache_dir).expanduser() / "tiny_models" / "text_encoder-seed0"))
    return setting
