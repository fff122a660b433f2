"""Group-relative advantages: A_i = (r_i - mean_g) / (std_g + eps) over the valid samples of each prompt's group
(GRPO), or A_i = r_i - mean_g with `scale_by_std=False` (no per-group std division, as in Dr. GRPO: a group's
reward spread then sets the size of its gradient).

A group is the G samples of one prompt. Statistics use only the members with a reward (NaN = "no reward"), and
the population standard deviation (ddof=0), as in GRPO. A member is *valid* (it trains on a policy-gradient
signal) only when its reward is present, its group has at least two present rewards, and the group's reward
variance is above `zero_variance_threshold`. The zero-variance test is on the variance of the rewards, never on
"all rewards equal the mean/0/1": normalized rewards are continuous, so a group of 0.37s has no signal either.
Invalid members get advantage 0.0. Pure numpy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AdvantageResult:
    """Advantages and the bookkeeping the driver logs and filters with; per-sample arrays are (B,)."""

    advantages: np.ndarray  # (B,) float64, 0.0 where not valid
    valid: np.ndarray  # (B,) bool: reward present, group has >= 2 rewards, group variance > threshold
    group_mean: np.ndarray  # (B,) float64 mean of the sample's group over present rewards (NaN if none)
    group_std: np.ndarray  # (B,) float64 population std (ddof=0) of that group (NaN if no rewards)
    zero_variance: np.ndarray  # (B,) bool: reward present and the group (>= 2 rewards) has variance <= threshold
    zero_variance_groups: np.ndarray  # (K,) int64 ids of groups with >= 2 rewards and variance <= threshold
    num_groups: int  # distinct group ids
    num_valid: int  # samples with valid = True
    num_no_reward: int  # samples whose reward is NaN
    num_small_groups: int  # groups with fewer than 2 present rewards


def group_advantages(
    rewards: np.ndarray,
    group_ids: np.ndarray,
    eps: float = 1e-6,
    zero_variance_threshold: float = 1e-8,
    scale_by_std: bool = True,
) -> AdvantageResult:
    """rewards (B,) float (NaN = no reward), group_ids (B,) int -> AdvantageResult with (B,) advantages.

    Example (eps = 1e-6):
        rewards   = [0.2, 0.8, 0.5, nan, 0.37, 0.37, 0.9]
        group_ids = [0,   0,   1,   1,   2,    2,    3  ]
        group 0: mean 0.5, std 0.3 -> advantages -0.3 / (0.3 + 1e-6) = -0.9999967, +0.9999967, valid
        group 1: one present reward -> invalid (std 0.0, mean 0.5); the NaN member is invalid too
        group 2: variance 0 <= 1e-8 -> invalid, zero_variance_groups = [2]
        group 3: a group of one -> invalid
        advantages = [-0.9999967, 0.9999967, 0, 0, 0, 0, 0]; valid = [T, T, F, F, F, F, F]
    """
    r = np.asarray(rewards, dtype=np.float64)
    g = np.asarray(group_ids)
    if r.ndim != 1:
        raise ValueError(f"rewards must be 1-D (B,), got shape {r.shape}")
    if g.shape != r.shape:
        raise ValueError(f"group_ids must have the shape of rewards {r.shape}, got {g.shape}")
    if g.size and not np.issubdtype(g.dtype, np.integer):
        raise ValueError(f"group_ids must be integers, got dtype {g.dtype}")
    if np.isinf(r).any():
        raise ValueError("rewards contain +-inf; use NaN for 'no reward' and finite values otherwise")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if not zero_variance_threshold >= 0:
        raise ValueError(f"zero_variance_threshold must be >= 0, got {zero_variance_threshold}")

    ids, inverse = np.unique(g.astype(np.int64), return_inverse=True)
    inverse = inverse.reshape(-1)
    present = ~np.isnan(r)
    filled = np.where(present, r, 0.0)
    k = len(ids)
    counts = np.bincount(inverse, weights=present.astype(np.float64), minlength=k)
    sums = np.bincount(inverse, weights=filled, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_g = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    dev = np.where(present, r - mean_g[inverse], 0.0)  # two-pass variance: exact 0 for equal rewards
    var_g = np.where(counts > 0, np.bincount(inverse, weights=dev * dev, minlength=k) / np.maximum(counts, 1), np.nan)
    std_g = np.sqrt(var_g)

    big_enough = counts >= 2
    zero_var_g = big_enough & (var_g <= zero_variance_threshold)
    ok_g = big_enough & ~zero_var_g
    valid = present & ok_g[inverse]
    with np.errstate(invalid="ignore", divide="ignore"):
        adv = np.where(valid, dev / (std_g[inverse] + eps) if scale_by_std else dev, 0.0)

    return AdvantageResult(
        advantages=adv.astype(np.float64),
        valid=valid,
        group_mean=mean_g[inverse],
        group_std=std_g[inverse],
        zero_variance=present & zero_var_g[inverse],
        zero_variance_groups=ids[zero_var_g],
        num_groups=int(k),
        num_valid=int(valid.sum()),
        num_no_reward=int((~present).sum()),
        num_small_groups=int((~big_enough).sum()),
    )
