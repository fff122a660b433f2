"""ReferenceWorker: the frozen reference policy in its own actor group (learner.reference=separate).

Holds the initial weights, never trains; returns per-token log-probs of scored samples so the learners need no
second model in memory. Stateless and restartable: the same samples always give the same log-probs."""
from __future__ import annotations


import ray


@ray.remote
class ReferenceWorker:
    def __init__(self, cfg, model_dir: str) -> None:
        from medgrpo_ray.tracking.console import quiet_process

        quiet_process(cfg.logging.level, cfg.logging.engine_level, "reference")
        import os

        import torch

        from medgrpo_ray.config.devices import process_device
        from medgrpo_ray.grpo.inputs import SampleInputs
        from medgrpo_ray.models.loading import load_policy, load_processor

        self.torch = torch
        self.processor = load_processor(model_dir)
        self.inputs = SampleInputs(cfg, self.processor)
        self.model = load_policy(model_dir, dtype=cfg.model.dtype, attn_implementation=cfg.model.attn_implementation)
        self.model.requires_grad_(False)
        # The GPU Ray assigned (none: CPU), masked or not (ray.noset_cuda_visible_devices): config/devices.py
        device = process_device(ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"),
                                cfg.ray.noset_cuda_visible_devices)
        if device.index is not None:
            torch.cuda.set_device(device.index)
            self.model.to(device.torch)
        self.micro = cfg.learner.micro_batch_size

    def logprobs(self, samples: list) -> list:
        """[(sample key, log-probs of its completion tokens)] for TrainSamples keyed by (group_id, index)."""
        from medgrpo_ray.grpo.logprobs import completion_logprobs

        out = []
        for i in range(0, len(samples), self.micro):
            chunk = samples[i:i + self.micro]
            with self.torch.no_grad():
                lp, _ = completion_logprobs(self.model, self.inputs.logprob_samples([s for _, s in chunk]),
                                            pad_id=self.processor.tokenizer.pad_token_id)
            out.extend((key, lp[j, : len(s.completion_ids)].cpu().tolist()) for j, (key, s) in enumerate(chunk))
        return out
