"""One GRPO step's data flow between the actor calls, without Ray: rollout groups + rewards -> normalized rewards
-> group-relative advantages -> the samples to train, plus the per-sample log and the failed groups.

Pure functions over plain objects (the driver calls them between `rollout_step`, `score` and the learner call),
so the bookkeeping of a step is testable without a cluster.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class StepSamples:
    rows: list = field(default_factory=list)  # (dataset, task, raw, normalized) per sample: reward_metrics input
    rewards: list = field(default_factory=list)  # normalized x weight per sample (NaN: no reward)
    group_ids: list = field(default_factory=list)
    samples: list = field(default_factory=list)  # TrainSample per completion, advantage still 0
    rollout_log: list = field(default_factory=list)  # rollouts.jsonl lines
    failed: list = field(default_factory=list)  # (position in the step's items, RolloutGroup) of failed groups


def collect_samples(cfg, items, records, groups, scored, normalizer) -> StepSamples:
    """`items[i]` was drawn for `records[i]`; `groups` maps group id -> RolloutGroup; `scored` maps
    "<group>:<j>" -> RewardResult."""
    from medgrpo_ray.grpo.batch import TrainSample

    out = StepSamples()
    for pos, (it, rec) in enumerate(zip(items, records)):
        g = groups[it.group_id]
        if g.error:
            out.failed.append((pos, g))
            out.rollout_log.append({"group": it.group_id, "dataset": rec.dataset, "task": rec.task, "uid": rec.uid,
                                    "raw_reward": None, "reason": f"failed group ({g.reason}): {g.error}",
                                    "completion": None})
            continue
        task_cfg = getattr(cfg.reward, rec.task)
        weight = task_cfg.weight if task_cfg.enabled else None
        for j, c in enumerate(g.completions):
            res = scored[f"{it.group_id}:{j}"]
            raw = res.value if weight is not None else None
            norm = None
            if raw is not None:
                norm = normalizer.normalize(rec.dataset, rec.task, raw) if cfg.normalization.enabled else raw
                norm *= weight
            out.rows.append((rec.dataset, rec.task, raw, norm))
            out.rollout_log.append({"group": it.group_id, "dataset": rec.dataset, "task": rec.task, "uid": rec.uid,
                                    "raw_reward": raw, "reason": res.reason, "completion": c.text})
            out.rewards.append(np.nan if norm is None else norm)
            out.group_ids.append(it.group_id)
            out.samples.append(TrainSample(group_id=it.group_id, record=it.record, completion_ids=c.token_ids,
                                           advantage=0.0, rollout_logprobs=c.logprobs, dataset=rec.dataset,
                                           task=rec.task, prompt_tokens=len(g.prompt_token_ids)))
    return out


def select_trained(data: StepSamples, a) -> tuple[list, set[int]]:
    """(samples to train with their advantages set, zero-variance group ids). Samples without a reward are never
    trained; zero-variance groups are dropped unless `algorithm.drop_zero_variance_groups` is off (then their
    rewarded samples train with advantage 0)."""
    from medgrpo_ray.grpo.advantages import group_advantages

    adv = group_advantages(np.asarray(data.rewards, dtype=np.float64), np.asarray(data.group_ids), eps=a.adv_eps,
                           zero_variance_threshold=a.zero_variance_threshold, scale_by_std=a.adv_std_normalize)
    keep = []
    zero_var = set(int(g) for g in adv.zero_variance_groups)
    for s, av, ok, r in zip(data.samples, adv.advantages, adv.valid, data.rewards):
        if ok:
            s.advantage = float(av)
            keep.append(s)
        elif not a.drop_zero_variance_groups and s.group_id in zero_var and not np.isnan(r):
            s.advantage = 0.0
            keep.append(s)
    return keep, zero_var


def signal_metrics(data: StepSamples, keep: list) -> dict[str, float]:
    """Where the step's policy-gradient signal went, per (dataset, task): `signal/<ds>/<task>/adv_share`, its
    share of the step's total |advantage| over trained samples, and `signal/<ds>/<task>/trained_frac`, the
    fraction of its rewarded samples that trained. A pair whose share stays far below its share of the samples
    is starved (its groups have no reward spread, or a spread too small to matter beside the others')."""
    rewarded: dict[tuple[str, str], int] = {}
    for s, r in zip(data.samples, data.rewards):
        if not np.isnan(r):
            rewarded[(s.dataset, s.task)] = rewarded.get((s.dataset, s.task), 0) + 1
    mass: dict[tuple[str, str], float] = {}
    trained: dict[tuple[str, str], int] = {}
    for s in keep:
        key = (s.dataset, s.task)
        mass[key] = mass.get(key, 0.0) + abs(s.advantage)
        trained[key] = trained.get(key, 0) + 1
    total = sum(mass.values())
    out = {}
    for key, n in sorted(rewarded.items()):
        ds, task = key
        out[f"signal/{ds}/{task}/adv_share"] = mass.get(key, 0.0) / total if total > 0 else 0.0
        out[f"signal/{ds}/{task}/trained_frac"] = trained.get(key, 0) / n
    return out
