"""group_advantages: hand-worked numbers, NaN handling, groups of one, zero variance (continuous rewards)."""
from __future__ import annotations

import numpy as np
import pytest

from medgrpo_ray.grpo.advantages import group_advantages

NAN = float("nan")


def test_hand_worked_group_of_eight():
    """[0.2, 0.4, 0.4, 0.4, 0.5, 0.5, 0.7, 0.9]: mean = 4.0 / 8 = 0.5; squared deviations
    0.09, 0.01 x3, 0 x2, 0.04, 0.16 sum to 0.32; population variance 0.32 / 8 = 0.04, std 0.2.
    With eps = 0: A = (-0.3, -0.1, -0.1, -0.1, 0, 0, 0.2, 0.4) / 0.2 = (-1.5, -0.5, -0.5, -0.5, 0, 0, 1, 2)."""
    r = np.array([0.2, 0.4, 0.4, 0.4, 0.5, 0.5, 0.7, 0.9])
    res = group_advantages(r, np.zeros(8, dtype=int), eps=0.0)
    np.testing.assert_allclose(res.advantages, [-1.5, -0.5, -0.5, -0.5, 0, 0, 1, 2], atol=1e-12)
    np.testing.assert_allclose(res.group_mean, 0.5)
    np.testing.assert_allclose(res.group_std, 0.2)
    assert res.valid.all() and res.num_valid == 8 and res.num_groups == 1


def test_eps_in_denominator():
    """[0.2, 0.8]: mean 0.5, std 0.3; eps = 0.1 -> A = -+0.3 / 0.4 = -+0.75."""
    res = group_advantages(np.array([0.2, 0.8]), np.array([7, 7]), eps=0.1)
    np.testing.assert_allclose(res.advantages, [-0.75, 0.75])


def test_docstring_example():
    r = np.array([0.2, 0.8, 0.5, NAN, 0.37, 0.37, 0.9])
    res = group_advantages(r, np.array([0, 0, 1, 1, 2, 2, 3]), eps=1e-6)
    a = 0.3 / (0.3 + 1e-6)  # 0.99999667
    np.testing.assert_allclose(res.advantages, [-a, a, 0, 0, 0, 0, 0], atol=1e-12)
    assert res.valid.tolist() == [True, True, False, False, False, False, False]
    assert res.zero_variance.tolist() == [False, False, False, False, True, True, False]
    assert res.zero_variance_groups.tolist() == [2]
    assert res.num_groups == 4 and res.num_valid == 2 and res.num_no_reward == 1
    assert res.num_small_groups == 2  # group 1 (one present reward) and group 3 (a group of one)
    np.testing.assert_allclose(res.group_mean[2:4], [0.5, 0.5])  # group 1's mean is its one reward
    np.testing.assert_allclose(res.group_std[2:4], [0.0, 0.0])


def test_group_of_one():
    res = group_advantages(np.array([0.9]), np.array([0]))
    assert res.advantages.tolist() == [0.0] and res.valid.tolist() == [False]
    assert res.num_small_groups == 1 and res.zero_variance_groups.size == 0
    assert res.zero_variance.tolist() == [False]  # too small, not "zero variance"


def test_all_nan():
    res = group_advantages(np.array([NAN, NAN, NAN]), np.array([0, 0, 0]))
    assert res.advantages.tolist() == [0.0, 0.0, 0.0]
    assert not res.valid.any() and res.num_no_reward == 3 and res.num_valid == 0
    assert np.isnan(res.group_mean).all() and np.isnan(res.group_std).all()
    assert not np.isnan(res.advantages).any()


def test_zero_variance_continuous_rewards():
    """Four rewards of 0.37: not 0 or 1 and not compared to a mean; variance 0 <= 1e-8 -> dropped."""
    res = group_advantages(np.full(4, 0.37), np.zeros(4, dtype=int))
    assert not res.valid.any() and res.zero_variance.all()
    assert res.zero_variance_groups.tolist() == [0]
    assert res.advantages.tolist() == [0.0] * 4
    np.testing.assert_allclose(res.group_mean, 0.37)


