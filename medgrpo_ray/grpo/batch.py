"""The learner's unit of work: scored samples, and their split over ranks and micro-batches.

The driver sends records and token ids, never frames: each learner decodes the video of a record itself (once per
group, cached), exactly as the rollout worker did, so both compute log-probs on identical inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


@dataclass
class TrainSample:
    group_id: int
    record: dict  # published-format record (the learner decodes its video)
    completion_ids: list[int]  # (L,) sampled tokens
    advantage: float  # group-relative advantage of this sample
    rollout_logprobs: list[float] = field(default_factory=list)  # (L,) engine log-probs, for the mismatch metric
    dataset: str = ""
    task: str = ""
    weight: float = 1.0  # 0 for the filler that keeps ranks in step; its tokens count nowhere


@dataclass
class Shard:
    """One rank's share of a step: its samples cut into micro-batches, plus step-wide normalisers."""

    micro_batches: list[list[TrainSample]]
    total_tokens: int  # completion tokens in the whole step (all ranks): token-mean normaliser
    total_seqs: int  # samples in the whole step (all ranks): sequence-mean normaliser
    world_size: int


def shard_samples(samples: Sequence[TrainSample], world_size: int, micro_batch_size: int) -> list[Shard]:
    """Split samples over ranks, keeping a group's samples together where possible, with token counts balanced
    greedily (longest groups first), and give every rank the same number of micro-batches: ZeRO-3 collectives
    need every rank to run the same forwards, so a rank with fewer samples repeats one with zero weight.
    """
    if not samples:
        raise ValueError("shard_samples: no samples to train on")
    groups: dict[int, list[TrainSample]] = {}
    for s in samples:
        groups.setdefault(s.group_id, []).append(s)
    loads = [0] * world_size
    per_rank: list[list[TrainSample]] = [[] for _ in range(world_size)]
    for g in sorted(groups.values(), key=lambda g: -sum(len(s.completion_ids) for s in g)):
        r = loads.index(min(loads))
        per_rank[r].extend(g)
        loads[r] += sum(len(s.completion_ids) for s in g)
    n_micro = max(1, max(-(-len(p) // micro_batch_size) for p in per_rank))
    total_tokens = sum(len(s.completion_ids) for s in samples)
    shards = []
    for p in per_rank:
        mbs = [p[i * micro_batch_size:(i + 1) * micro_batch_size] for i in range(n_micro)]
        shards.append(Shard(micro_batches=mbs, total_tokens=total_tokens, total_seqs=len(samples), world_size=world_size))
    filler = samples[0]
    for sh in shards:  # an empty micro-batch becomes one zero-weight copy of a real sample
        sh.micro_batches = [mb or [TrainSample(filler.group_id, filler.record, filler.completion_ids, 0.0, weight=0.0)]
                            for mb in sh.micro_batches]
    return shards
