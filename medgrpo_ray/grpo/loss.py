"""The GRPO policy loss: PPO-clip with separate low/high clip (DAPO), a KL penalty to the reference, and
token-mean or sequence-mean aggregation that stays exact under gradient accumulation.

Per token t of sequence b (mask True):
    ratio   = exp(logp - old_logp)
    pg_obj  = min(ratio * A_b, clip(ratio, 1 - clip_low, 1 + clip_high) * A_b)
    loss_t  = -pg_obj + kl_coef * kl_t          (kl_t from `kl_penalty`, only with ref_logp and kl_coef > 0)
With rollout log-probs (rollout one step ahead: the samples came from an older policy than the learner's), each
token's policy-gradient term is weighted by a truncated importance ratio between learner and rollout policies:
    is_w_t  = min(exp(old_logp - rollout_logp), is_cap)      (detached; 1 where no rollout log-prob is known)
    loss_t  = -is_w_t * pg_obj + kl_coef * kl_t
Aggregation:
    token_mean: sum_{b,t} mask * loss_t / total_tokens
    seq_mean:   sum_b [ sum_t mask * loss_t / n_b ] / total_seqs      (n_b = tokens of sequence b; n_b = 0 skipped)
Pass the whole step's `total_tokens` / `total_seqs` to every micro-batch: the micro-batch losses then add up to
the big-batch loss, so accumulated gradients equal one big batch's. Masked positions never reach the arithmetic
(they are replaced by 0 first), so padding values, even inf/NaN, change neither the loss nor the gradients.
"""
from __future__ import annotations

from typing import Literal

import torch

