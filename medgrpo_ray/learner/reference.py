"""The colocated reference model of a learner rank: the frozen initial policy that the KL term is measured against.

Three ways to hold it (`learner.reference_memory`), because a full copy on every learner GPU costs as much as the
policy's whole ZeRO-3 shard several times over (16 GB of bf16 weights for a 7B model, against about 4 GB per rank
for the policy's own weights over four ranks):

- `full`: a whole copy on the rank's device (the fastest forward; right for small models and ZeRO-0/1/2);
- `sharded`: a DeepSpeed ZeRO-3 engine of its own without an optimizer, partitioned over the learner group like
  the policy and gathered layer by layer during its forward (what OpenRLHF does); every rank must run the reference
  forward the same number of times, which the learner does (one pass per micro-batch, padding included);
- `offload`: the whole copy kept in host memory and moved to the device for the step's reference passes, then back
  (one host-device round trip of the weights per step; on CPU it is where it already is);
- `auto`: `sharded` under ZeRO-3, else `full`.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator

from medgrpo_ray.config.loader import resolve_reference_memory

log = logging.getLogger(__name__)


def reference_deepspeed_config(policy_config: dict) -> dict:
    """The policy's DeepSpeed config without what only training needs (optimizer, clipping), forced to ZeRO-3."""
    out = {k: v for k, v in policy_config.items() if k not in ("optimizer", "scheduler", "gradient_clipping")}
    out["zero_optimization"] = {"stage": 3}
    return out


class ColocatedReference:
    """The frozen reference of one learner rank; `logprobs` runs it, `on_device` brackets a step's passes."""

    def __init__(self, cfg, model_dir: str, device, policy_ds_config: dict) -> None:
        from medgrpo_ray.models.loading import load_policy

        self.mode = resolve_reference_memory(cfg.learner.reference_memory, cfg.learner.zero_stage)
        self.device = device
        model = load_policy(model_dir, dtype=cfg.model.dtype, attn_implementation=cfg.model.attn_implementation)
        model.requires_grad_(False)
        self.forward = None
        if self.mode == "sharded":
            import deepspeed

            engine, *_ = deepspeed.initialize(model=model, config=reference_deepspeed_config(policy_ds_config))
            engine.eval()
            self.module, self.forward = engine.module, engine
        else:
            self.module = model.to(device) if self.mode == "full" else model
        log.info("colocated reference: %s", self.mode)

    @contextlib.contextmanager
    def on_device(self) -> Iterator[None]:
        """With `offload`, the weights on the rank's device for the duration; otherwise nothing moves."""
        moves = self.mode == "offload" and self.device.type != "cpu"
        if moves:
            self.module.to(self.device)
        try:
            yield
        finally:
            if moves:
                import torch

                self.module.to("cpu")
                torch.cuda.empty_cache()

    def logprobs(self, logprob_fn: Callable, samples):
        """`logprob_fn(model, samples, forward=...)` under the reference (the learner's own log-prob function)."""
        return logprob_fn(self.module, samples, forward=self.forward)
