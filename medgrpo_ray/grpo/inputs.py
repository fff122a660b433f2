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

    def group_inputs(self, batch: Sequence) -> tuple[dict, dict]:
        """Processor outputs per group of `batch` (decoded once per group), and the groups that cannot be trained:
        {group_id: (reason, message)} for a record whose video fails here or whose prompt + longest completion
        exceeds rollout.max_model_len."""
        from medgrpo_ray.data.clips import clip_for_record
        from medgrpo_ray.data.prompts import hf_inputs, prompt_text
        from medgrpo_ray.data.records import RecordError, VideoRecord
        from medgrpo_ray.data.video import VideoDecodeError

        d, limit = self.cfg.data, self.cfg.rollout.max_model_len
        longest: dict[int, int] = {}
        first: dict[int, object] = {}
        for s in batch:
            longest[s.group_id] = max(longest.get(s.group_id, 0), len(s.completion_ids))
            first.setdefault(s.group_id, s)
        inputs, failures = {}, {}
        for gid, s in first.items():
            try:
                rec = VideoRecord.from_dict(s.record)
                clip = clip_for_record(rec, self.budget, cache=self.cache, video_root=d.video_root,
                                       timeout_s=d.decode_timeout_s, threads=d.decode_threads)
                x = hf_inputs(self.processor, prompt_text(self.processor, rec.question), clip)
            except (VideoDecodeError, RecordError, OSError, ValueError) as err:
                failures[gid] = ("learner_decode", str(err))
                continue
            n = int(x["input_ids"].shape[-1]) + longest[gid]
            if n > limit:
                failures[gid] = ("too_long", f"record {rec.uid}: {n} tokens (prompt + completion) on the learner "
                                             f"exceed rollout.max_model_len={limit}")
                continue
            inputs[gid] = x
        return inputs, failures

    def logprob_samples(self, batch: Sequence, inputs: dict | None = None) -> list:
        """One LogprobSample per TrainSample of `batch` (prompt inputs shared within a group; `inputs` from
        `group_inputs` when already built)."""
        from medgrpo_ray.grpo.logprobs import LogprobSample

        if inputs is None or any(s.group_id not in inputs for s in batch):
            built, failures = self.group_inputs([s for s in batch if inputs is None or s.group_id not in inputs])
            if failures:
                raise ValueError("; ".join(msg for _, msg in failures.values()))
            inputs = {**(inputs or {}), **built}
        return [LogprobSample.from_processor(inputs[s.group_id], s.completion_ids) for s in batch]
