"""BalancedSampler: balance over strata, per-stratum epochs, exact resume from a JSON state."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from medgrpo_ray.data.sampler import BalancedSampler

# 3 strata of unequal sizes (5, 2, 11 records), interleaved in record order; keys are (dataset, task) tuples.
A, B, C = ("CholecT50", "tal"), ("AVOS", "stg"), ("JIGSAWS", "skill_assessment")
STRATA = [A, C, B, C, A, C, C, A, C, B, C, C, A, C, C, C, A, C]
SIZES = {A: 5, B: 2, C: 11}


def test_fixture_sizes():
    assert Counter(STRATA) == SIZES and len(STRATA) == 18


def test_exact_resume_after_17_of_50_batches():
    """n = 4 is not a multiple of 3 strata, so saves fall mid-cycle and mid-epoch."""
    full = BalancedSampler(STRATA, seed=123)
    reference = [full.next_batch(4) for _ in range(50)]

    first = BalancedSampler(STRATA, seed=123)
    head = [first.next_batch(4) for _ in range(17)]
    state = json.loads(json.dumps(first.state_dict()))  # must survive JSON
    assert state["batches_drawn"] == 17

    resumed = BalancedSampler(STRATA, seed=123)
    resumed.load_state_dict(state)
    tail = [resumed.next_batch(4) for _ in range(33)]
    assert head + tail == reference
    assert resumed.batches_drawn == 50 == full.batches_drawn
    assert resumed.state_dict() == full.state_dict()


def test_resume_with_varying_batch_sizes():
    sizes = [1, 2, 3, 5, 7, 11, 4, 4, 6, 9]
    full = BalancedSampler(STRATA, seed=5)
    reference = [full.next_batch(n) for n in sizes]
    part = BalancedSampler(STRATA, seed=5)
    head = [part.next_batch(n) for n in sizes[:6]]
    resumed = BalancedSampler(STRATA, seed=5)
    resumed.load_state_dict(part.state_dict())
    assert head + [resumed.next_batch(n) for n in sizes[6:]] == reference


def test_balance_over_strata():
    """After every batch, each stratum's count is within 1 of draws / 3 (round-robin per cycle of 3 draws):
    e.g. after 200 batches of 5 = 1000 draws, counts are 333 or 334 (1000 = 3 * 333 + 1)."""
    sampler = BalancedSampler(STRATA, seed=0)
    counts = Counter()
    for step in range(1, 201):
        counts.update(STRATA[i] for i in sampler.next_batch(5))
        draws = 5 * step
        for key in SIZES:
            assert abs(counts[key] - draws / 3) <= 1, (step, counts)
    assert sorted(counts.values()) == [333, 333, 334]


def test_each_stratum_epoch_is_a_permutation():
    """Stratum B has 2 records, A 5: B's first 2 draws are both its records, A's first 5 draws all of A's;
    over 30 draws (10 cycles) each of B's records appears 10 / 2 = 5 times and each of A's 10 / 5 = 2 times."""
    sampler = BalancedSampler(STRATA, seed=9)
    stream = sampler.next_batch(30)
    by = {k: [i for i in stream if STRATA[i] == k] for k in SIZES}
    assert sorted(by[B][:2]) == [i for i, k in enumerate(STRATA) if k == B]
    assert sorted(by[A][:5]) == [i for i, k in enumerate(STRATA) if k == A]
    assert set(Counter(by[B]).values()) == {5} and set(Counter(by[A]).values()) == {2}


def test_epochs_are_reshuffled_and_cycles_reshuffled():
    """A stratum of 11 records gives different orders in different epochs; the order of the 3 strata changes
    between cycles (over 20 cycles, more than one of the 3! = 6 orders occurs)."""
    sampler = BalancedSampler(STRATA, seed=1)
    stream = sampler.next_batch(66)  # 22 cycles: C's epochs 0 and 1 complete
    c_draws = [i for i in stream if STRATA[i] == C]
    assert len(c_draws) == 22 and sorted(c_draws[:11]) == sorted(c_draws[11:]) and c_draws[:11] != c_draws[11:]
    orders = {tuple(STRATA[i] for i in stream[3 * k: 3 * k + 3]) for k in range(20)}
    assert len(orders) > 1 and all(len(set(o)) == 3 for o in orders)


def test_single_stratum_is_plain_epoch_shuffling():
    sampler = BalancedSampler(["x"] * 3, seed=0)
    assert sorted(sampler.next_batch(3)) == [0, 1, 2]


def test_seed_determines_stream():
    a = BalancedSampler(STRATA, seed=7).next_batch(40)
    assert a == BalancedSampler(STRATA, seed=7).next_batch(40)
    assert a != BalancedSampler(STRATA, seed=8).next_batch(40)


def test_small_state_dict():
    s = BalancedSampler(STRATA, seed=3)
    s.next_batch(4)
    d = s.state_dict()
    # 4 draws = one full cycle (one each) + 1 draw of cycle 1.
    assert d["cycle"] == 1 and d["cycle_pos"] == 1 and sum(d["cursors"]) == 4 and d["epochs"] == [0, 0, 0]
    assert d["stratum_sizes"] == [5, 11, 2]  # strata numbered in order of first appearance: A, C, B


def test_load_rejects_other_data_or_seed():
    d = BalancedSampler(STRATA, seed=3).state_dict()
    with pytest.raises(ValueError, match="stratum_sizes"):
        BalancedSampler(STRATA + [A], seed=3).load_state_dict(d)
    with pytest.raises(ValueError, match="seed"):
        BalancedSampler(STRATA, seed=4).load_state_dict(d)


def test_argument_errors():
    with pytest.raises(ValueError, match="strata"):
        BalancedSampler([], seed=0)
    with pytest.raises(ValueError, match="seed"):
        BalancedSampler(STRATA, seed=-1)
    with pytest.raises(ValueError, match="n must"):
        BalancedSampler(STRATA, seed=0).next_batch(0)


def test_excluded_records_are_never_drawn_and_a_fully_excluded_stratum_is_skipped():
    s = BalancedSampler(STRATA, seed=3)
    b_records = [i for i, k in enumerate(STRATA) if k == B]
    s.exclude([0] + b_records)  # one record of A, every record of B
    drawn = [i for _ in range(20) for i in s.next_batch(6)]
    assert 0 not in drawn and not set(b_records) & set(drawn)
    counts = Counter(STRATA[i] for i in drawn)
    assert set(counts) == {A, C} and abs(counts[A] - counts[C]) <= 1  # still balanced over what is left
    # The other four records of A keep coming (an epoch of A is now 4 draws long).
    assert {i for i in drawn if STRATA[i] == A} == {i for i, k in enumerate(STRATA) if k == A} - {0}


def test_exclusion_is_part_of_the_state_and_resume_is_exact():
    a = BalancedSampler(STRATA, seed=1)
    a.next_batch(5)
    a.exclude([1, 3])
    state = json.loads(json.dumps(a.state_dict()))
    b = BalancedSampler(STRATA, seed=1)
    b.load_state_dict(state)
    assert b.excluded == {1, 3}
    assert [a.next_batch(7) for _ in range(10)] == [b.next_batch(7) for _ in range(10)]


def test_everything_excluded_raises_a_clear_error():
    s = BalancedSampler(STRATA, seed=0)
    s.exclude(range(len(STRATA)))
    with pytest.raises(RuntimeError, match="quarantined"):
        s.next_batch(1)
    with pytest.raises(ValueError, match="out of range"):
        s.exclude([len(STRATA)])