def test_near_zero_variance_uses_threshold():
    """[0.5, 0.5 + 1e-5]: variance = (5e-6)^2 = 2.5e-11 <= 1e-8 -> zero-variance (eps alone would give A = -+0.83).
    [0.5, 0.5 + 1e-3]: variance = (5e-4)^2 = 2.5e-7 > 1e-8 -> valid, A = -+5e-4 / (5e-4 + 1e-6) = -+0.998004."""
    tiny = group_advantages(np.array([0.5, 0.5 + 1e-5]), np.array([0, 0]))
    assert not tiny.valid.any() and tiny.zero_variance_groups.tolist() == [0]
    small = group_advantages(np.array([0.5, 0.5 + 1e-3]), np.array([0, 0]))
    assert small.valid.all()
    np.testing.assert_allclose(small.advantages, [-5e-4 / (5e-4 + 1e-6), 5e-4 / (5e-4 + 1e-6)], rtol=1e-6)


def test_nan_members_excluded_from_stats():
    """[0.1, NaN, 0.5]: stats over {0.1, 0.5}: mean 0.3, std 0.2; eps = 0 -> A = (-1, 0, +1); NaN member invalid."""
    res = group_advantages(np.array([0.1, NAN, 0.5]), np.array([3, 3, 3]), eps=0.0)
    np.testing.assert_allclose(res.advantages, [-1.0, 0.0, 1.0])
    assert res.valid.tolist() == [True, False, True]
    np.testing.assert_allclose(res.group_mean, 0.3)
    np.testing.assert_allclose(res.group_std, 0.2)


def test_groups_independent_and_interleaved():
    """Group 5 = {0.0, 1.0} (mean 0.5, std 0.5 -> A = -+1), group 2 = {0.2, 0.6} (mean 0.4, std 0.2 -> A = -+1),
    interleaved; changing group 2's rewards leaves group 5 untouched."""
    g = np.array([5, 2, 5, 2])
    res = group_advantages(np.array([0.0, 0.2, 1.0, 0.6]), g, eps=0.0)
    np.testing.assert_allclose(res.advantages, [-1, -1, 1, 1])
    np.testing.assert_allclose(res.group_mean, [0.5, 0.4, 0.5, 0.4])
    np.testing.assert_allclose(res.group_std, [0.5, 0.2, 0.5, 0.2])
    other = group_advantages(np.array([0.0, 0.9, 1.0, 0.9]), g, eps=0.0)
    np.testing.assert_allclose(other.advantages[[0, 2]], [-1, 1])
    assert other.zero_variance_groups.tolist() == [2] and other.valid.tolist() == [True, False, True, False]


def test_empty_batch():
    res = group_advantages(np.array([], dtype=np.float64), np.array([], dtype=np.int64))
    assert res.advantages.shape == (0,) and res.num_groups == 0 and res.num_valid == 0


@pytest.mark.parametrize(
    "rewards, groups, kwargs, name",
    [
        (np.zeros((2, 2)), np.zeros((2, 2), dtype=int), {}, "rewards"),
        (np.zeros(3), np.zeros(2, dtype=int), {}, "group_ids"),
        (np.zeros(2), np.array([0.0, 1.0]), {}, "group_ids"),
        (np.array([0.0, np.inf]), np.zeros(2, dtype=int), {}, "rewards"),
        (np.zeros(2), np.zeros(2, dtype=int), {"eps": -1.0}, "eps"),
        (np.zeros(2), np.zeros(2, dtype=int), {"zero_variance_threshold": -1.0}, "zero_variance_threshold"),
    ],
)
def test_errors_name_the_argument(rewards, groups, kwargs, name):
    with pytest.raises(ValueError, match=name):
        group_advantages(rewards, groups, **kwargs)


def test_without_std_division_the_group_spread_sets_the_size():
    # Same ranks in both groups, spreads 10x apart: with the std division both get +-1; without it, +-0.3 / +-0.03.
    r = np.array([0.2, 0.8, 0.02, 0.08])
    g = np.array([0, 0, 1, 1])
    scaled = group_advantages(r, g, eps=0.0)
    np.testing.assert_allclose(scaled.advantages, [-1, 1, -1, 1])
    raw = group_advantages(r, g, eps=0.0, scale_by_std=False)
    np.testing.assert_allclose(raw.advantages, [-0.3, 0.3, -0.03, 0.03])
    assert raw.valid.all() and raw.num_valid == 4
