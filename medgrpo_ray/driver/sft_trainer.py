"""The SFT driver: the GRPO driver's data, cluster, evaluation, quarantine and checkpoints, with a supervised step.

Each step takes the next `sft.samples_per_step` records of a seeded per-epoch order (`EpochCursor`), pairs each
record's prompt (the same chat template, frames and processor path as rollout and GRPO: identical tokens) with its
reference answer's tokens plus EOS, shards them over the learner ranks with balanced token loads, and runs one
optimizer step of answer-token cross-entropy (`PolicyLearner.sft_step`). Rollout workers are used for evaluation
only: the learner's weights are synced to them right before each evaluation. Checkpoints hold the cursor, so
`resume=auto` continues with the exact next batch; the HF export is what `model.path` of a GRPO run points at.
"""
from __future__ import annotations

import logging
import math
import time

from medgrpo_ray.driver.trainer import Trainer

log = logging.getLogger("medgrpo_ray.sft")


def sft_total_steps(cfg, n_records: int) -> int:
    """Steps of an SFT run: `sft.max_steps` if set, else ceil(epochs x records / samples_per_step)."""
    s = cfg.sft
    return s.max_steps or max(1, math.ceil(s.epochs * n_records / s.samples_per_step))


class SFTTrainer(Trainer):
    desc = "SFT"

    def __init__(self, cfg, run_dir) -> None:
        import dataclasses

        d = cfg.data
        has_test = cfg.sft.evaluate and bool(d.test_path or (d.synthetic_dir and not d.train_path))
        # The GRPO driver loads the test split when algorithm.eval_every > 0; SFT evaluates at the end at least.
        super().__init__(dataclasses.replace(cfg, algorithm=dataclasses.replace(cfg.algorithm, eval_every=int(has_test))),
                         run_dir)
        from medgrpo_ray.sft.data import EpochCursor

        without = [r for r in self.records if not r.answer]
        if without:
            log.warning("SFT: %d training records have no reference answer (gpt turn or gnd) and are left out",
                        len(without))
            self.records = [r for r in self.records if r.answer]
        if not self.records:
            raise ValueError("SFT: no training record has a reference answer (a gpt turn or `gnd`)")
        self.sampler = EpochCursor(len(self.records), cfg.seed)
        self._tokenizer = None
        total = sft_total_steps(cfg, len(self.records))
        every = (cfg.sft.eval_every or total) if has_test else 0
        # The loop, the LR schedule (learner) and the checkpoint schedule read algorithm.total_steps / eval_every.
        self.cfg = dataclasses.replace(self.cfg, algorithm=dataclasses.replace(self.cfg.algorithm, total_steps=total,
                                                                                eval_every=every))
        log.info("SFT: %d records, %s epochs of %d per step -> %d steps; evaluation every %s", len(self.records),
                 cfg.sft.epochs, cfg.sft.samples_per_step, total, every or ("never (sft.evaluate=false)" if not cfg.sft.evaluate else "never (no test split)"))

    def answer_ids(self, rec) -> list[int]:
        from medgrpo_ray.sft.data import answer_token_ids

        if self._tokenizer is None:
            from medgrpo_ray.models.loading import load_processor, resolve_model_path

            m = self.cfg.model
            self._tokenizer = load_processor(resolve_model_path(m.path, m.cache_dir, m.tiny_seed)).tokenizer
        return answer_token_ids(self._tokenizer, rec.answer)

    def train_one_step(self) -> dict:
        import ray

        from medgrpo_ray.grpo.batch import TrainSample, shard_samples

        cfg = self.cfg
        t_step = time.perf_counter()
        n = cfg.sft.samples_per_step
        idx = self.sampler.next_batch(n)
        samples = []
        for i, k in enumerate(idx):
            rec = self.records[k]
            samples.append(TrainSample(group_id=self.step * n + i, record=rec.to_dict(),
                                       completion_ids=self.answer_ids(rec), advantage=0.0, dataset=rec.dataset,
                                       task=rec.task))
        shards = shard_samples(samples, len(self.learners), cfg.learner.micro_batch_size)
        self.memory.before_update()  # colocated sleep mode: the learner's states back on its GPUs
        outs = ray.get([l.sft_step.remote(sh) for l, sh in zip(self.learners, shards)], timeout=cfg.ray.get_timeout_s)
        failed = {gid: v for o in outs for gid, v in o["failures"].items()}
        if failed:
            self.quarantine_groups(samples, idx, [(gid, kind, msg) for gid, (kind, msg) in failed.items()])
        tokens = sum(o["tokens"] for o in outs)
        self.step += 1
        m = {"sft/loss": sum(o["nll_sum"] for o in outs) / max(tokens, 1.0), "sft/answer_tokens": tokens,
             "sft/epoch": self.sampler.epochs_done, "sft/failed_records": len(failed),
             "data/quarantined": len(self.quarantine), "learner/grad_norm": outs[0]["grad_norm"],
             "learner/lr": outs[0]["lr"], "timing_s/learner": max(o["learner_s"] for o in outs)}
        m["timing_s/step"] = time.perf_counter() - t_step
        return m

    def evaluate(self) -> dict[str, float]:
        """Sync the learner's weights to the rollout workers, then the GRPO driver's greedy evaluation."""
        self.sync_weights()
        return super().evaluate()
