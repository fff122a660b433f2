"""grpo_loss and kl_penalty: hand-worked values, clip sides, accumulation equivalence, masked tokens inert."""
from __future__ import annotations

import math

import pytest
import torch

from medgrpo_ray.grpo.loss import grpo_loss, kl_penalty

LN2 = math.log(2.0)
BASE = dict(clip_low=0.2, clip_high=0.28, kl_coef=0.0, kl_estimator="k3", loss_agg="token_mean")


def lengths_mask(lengths, L):
    return torch.arange(L).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)


def test_ratio_one_token_mean_is_minus_token_weighted_mean_advantage():
    """A = [1, -2], lengths [3, 1], ratio 1: objective per token = A; loss = -(3*1 + 1*(-2)) / 4 = -0.25.
    d loss / d logp = -A / 4 per token: -0.25 on sequence 0's tokens, +0.5 on sequence 1's."""
    logp = torch.full((2, 3), -1.0, requires_grad=True)
    mask = lengths_mask([3, 1], 3)
    loss, m = grpo_loss(logp, logp.detach().clone(), torch.tensor([1.0, -2.0]), mask, **BASE)
    assert loss.item() == pytest.approx(-0.25)
    assert m["loss"] == pytest.approx(-0.25) and m["pg_loss"] == pytest.approx(-0.25)
    assert m["ratio_mean"] == pytest.approx(1.0) and m["ratio_max"] == pytest.approx(1.0)
    assert m["clip_frac"] == 0.0 and m["kl"] == 0.0 and m["adv_mean"] == pytest.approx(-0.5)
    loss.backward()
    expected = torch.tensor([[-0.25, -0.25, -0.25], [0.5, 0.0, 0.0]])
    torch.testing.assert_close(logp.grad, expected)


def test_ratio_one_seq_mean():
    """Same batch, seq_mean: sequence means are -1 and +2; loss = (-1 + 2) / 2 = 0.5.
    Gradient: -A / (n_b * 2): sequence 0: -1 / 6 per token; sequence 1: 2 / 2 = 1.0."""
    logp = torch.full((2, 3), -1.0, requires_grad=True)
    loss, _ = grpo_loss(logp, logp.detach().clone(), torch.tensor([1.0, -2.0]), lengths_mask([3, 1], 3),
                        **{**BASE, "loss_agg": "seq_mean"})
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1 / 6, -1 / 6, -1 / 6], [1.0, 0.0, 0.0]]))


def test_clipping_engages_on_the_right_side():
    """One token per sequence, clip_low 0.2 (ratio >= 0.8), clip_high 0.28 (ratio <= 1.28):
      A=+1, r=1.5:  min(1.5, 1.28) = 1.28   clipped -> no gradient
      A=+1, r=0.5:  min(0.5, 0.8)  = 0.5    unclipped (pessimistic side) -> grad -r*A/4 = -0.125
      A=-1, r=0.5:  min(-0.5, -0.8) = -0.8  clipped -> no gradient
      A=-1, r=1.5:  min(-1.5, -1.28) = -1.5 unclipped -> grad -r*A/4 = +0.375
    loss = -(1.28 + 0.5 - 0.8 - 1.5) / 4 = 0.13; clip_frac 2/4; ratio_mean 1.0; ratio_max 1.5; adv_mean 0."""
    r = torch.tensor([1.5, 0.5, 0.5, 1.5])
    old = torch.full((4, 1), -2.0)
    logp = (old + torch.log(r).unsqueeze(1)).requires_grad_(True)
    loss, m = grpo_loss(logp, old, torch.tensor([1.0, 1.0, -1.0, -1.0]), torch.ones(4, 1, dtype=torch.bool), **BASE)
    assert loss.item() == pytest.approx(0.13, abs=1e-6)
    assert m["clip_frac"] == pytest.approx(0.5)
    assert m["ratio_mean"] == pytest.approx(1.0) and m["ratio_max"] == pytest.approx(1.5) and m["adv_mean"] == 0.0
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0], [-0.125], [0.0], [0.375]]))


def test_clip_is_asymmetric():
    """clip_high 0.28 lets r = 1.25 through for A > 0 (a symmetric 0.2 clip would cut it at 1.2);
    clip_low 0.2 lets r = 0.85 through for A < 0 but cuts r = 0.75 at 0.8.
    loss = -(1.25*1 + 0.85*(-1) + 0.8*(-1)) / 3 = -(-0.4) / 3 = 0.133333; clip_frac = 1/3."""
    r = torch.tensor([1.25, 0.85, 0.75])
    logp = torch.log(r).unsqueeze(1)
    loss, m = grpo_loss(logp, torch.zeros(3, 1), torch.tensor([1.0, -1.0, -1.0]), torch.ones(3, 1, dtype=torch.bool),
                        **BASE)
    assert loss.item() == pytest.approx(0.4 / 3, abs=1e-6)
    assert m["clip_frac"] == pytest.approx(1 / 3)


