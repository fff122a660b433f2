"""A learner rank's side of placement=colocated: hand its weights to the engine on its own GPU, and move its
training states off the GPU while the engine generates (rollout.colocated_memory=sleep).

Hand-over (weight_sync/handover.py): every rank sends, each to its own engine, the trainable parameters in the same
buckets as a broadcast (`plan_buckets`; frozen parameters are not sent). Under ZeRO-3 each bucket's parameters are
gathered collectively just for that bucket (every rank runs every gather, including a rank whose engine needs
nothing: `active=False`), so no rank ever holds the whole model; under ZeRO-0/1/2 each rank holds them already.
A rank whose hand-over fails keeps gathering (the others would hang in the next all-gather) and raises at the end.

States: DeepSpeed's `offload_states` / `reload_states` (ZeRO-1/2/3 optimizers) move the optimizer states, the fp32
master weights, gradients and the contiguous gradient buffer to host memory and back. The 16-bit parameters stay:
the hand-over after the update reads them. On CPU there is no device memory to free: both are logged no-ops.
"""
from __future__ import annotations

import contextlib
import logging

log = logging.getLogger(__name__)


def handover_send(learner, version: int, bucket_bytes: int, send, recv, timeout_s: float, active: bool = True) -> int:
    """Hand version `version` of `learner`'s (a PolicyLearner) trainable weights to its engine through the
    (send, recv) pair; returns the bytes handed over (0 when not `active`)."""
    from medgrpo_ray.weight_sync.collective import plan_buckets
    from medgrpo_ray.weight_sync.handover import HandoverSender

    named = {n: p for n, p in learner.engine.module.named_parameters() if p.requires_grad}
    metas = learner.sync_metas()
    buckets = plan_buckets(metas, bucket_bytes)
    sender = HandoverSender(send, recv, timeout_s, device=learner.device) if active else None
    zero3 = learner.cfg.learner.zero_stage == 3
    if zero3:
        import deepspeed
    sent, failed = 0, None
    for k, idx in enumerate(buckets):
        ms = [metas[i] for i in idx]
        params = [named[m.name] for m in ms]
        gather = deepspeed.zero.GatheredParameters(params, modifier_rank=None) if zero3 else contextlib.nullcontext()
        with gather:
            if sender is not None and failed is None:
                try:
                    sent += sender.send_bucket(version, k, len(buckets), ms, [p.data for p in params])
                except Exception as err:  # noqa: BLE001 - under ZeRO-3 keep gathering with the other ranks
                    failed = err
        if failed is not None and not zero3:
            break
    if failed is not None:
        raise failed
    return sent


def _states_movable(learner) -> bool:
    if learner.device.type != "cuda":
        if not getattr(learner, "_states_noop_logged", False):
            log.info("learner rank %d: rollout.colocated_memory=sleep on %s: no device memory to free, so "
                     "offload_states/reload_states are no-ops", learner.rank, learner.device)
            learner._states_noop_logged = True
        return False
    if learner.cfg.learner.zero_stage == 0:
        raise RuntimeError("rollout.colocated_memory=sleep moves the optimizer states with DeepSpeed's offload_states, "
                           "which needs a ZeRO optimizer: set learner.zero_stage to 1, 2 or 3")
    return True


def offload_states(learner) -> bool:
    """Training states of this rank to host memory (pinned); True when something moved."""
    if not _states_movable(learner):
        return False
    from deepspeed.runtime.zero.offload_config import OffloadStateTypeEnum

    keep_on_gpu = {OffloadStateTypeEnum.lp_params}  # the hand-over and the next update read them
    include = [s for s in OffloadStateTypeEnum if s not in keep_on_gpu]
    learner.engine.offload_states(include=include, pin_memory=True, non_blocking=False)
    import torch

    torch.cuda.empty_cache()
    return True


def reload_states(learner) -> bool:
    """Training states back on the GPU before the update; True when something moved."""
    if not _states_movable(learner):
        return False
    learner.engine.reload_states(non_blocking=False)
    return True
