"""The phases of one GRPO step on the driver, each one actor call or one pure bookkeeping pass:

draw a batch -> roll it out (rollout pool) -> score it (reward pool, judge pool) -> samples, normalized rewards,
advantages (step_data.py, pure) -> reference log-probs (separate reference pool, if any) -> learner update ->
metrics. `Trainer.train_one_step` (trainer.py) orders them, with or without the rollout one step ahead
(rollout_ahead.py), and owns the weight sync in between.
"""
from __future__ import annotations

import time

from medgrpo_ray.driver.rollout_ahead import Batch
from medgrpo_ray.medvidbench.tasks import CAPTION_TASKS, canonical_task


def seed_for(seed: int, step: int, index: int) -> int:
    """The sampling seed of prompt `index` of step `step` (0-based): a run's rollouts depend on nothing else."""
    return (seed * 1_000_003 + step * 10_007 + index) % (2**31 - 1)


def draw_batch(trainer, step: int) -> Batch:
    """Step `step`'s prompts from the balanced sampler (the sampler advances), with the rollout workers made
    current first: any worker that restarted gets the latest weights again (syncer.ensure). Called on the driver's
    main thread, between learner calls, so that re-sync never races an update."""
    from medgrpo_ray.rollout.types import RolloutItem

    a = trainer.cfg.algorithm
    idx = trainer.sampler.next_batch(a.prompts_per_step)
    items = [RolloutItem(group_id=step * a.prompts_per_step + i, record=trainer.records[k].shared_dict(),
                         seed=seed_for(trainer.cfg.seed, step, i)) for i, k in enumerate(idx)]
    resynced = trainer.syncer.ensure()
    return Batch(step=step, idx=list(idx), items=items, policy_step=trainer.step, workers_resynced=resynced)


def roll_out(trainer, batch: Batch) -> Batch:
    """Generate the batch's groups with the weights the rollout workers hold (those of `batch.policy_step`)."""
    t0 = time.perf_counter()
    batch.groups = trainer.rollout_step(batch.items)
    batch.span = (t0, time.perf_counter())
    return batch


def overlap_s(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Seconds two (start, end) spans of the same clock share."""
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def combine_caption_reward(rule, judged):
    """A caption task's training reward from the rule-based result and the judge+similarity result.

    video_summary / region_caption have no rule-based part ("needs judge"): the caption reward is the reward.
    dense_captioning: the mean of localization F1 and caption quality; if either is missing, the reward is missing
    too (with both reasons), since half a reward would not be comparable across samples of the group."""
    from medgrpo_ray.rewards.types import RewardResult

    from medgrpo_ray.rewards import NEEDS_JUDGE

    if rule.value is None and rule.reason == NEEDS_JUDGE:
        return judged
    if rule.value is None or judged.value is None:
        return RewardResult(None, f"localization: {rule.reason}; captions: {judged.reason}", {})
    value = 0.5 * rule.value + 0.5 * judged.value
    return RewardResult(value, "ok", {"localization_f1": rule.value, "caption_quality": judged.value})


def score(trainer, items, records, groups) -> dict:
    """RewardResult per sample id "<group>:<index>", from the reward pool (re-sent chunks deduplicated) and, for
    caption tasks, the judge pool. `records` are the items' parsed VideoRecords, in order."""
    from medgrpo_ray.driver.cluster import split

    jobs = []
    for it, record in zip(items, records):
        rec = record.shared_eval_dict()
        jobs.extend((rec, c.text, f"{it.group_id}:{j}") for j, c in enumerate(groups[it.group_id].completions))
    if not jobs:
        return {}
    pairs = trainer.rewards.map("score", split(jobs, len(trainer.rewards.workers)), key=lambda pair: pair[0])
    scored = {sid: res for sid, (_, res) in pairs.items()}
    captions = [j for j in jobs if canonical_task(j[0]["qa_type"]) in CAPTION_TASKS]
    if trainer.judges is not None and captions:
        judged = trainer.judges.map("score", split(captions, len(trainer.judges.workers)), key=lambda pair: pair[0])
        for sid, (_, res) in judged.items():
            scored[sid] = combine_caption_reward(scored[sid], res)
    return scored


def reference_logprobs(trainer, keep) -> float:
    """Fill each kept sample's ref_logprobs from the separate reference pool; returns the seconds taken."""
    from medgrpo_ray.driver.cluster import split

    t0 = time.perf_counter()
    keyed = list(enumerate(keep))
    refs = trainer.references.map("logprobs", split(keyed, len(trainer.references.workers)), key=lambda kv: kv[0])
    for i, s in keyed:
        s.ref_logprobs = refs[i][1]
    return time.perf_counter() - t0


def learner_call(trainer, keep, is_cap: float = 0.0) -> list[dict]:
    """One update of the learner group on the kept samples, sharded over the ranks by token count; `is_cap` > 0
    turns on the truncated importance weights against the rollout log-probs (samples from an older policy)."""
    import ray

    from medgrpo_ray.grpo.batch import shard_samples

    cfg = trainer.cfg
    shards = shard_samples(keep, len(trainer.learners), cfg.learner.micro_batch_size, cfg.learner.micro_batch_tokens)
    for sh in shards:
        sh.is_cap = is_cap
    trainer.memory.before_update()  # colocated sleep mode: the learner's states back on its GPUs
    return ray.get([l.train_step.remote(sh) for l, sh in zip(trainer.learners, shards)], timeout=cfg.ray.get_timeout_s)


def learner_metrics(outs: list[dict], separate_reference: bool) -> dict[str, float]:
    """The ranks' metric sums reduced to the step's learner/* metrics (token-weighted means, maxima, minima)."""
    tokens = sum(o["tokens"] for o in outs) or 1.0
    m: dict[str, float] = {}
    for key in ("loss", "pg_loss"):
        m[f"learner/{key}"] = sum(o[key] for o in outs)
    for key in ("kl", "clip_frac", "ratio_mean"):
        m[f"learner/{key}"] = sum(o[key] for o in outs) / tokens
    m["learner/ratio_max"] = max(o["ratio_max"] for o in outs)
    m["learner/grad_norm"] = outs[0]["grad_norm"]
    m["learner/lr"] = outs[0]["lr"]
    m["learner/micro_batches"] = outs[0].get("micro_batches", 0)  # per rank (equal on every rank)
    m["learner/rollout_logprob_gap_mean"] = sum(o["rollout_logprob_gap_sum"] for o in outs) / tokens
    m["learner/rollout_logprob_gap_max"] = max(o["rollout_logprob_gap_max"] for o in outs)
    with_is = [o for o in outs if "is_ratio_mean" in o]
    if with_is:  # rollout ahead: the truncated importance weights between rollout and learner policies
        m["learner/is_ratio_mean"] = sum(o["is_ratio_mean"] for o in with_is) / tokens
        m["learner/is_truncated_frac"] = sum(o["is_truncated_frac"] for o in with_is) / tokens
        m["learner/is_ratio_max"] = max(o["is_ratio_max"] for o in with_is)
        m["learner/is_ratio_min"] = min(o["is_ratio_min"] for o in with_is)
    if not separate_reference:
        m["timing_s/reference"] = max(o["reference_s"] for o in outs)
    return m