def test_kl_estimators_hand_values():
    """d = logp - ref = (ln 2, -ln 2, 0):
    k1 = d = (0.693147, -0.693147, 0); k2 = d^2 / 2 = (0.240227, 0.240227, 0);
    k3 = exp(-d) + d - 1 = (0.5 + 0.693147 - 1, 2 - 0.693147 - 1, 0) = (0.193147, 0.306853, 0)."""
    logp = torch.tensor([[LN2, -LN2, 0.0]]) - 1.0
    ref = torch.full((1, 3), -1.0)
    torch.testing.assert_close(kl_penalty(logp, ref, "k1"), torch.tensor([[0.693147, -0.693147, 0.0]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(kl_penalty(logp, ref, "k2"), torch.tensor([[0.240227, 0.240227, 0.0]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(kl_penalty(logp, ref, "k3"), torch.tensor([[0.193147, 0.306853, 0.0]]), atol=1e-6, rtol=0)


def test_k3_non_negative():
    """exp(-d) + d - 1 >= 0 for all d (tangent line of exp at 0); checked on d in [-8, 8]."""
    d = torch.linspace(-8.0, 8.0, 4001, dtype=torch.float64)
    assert (kl_penalty(d.unsqueeze(0), torch.zeros(1, 4001, dtype=torch.float64), "k3") >= 0).all()


def test_kl_term_in_loss():
    """ratio 1, A = 0, d = ln 2 on lengths [2, 1], kl_coef 0.1, k3: loss = 0.1 * 0.193147 = 0.0193147 (the mean of a
    constant); kl metric 0.193147. Gradient per token: 0.1 * (1 - exp(-d)) / 3 = 0.1 * 0.5 / 3 = 0.0166667."""
    logp = torch.full((2, 2), -1.0, requires_grad=True)
    ref = torch.full((2, 2), -1.0 - LN2)
    mask = lengths_mask([2, 1], 2)
    loss, m = grpo_loss(logp, logp.detach().clone(), torch.zeros(2), mask, ref_logp=ref, **{**BASE, "kl_coef": 0.1})
    assert loss.item() == pytest.approx(0.0193147, abs=1e-7)
    assert m["kl"] == pytest.approx(0.193147, abs=1e-6) and m["pg_loss"] == 0.0
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[1 / 60, 1 / 60], [1 / 60, 0.0]]))
    # kl_coef 0 skips the reference even when given.
    _, m0 = grpo_loss(logp, logp.detach().clone(), torch.zeros(2), mask, ref_logp=ref, **BASE)
    assert m0["kl"] == 0.0


def random_batch(seed, B=4, L=6, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(B, L, generator=g, dtype=dtype) * 3
    old = logp + 0.3 * torch.randn(B, L, generator=g, dtype=dtype)  # ratios well outside the clip range too
    ref = logp + 0.2 * torch.randn(B, L, generator=g, dtype=dtype)
    adv = torch.randn(B, generator=g, dtype=dtype)
    mask = lengths_mask([6, 2, 0, 4], L)  # one empty sequence (a dropped sample)
    return logp, old, ref, adv, mask


@pytest.mark.parametrize("loss_agg", ["token_mean", "seq_mean"])
def test_gradient_accumulation_equals_one_big_batch(loss_agg):
    logp, old, ref, adv, mask = random_batch(0)
    kw = {**BASE, "kl_coef": 0.05, "loss_agg": loss_agg}
    big = logp.clone().requires_grad_(True)
    loss_big, _ = grpo_loss(big, old, adv, mask, ref_logp=ref, **kw)
    loss_big.backward()

    acc = logp.clone().requires_grad_(True)
    total_tokens = float(mask.sum())  # 12
    total_seqs = float(mask.any(dim=1).sum())  # 3
    loss_sum = 0.0
    for sl in (slice(0, 2), slice(2, 4)):
        part, _ = grpo_loss(acc[sl], old[sl], adv[sl], mask[sl], ref_logp=ref[sl], total_tokens=total_tokens,
                            total_seqs=total_seqs, **kw)
        part.backward()
        loss_sum += part.item()
    assert loss_sum == pytest.approx(loss_big.item(), abs=1e-9)
    torch.testing.assert_close(acc.grad, big.grad, atol=1e-6, rtol=0)
    assert big.grad.abs().sum() > 0


def test_masked_tokens_contribute_nothing():
    logp, old, ref, adv, mask = random_batch(1)
    kw = {**BASE, "kl_coef": 0.05}
    a = logp.clone().requires_grad_(True)
    loss_a, m_a = grpo_loss(a, old, adv, mask, ref_logp=ref, **kw)
    loss_a.backward()

    junk = torch.tensor([1e4, -float("inf"), float("nan")], dtype=logp.dtype)
    fill = junk[torch.arange(mask.numel()) % 3].reshape(mask.shape)
    b = torch.where(mask, logp, fill).requires_grad_(True)
    loss_b, m_b = grpo_loss(b, torch.where(mask, old, fill.flip(0)), adv, mask, ref_logp=torch.where(mask, ref, -fill),
                            **kw)
    loss_b.backward()
    assert loss_b.item() == loss_a.item() and m_a == m_b
    torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=0)
    assert (b.grad[~mask] == 0).all()


def test_empty_mask_gives_zero_loss():
    logp = torch.zeros(2, 3, requires_grad=True)
    loss, m = grpo_loss(logp, logp.detach(), torch.ones(2), torch.zeros(2, 3, dtype=torch.bool), **BASE)
    assert loss.item() == 0.0 and m["ratio_max"] == 0.0 and m["adv_mean"] == 0.0
    loss.backward()
    assert (logp.grad == 0).all()


@pytest.mark.parametrize(
    "override, name",
    [
        ({"clip_low": 1.0}, "clip_low"),
        ({"clip_high": -0.1}, "clip_high"),
        ({"kl_coef": -1.0}, "kl_coef"),
        ({"kl_estimator": "k4"}, "kl_estimator"),
        ({"loss_agg": "sum"}, "loss_agg"),
        ({"total_tokens": 0}, "total_tokens"),
        ({"total_seqs": -1}, "total_seqs"),
        ({"ref_logp": torch.zeros(2, 4)}, "ref_logp"),
        ({"rollout_logp": torch.zeros(2, 4)}, "rollout_logp"),
        ({"rollout_logp": torch.zeros(2, 3), "is_cap": 0.0}, "is_cap"),
    ],
)
def test_errors_name_the_argument(override, name):
    logp = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=name):
        grpo_loss(logp, logp, torch.zeros(2), torch.ones(2, 3, dtype=torch.bool), **{**BASE, **override})


def test_shape_errors_name_the_argument():
    logp = torch.zeros(2, 3)
    ok = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="old_logp"):
        grpo_loss(logp, torch.zeros(2, 2), torch.zeros(2), ok, **BASE)
    with pytest.raises(ValueError, match="mask"):
        grpo_loss(logp, logp, torch.zeros(2), ok.float(), **BASE)
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(logp, logp, torch.zeros(3), ok, **BASE)
    with pytest.raises(ValueError, match="kl_estimator"):
        kl_penalty(logp, logp, "k9")


def test_truncated_importance_weights_between_rollout_and_learner():
    """Rollout ahead: token weights min(exp(old - rollout), cap), detached. Sequence 0 (A = 1, 2 tokens): rollout
    log-probs old - ln 2 (ratio 2, under the cap 3) and old - ln 4 (ratio 4, truncated to 3); sequence 1 (A = -1,
    1 token): unknown (NaN) -> weight 1; its masked padding holds NaN and inf and changes nothing.
    Token-mean loss = -(2 * 1 + 3 * 1 + 1 * (-1)) / 3 = -4/3; d loss / d logp = -w * A / 3 per token."""
    logp = torch.full((2, 2), -1.0, requires_grad=True)
    mask = lengths_mask([2, 1], 2)
    rollout = torch.tensor([[-1.0 - LN2, -1.0 - 2 * LN2], [float("nan"), float("inf")]])
    loss, m = grpo_loss(logp, logp.detach().clone(), torch.tensor([1.0, -1.0]), mask, **BASE,
                        rollout_logp=rollout, is_cap=3.0)
    assert loss.item() == pytest.approx(-4.0 / 3.0)
    assert m["is_ratio_mean"] == pytest.approx((2.0 + 4.0 + 1.0) / 3.0)  # untruncated ratios
    assert m["is_ratio_max"] == pytest.approx(4.0) and m["is_ratio_min"] == pytest.approx(1.0)
    assert m["is_truncated_frac"] == pytest.approx(1.0 / 3.0)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-2.0 / 3.0, -1.0], [1.0 / 3.0, 0.0]]))


def test_equal_rollout_and_learner_logprobs_give_the_plain_loss():
    """Same policy on both sides (synchronous rollout): every weight is 1, loss and gradient are the plain ones."""
    logp = torch.tensor([[-0.5, -2.0, -1.0], [-0.3, -0.7, -4.0]], requires_grad=True)
    plain = logp.detach().clone().requires_grad_(True)
    mask = lengths_mask([3, 2], 3)
    adv = torch.tensor([0.7, -1.3])
    a, ma = grpo_loss(logp, logp.detach().clone(), adv, mask, **BASE, rollout_logp=logp.detach().clone())
    b, _ = grpo_loss(plain, plain.detach().clone(), adv, mask, **BASE)
    a.backward(), b.backward()
    assert a.item() == pytest.approx(b.item()) and ma["is_truncated_frac"] == 0.0
    assert ma["is_ratio_min"] == pytest.approx(1.0) and ma["is_ratio_max"] == pytest.approx(1.0)
    torch.testing.assert_close(logp.grad, plain.grad)
