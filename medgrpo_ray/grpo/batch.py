"""The learner's unit of work: scored samples, and their split over ranks and micro-batches.

The driver sends records and token ids, never frames: each learner decodes the video of a record itself (once per
group, cached), exactly as the rollout worker did, so both compute log-probs on identical inputs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

log = logging.getLogger(__name__)


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
    ref_logprobs: list[float] = field(default_factory=list)  # (L,) from a separate reference group, if used


@dataclass
class Shard:
    """One rank's share of a step: its samples cut into micro-batches, plus step-wide normalisers."""

    micro_batches: list[list[TrainSample]]
    total_tokens: int  # completion tokens in the whole step (all ranks): token-mean normaliser
    total_seqs: int  # samples in the whole step (all ranks): sequence-mean normaliser
    world_size: int
    is_cap: float = 0.0  # > 0: weight tokens by min(exp(learner - rollout log-prob), is_cap) (rollout ahead)


KK_MAX_GROUPS = 2048  # above this, longest-first greedy (already within a fraction of a percent; KK grows faster)


def balance_groups(group_tokens: Sequence[int], world_size: int) -> list[list[int]]:
    """Indices of groups per rank with near-equal token totals.

    Uses OpenRLHF's Karmarkar-Karp partitioner (`openrlhf.utils.seqlen_balancing`, installed without its heavy
    dependencies, see docs/decisions.md) when there are at least as many groups as ranks and at most
    KK_MAX_GROUPS; otherwise, or without openrlhf, a longest-first greedy assignment (a heap of rank loads:
    O(n log n); with many groups per rank its imbalance is at most one group's tokens)."""
    n = len(group_tokens)
    if world_size <= n <= KK_MAX_GROUPS:
        try:
            from openrlhf.utils.seqlen_balancing import get_seqlen_balanced_partitions
        except ImportError:
            log.info("openrlhf not installed: balancing learner shards greedily")
        else:
            return [sorted(p) for p in get_seqlen_balanced_partitions(list(group_tokens), world_size, equal_size=False)]
    import heapq

    heap = [(0, r) for r in range(world_size)]
    parts: list[list[int]] = [[] for _ in range(world_size)]
    for i in sorted(range(n), key=lambda i: -group_tokens[i]):
        load, r = heapq.heappop(heap)
        parts[r].append(i)
        heapq.heappush(heap, (load + group_tokens[i], r))
    return [sorted(p) for p in parts]


def shard_samples(samples: Sequence[TrainSample], world_size: int, micro_batch_size: int) -> list[Shard]:
    """Split samples over ranks, a group's samples together (its video is then decoded on one rank), with token
    counts balanced (`balance_groups`), and give every rank the same number of micro-batches: ZeRO-3 collectives
    need every rank to run the same forwards, so a rank with fewer samples repeats one with zero weight.
    """
    if not samples:
        raise ValueError("shard_samples: no samples to train on")
    groups: dict[int, list[TrainSample]] = {}
    for s in samples:
        groups.setdefault(s.group_id, []).append(s)
    ordered = list(groups.values())
    parts = balance_groups([sum(len(s.completion_ids) for s in g) for g in ordered], world_size)
    per_rank = [[s for gi in part for s in ordered[gi]] for part in parts]
    n_micro = max(1, max(-(-len(p) // micro_batch_size) for p in per_rank))
    total_tokens = sum(len(s.completion_ids) for s in samples)
    shards = []
    for p in per_rank:
        mbs = [p[i * micro_batch_size:(i + 1) * micro_batch_size] for i in range(n_micro)]
        shards.append(Shard(micro_batches=mbs, total_tokens=total_tokens, total_seqs=len(samples), world_size=world_size))
    filler = samples[0]
    for sh in shards:  # an empty micro-batch becomes one zero-weight copy of a real sample
        sh.micro_batches = [mb or [TrainSample(filler.group_id, filler.record, filler.completion_ids, 0.0, weight=0.0,
                                               ref_logprobs=filler.ref_logprobs)]
                            for mb in sh.micro_batches]
    return shards
