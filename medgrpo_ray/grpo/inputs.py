"""Learner-side model inputs for scored samples: decode each record's video (once per group, cached), apply the
processor, and pair the prompt with each completion. Shared by the policy learner and the reference workers, so
both see exactly the inputs the rollout worker generated from."""
from __future__ import annotations

from typing import Sequence


class SampleInputs:
    def __init__(self, cfg, processor) -> None:
        from medgrpo_ray.data.prompts import budget_for
        from medgrpo_ray.data.video import ClipCache

        d = cfg.data
        self.cfg, self.processor = cfg, processor
        self.budget = budget_for(processor, d.max_frames, d.min_pixels, d.max_pixels)
        self.cache = ClipCache(d.frame_cache_entries)

    def logprob_samples(self, batch: Sequence) -> list:
        """One LogprobSample per TrainSample of `batch` (prompt inputs shared within a group)."""
        from medgrpo_ray.data.clips import clip_for_record
        from medgrpo_ray.data.prompts import hf_inputs, prompt_text
        from medgrpo_ray.data.records import VideoRecord
        from medgrpo_ray.grpo.logprobs import LogprobSample

        d = self.cfg.data
        out, per_group = [], {}
        for s in batch:
            if s.group_id not in per_group:
                rec = VideoRecord.from_dict(s.record)
                clip = clip_for_record(rec, self.budget, cache=self.cache, video_root=d.video_root,
                                       timeout_s=d.decode_timeout_s, threads=d.decode_threads)
                per_group[s.group_id] = hf_inputs(self.processor, prompt_text(self.processor, rec.question), clip)
            out.append(LogprobSample.from_processor(per_group[s.group_id], s.completion_ids))
        return out