KLEstimator = Literal["k1", "k2", "k3"]
LossAgg = Literal["token_mean", "seq_mean"]
KL_ESTIMATORS = ("k1", "k2", "k3")
LOSS_AGGS = ("token_mean", "seq_mean")


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: KLEstimator) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from samples of the policy: (B, L), (B, L) -> (B, L).

    With d = logp - ref_logp:
        k1 = d                          unbiased, can be negative
        k2 = 0.5 * d^2                  biased, non-negative
        k3 = exp(-d) - (-d) - 1         Schulman's unbiased, non-negative estimator (ratio - 1 - log ratio)
    Example: d = log 2 -> k1 = 0.693147, k2 = 0.240227, k3 = 0.5 + 0.693147 - 1 = 0.193147;
             d = -log 2 -> k3 = 2 - 0.693147 - 1 = 0.306853.
    """
    if logp.shape != ref_logp.shape:
        raise ValueError(f"ref_logp shape {tuple(ref_logp.shape)} differs from logp shape {tuple(logp.shape)}")
    d = logp - ref_logp
    if estimator == "k1":
        return d
    if estimator == "k2":
        return 0.5 * d * d
    if estimator == "k3":
        return torch.exp(-d) + d - 1.0
    raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")


def _aggregate(per_token: torch.Tensor, maskf: torch.Tensor, loss_agg: str, total_tokens: float | None,
               total_seqs: float | None) -> torch.Tensor:
    """(B, L) per-token values -> scalar, by `loss_agg` with the step-wide denominators (see module doc)."""
    if loss_agg == "token_mean":
        denom = max(float(maskf.sum().item()), 1.0) if total_tokens is None else float(total_tokens)
        return (per_token * maskf).sum() / denom
    lengths = maskf.sum(dim=1)
    seq_means = (per_token * maskf).sum(dim=1) / lengths.clamp(min=1.0)
    denom = max(float((lengths > 0).sum().item()), 1.0) if total_seqs is None else float(total_seqs)
    return seq_means.sum() / denom


def _masked_mean(x: torch.Tensor, maskf: torch.Tensor, n_tokens: float) -> float:
    return float((x * maskf).sum().item() / n_tokens) if n_tokens > 0 else 0.0


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    ref_logp: torch.Tensor | None = None,
    clip_low: float,
    clip_high: float,
    kl_coef: float,
    kl_estimator: KLEstimator,
    loss_agg: LossAgg,
    total_tokens: float | None = None,
    total_seqs: float | None = None,
    rollout_logp: torch.Tensor | None = None,
    is_cap: float = 2.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped GRPO loss of one micro-batch -> (scalar loss to backward, detached float metrics).

    logp (B, L) current policy log-probs (with grad, fp32 expected); old_logp (B, L) log-probs of the policy
    that sampled (rollout or learner before the update); advantages (B,) one per sequence; mask (B, L) bool
    completion tokens; ref_logp (B, L) reference log-probs or None. total_tokens / total_seqs: the whole step's
    token / sequence counts (default: this micro-batch's, i.e. no accumulation). rollout_logp (B, L): the
    rollout engine's log-probs of the same tokens (NaN where unknown), for the truncated IS weight (cap `is_cap`).

    Metrics: loss, pg_loss (the policy-gradient part, same aggregation), kl (masked token mean of the raw
    estimator, 0.0 when not computed), clip_frac (share of tokens where the clipped term was selected and
    differs), ratio_mean, ratio_max (over masked tokens), adv_mean (over sequences with >= 1 token); with
    rollout_logp also is_ratio_mean / is_ratio_min / is_ratio_max (the untruncated ratio over masked tokens) and
    is_truncated_frac (share of tokens whose ratio exceeded the cap).

    Example: ratio = 1 (logp == old_logp), A = [1, -2], sequence lengths [3, 1], token_mean, no KL:
        loss = -(3 * 1 + 1 * (-2)) / 4 = -0.25; with seq_mean: -(1 + (-2)) / 2 = 0.5.
    """
    if logp.dim() != 2:
        raise ValueError(f"logp must be (B, L), got shape {tuple(logp.shape)}")
    for name, t in (("old_logp", old_logp), ("mask", mask), ("ref_logp", ref_logp), ("rollout_logp", rollout_logp)):
        if t is not None and t.shape != logp.shape:
            raise ValueError(f"{name} shape {tuple(t.shape)} differs from logp shape {tuple(logp.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got dtype {mask.dtype}")
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"advantages must be (B,) = ({logp.shape[0]},), got shape {tuple(advantages.shape)}")
    if not 0.0 <= clip_low < 1.0:
        raise ValueError(f"clip_low must be in [0, 1), got {clip_low}")
    if not clip_high >= 0.0:
        raise ValueError(f"clip_high must be >= 0, got {clip_high}")
    if not kl_coef >= 0.0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
    if kl_estimator not in KL_ESTIMATORS:
        raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {kl_estimator!r}")
    if loss_agg not in LOSS_AGGS:
        raise ValueError(f"loss_agg must be one of {LOSS_AGGS}, got {loss_agg!r}")
    if total_tokens is not None and not total_tokens > 0:
        raise ValueError(f"total_tokens must be > 0 (the step's token count), got {total_tokens}")
    if total_seqs is not None and not total_seqs > 0:
        raise ValueError(f"total_seqs must be > 0 (the step's sequence count), got {total_seqs}")
    if rollout_logp is not None and not is_cap > 0:
        raise ValueError(f"is_cap must be > 0 (algorithm.is_cap), got {is_cap}")

    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    maskf = mask.to(logp.dtype)
    lp = torch.where(mask, logp, zero)
    old = torch.where(mask, old_logp.to(logp.dtype), zero).detach()
    adv = advantages.to(device=logp.device, dtype=logp.dtype).detach().unsqueeze(1)

    ratio = torch.exp(lp - old)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv
    pg_obj = torch.minimum(unclipped, clipped)
    is_ratio = None
    if rollout_logp is not None:
        known = mask & ~torch.isnan(rollout_logp)
        behaviour = torch.where(known, rollout_logp.to(logp.dtype), old)
        is_ratio = torch.exp(old - behaviour)  # 1 where unknown or masked
        pg_obj = torch.clamp(is_ratio, max=is_cap) * pg_obj
    per_token = -pg_obj
    kl = None
    if ref_logp is not None and kl_coef > 0:
        ref = torch.where(mask, ref_logp.to(logp.dtype), zero).detach()
        kl = kl_penalty(lp, ref, kl_estimator)
        per_token = per_token + kl_coef * kl

    loss = _aggregate(per_token, maskf, loss_agg, total_tokens, total_seqs)
    with torch.no_grad():
        n_tok = float(maskf.sum().item())
        has_tokens = mask.any(dim=1)
        metrics = {
            "loss": float(loss.item()),
            "pg_loss": float(_aggregate(-pg_obj, maskf, loss_agg, total_tokens, total_seqs).item()),
            "kl": _masked_mean(kl, maskf, n_tok) if kl is not None else 0.0,
            "clip_frac": _masked_mean((clipped < unclipped).to(logp.dtype), maskf, n_tok),
            "ratio_mean": _masked_mean(ratio, maskf, n_tok),
            "ratio_max": float(ratio[mask].max().item()) if n_tok > 0 else 0.0,
            "adv_mean": float(adv.squeeze(1)[has_tokens].mean().item()) if bool(has_tokens.any()) else 0.0,
        }
        if is_ratio is not None:
            sel = is_ratio[mask]
            metrics.update({
                "is_ratio_mean": _masked_mean(is_ratio, maskf, n_tok),
                "is_ratio_min": float(sel.min().item()) if n_tok > 0 else 1.0,
                "is_ratio_max": float(sel.max().item()) if n_tok > 0 else 1.0,
                "is_truncated_frac": _masked_mean((is_ratio > is_cap).to(logp.dtype), maskf, n_tok),
            })
    return loss, metrics
