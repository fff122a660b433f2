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
    prompt_tokens: int = 0  # prompt length as the rollout engine counted it (vision placeholders expanded)


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


def pack_micro_batches(samples: Sequence[TrainSample], max_samples: int, max_tokens: int) -> list[list[TrainSample]]:
    """Cut one rank's samples into micro-batches. With `max_tokens` 0: runs of `max_samples`, in order. Otherwise
    longest first, each micro-batch filled while its padded size (samples x longest prompt + completion) stays
    within `max_tokens` and it holds at most `max_samples`; a sample longer than the budget goes alone. Short
    samples then share a forward and long ones do not pad each other out of memory."""
    if not max_tokens:
        return [list(samples[i:i + max_samples]) for i in range(0, len(samples), max_samples)]
    out: list[list[TrainSample]] = []
    cur: list[TrainSample] = []
    longest = 0
    for s in sorted(samples, key=lambda s: -(s.prompt_tokens + len(s.completion_ids))):
        n = s.prompt_tokens + len(s.completion_ids)
        if cur and (len(cur) >= max_samples or (len(cur) + 1) * max(longest, n) > max_tokens):
            out.append(cur)
            cur, longest = [], 0
        cur.append(s)
        longest = max(longest, n)
    if cur:
        out.append(cur)
    return out


def shard_samples(samples: Sequence[TrainSample], world_size: int, micro_batch_size: int,
                  micro_batch_tokens: int = 0) -> list[Shard]:
    """Split samples over ranks, a group's samples together (its video is then decoded on one rank), with token
    counts balanced (`balance_groups`), cut each rank's share into micro-batches (`pack_micro_batches`: by count,
    or by a token budget), and give every rank the same number of micro-batches: ZeRO-3 collectives need every
    rank to run the same forwards, so a rank with fewer repeats one sample with zero weight.
    """
    if not samples:
        raise ValueError("shard_samples: no samples to train on")
    groups: dict[int, list[TrainSample]] = {}
    for s in samples:
        groups.setdefault(s.group_id, []).append(s)
    ordered = list(groups.values())
    parts = balance_groups([sum(s.prompt_tokens + len(s.completion_ids) for s in g) for g in ordered], world_size)
    per_rank = [pack_micro_batches([s for gi in part for s in ordered[gi]], micro_batch_size, micro_batch_tokens)
                for part in parts]
    n_micro = max(1, max(len(p) for p in per_rank))
    total_tokens = sum(len(s.completion_ids) for s in samples)
    filler = samples[0]  # an empty micro-batch becomes one zero-weight copy of a real sample
    pad = [TrainSample(filler.group_id, filler.record, filler.completion_ids, 0.0, weight=0.0,
                       ref_logprobs=filler.ref_logprobs, prompt_tokens=filler.prompt_tokens)]
    return [Shard(micro_batches=mbs + [list(pad) for _ in range(n_micro - len(mbs))], total_tokens=total_tokens,
                  total_seqs=len(samples), world_size=world_size) for mbs in per_rank]
