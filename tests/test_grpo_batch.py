"""Learner sharding: groups kept together, token loads balanced, equal micro-batch counts, zero-weight filler."""
from __future__ import annotations

import sys

import pytest

from medgrpo_ray.grpo.batch import TrainSample, balance_groups, shard_samples


def _samples(lengths_per_group):
    out = []
    for g, lengths in enumerate(lengths_per_group):
        out += [TrainSample(group_id=g, record={"g": g}, completion_ids=[1] * n, advantage=1.0) for n in lengths]
    return out


def test_openrlhf_partition_is_used_and_balanced():
    """Group token totals 8, 7, 6, 5, 4 over 2 ranks. Karmarkar-Karp: difference 8-7 -> 1, 6-5 -> 1, then
    4-1 -> 3, 3-1 -> 2: loads 16 / 14 ({7, 5, 4} / {8, 6}). Longest-first greedy gets 17 / 13 (next test)."""
    import openrlhf.utils.seqlen_balancing  # noqa: F401  the CPU install ships it (launch/install_cpu.sh)

    parts = balance_groups([8, 7, 6, 5, 4], 2)
    assert parts == [[1, 3, 4], [0, 2]]


def test_greedy_fallback_without_openrlhf(monkeypatch):
    """Without openrlhf: longest first onto the lighter rank: 8 -> r0, 7 -> r1, 6 -> r1 (13), 5 -> r0 (13),
    4 -> r0 (tie, first rank): loads 17 / 13."""
    monkeypatch.setitem(sys.modules, "openrlhf.utils.seqlen_balancing", None)
    assert balance_groups([8, 7, 6, 5, 4], 2) == [[0, 3, 4], [1, 2]]


def test_shards_keep_groups_and_equal_micro_batch_counts():
    samples = _samples([[4, 4], [3, 3, 3], [10], [1]])  # group tokens 8, 9, 10, 1
    shards = shard_samples(samples, world_size=2, micro_batch_size=2)
    assert len(shards) == 2
    n_micro = {len(sh.micro_batches) for sh in shards}
    assert len(n_micro) == 1
    seen = [s for sh in shards for mb in sh.micro_batches for s in mb if s.weight]
    assert sorted(id(s) for s in seen) == sorted(id(s) for s in samples)  # every sample once
    for sh in shards:
        groups = {s.group_id for mb in sh.micro_batches for s in mb if s.weight}
        for g in groups:  # a group lives on one rank
            assert all(s.group_id not in groups for other in shards if other is not sh
                       for mb in other.micro_batches for s in mb if s.weight)
        assert sh.total_tokens == 28 and sh.total_seqs == 7 and sh.world_size == 2


def test_filler_has_zero_weight():
    samples = _samples([[5, 5, 5]])  # one group: rank 1 gets nothing and must still run one micro-batch
    shards = shard_samples(samples, world_size=2, micro_batch_size=4)
    empty = [sh for sh in shards if not any(s.weight for mb in sh.micro_batches for s in mb)]
    assert len(empty) == 1 and len(empty[0].micro_batches) == 1
    assert [s.weight for s in empty[0].micro_batches[0]] == [0.0]


def test_no_samples_is_an_error():
    with pytest.raises(ValueError):
        shard_samples([], 2, 4)


def test_many_groups_balance_greedily_within_one_group():
    """Above KK_MAX_GROUPS the longest-first heap is used (Karmarkar-Karp grows faster than n log n there):
    every group placed once, rank loads within the largest group's tokens of each other."""
    import random

    from medgrpo_ray.grpo.batch import KK_MAX_GROUPS

    rng = random.Random(0)
    tokens = [rng.randint(50, 400) for _ in range(KK_MAX_GROUPS + 1000)]
    parts = balance_groups(tokens, 8)
    assert sorted(i for p in parts for i in p) == list(range(len(tokens)))
    loads = [sum(tokens[i] for i in p) for p in parts]
    assert max(loads) - min(loads) <= max(tokens)


def _with_prompts(pairs):
    """(group, prompt tokens, completion tokens) -> samples."""
    return [TrainSample(group_id=g, record={"g": g}, completion_ids=[1] * c, advantage=1.0, prompt_tokens=p)
            for g, p, c in pairs]


def test_token_budget_packs_longest_first_within_the_padded_budget():
    """Budget 100 padded tokens, at most 3 samples: lengths 90 | 40, 30, 25 | 20, 20, 10 (sorted longest first:
    90 alone (2 x 90 > 100); 40 + 30 -> 2 x 40 = 80, + 25 -> 3 x 40 = 120 > 100, so a new batch; 25, 20, 20 =
    3 x 25 = 75, then the count cap; 10 alone). A sample over the budget still trains, alone."""
    from medgrpo_ray.grpo.batch import pack_micro_batches

    samples = _with_prompts([(0, 80, 10), (1, 30, 10), (1, 20, 10), (2, 20, 5), (2, 15, 5), (3, 15, 5), (3, 5, 5)])
    mbs = pack_micro_batches(samples, max_samples=3, max_tokens=100)
    lengths = [[s.prompt_tokens + len(s.completion_ids) for s in mb] for mb in mbs]
    assert lengths == [[90], [40, 30], [25, 20, 20], [10]]
    assert all(len(mb) * max(l) <= 100 or len(mb) == 1 for mb, l in zip(mbs, lengths))
    over = pack_micro_batches(_with_prompts([(0, 500, 20)]), max_samples=3, max_tokens=100)
    assert [len(mb) for mb in over] == [1]
    # 0: the fixed count, in order
    assert [len(mb) for mb in pack_micro_batches(samples, max_samples=3, max_tokens=0)] == [3, 3, 1]


def test_token_budget_shards_keep_equal_micro_batch_counts_with_fillers():
    samples = _with_prompts([(0, 80, 10), (0, 80, 10), (1, 5, 5), (1, 5, 5), (1, 5, 5)])  # groups 180 / 30 tokens
    shards = shard_samples(samples, world_size=2, micro_batch_size=8, micro_batch_tokens=100)
    counts = [len(sh.micro_batches) for sh in shards]
    assert counts == [2, 2]  # the long group needs two forwards; the short one fits one, plus a filler
    real = [[len([s for s in mb if s.weight]) for mb in sh.micro_batches] for sh in shards]
    assert sorted(map(sorted, real)) == [[0, 3], [1, 1]]
    assert all(sh.total_tokens == 35 and sh.total_seqs == 5 for sh in shards)
