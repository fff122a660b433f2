"""The policy learner: one rank of a DeepSpeed (ZeRO) data-parallel group computing the GRPO update.

Each rank holds the policy under DeepSpeed and, when the reference is colocated, a frozen copy of the initial
weights. It decodes the videos of its samples itself, recomputes old and reference log-probs, then runs the
clipped-ratio GRPO loss over micro-batches with one optimizer step per GRPO step. DeepSpeed, torch.distributed
and the model load here, lazily; the Ray actor in `actors/learner.py` is a thin shell around this class.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time

log = logging.getLogger(__name__)


def deepspeed_config(cfg) -> dict:
    """DeepSpeed config from the learner/model settings. Gradient accumulation is driven by the learner
    (variable micro-batch counts), so DeepSpeed sees one micro-batch per step and never rescales the loss."""
    lc = cfg.learner
    return {
        "train_micro_batch_size_per_gpu": lc.micro_batch_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": lc.grad_clip if lc.grad_clip > 0 else 0.0,
        "zero_optimization": {"stage": lc.zero_stage, "overlap_comm": False, "contiguous_gradients": True},
        "optimizer": {"type": "AdamW", "params": {"lr": lc.lr, "betas": list(lc.adam_betas), "eps": 1e-8,
                                                   "weight_decay": lc.weight_decay, "torch_adam": True}},
        "bf16": {"enabled": cfg.model.dtype == "bfloat16"},
        "fp16": {"enabled": cfg.model.dtype == "float16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def lr_lambda(cfg):
    """Multiplier on the peak LR at optimizer step `s`: linear warm-up, then constant / linear / cosine decay."""
    lc, total = cfg.learner, max(1, cfg.algorithm.total_steps * cfg.algorithm.updates_per_step)

    def f(step: int) -> float:
        if lc.warmup_steps and step < lc.warmup_steps:
            return (step + 1) / lc.warmup_steps
        if lc.lr_schedule == "constant":
            return 1.0
        frac = min(1.0, (step - lc.warmup_steps) / max(1, total - lc.warmup_steps))
        return 1.0 - frac if lc.lr_schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * frac))

    return f


class PolicyLearner:
    def __init__(self, cfg, model_dir: str, rank: int, world_size: int, master_addr: str, master_port: int,
                 device=None) -> None:
        """`device`: a config.devices.Device, the one Ray assigned this rank (actors/learner.py); None outside Ray
        (benchmarks): the first visible GPU, or the CPU. DeepSpeed takes the GPU from LOCAL_RANK, its index."""
        import torch

        from medgrpo_ray.config.devices import local_device

        device = device or local_device(torch.cuda.is_available())
        if device.index is not None and not torch.cuda.is_available():
            raise RuntimeError(f"learner rank {rank} was assigned {device.torch} but torch sees no CUDA device; "
                               "check the node's driver and learner.num_gpus_per_rank")
        self.cfg, self.model_dir, self.rank, self.world_size = cfg, model_dir, rank, world_size
        os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port), RANK=str(rank),
                          WORLD_SIZE=str(world_size), LOCAL_RANK=str(device.local_rank))
        import deepspeed

        from medgrpo_ray.grpo.inputs import SampleInputs
        from medgrpo_ray.models.loading import load_policy, load_processor

        self.torch = torch
        self.device = torch.device(device.torch)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # the NCCL group and every kernel on this rank's GPU
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        deepspeed.init_distributed(dist_backend=backend, rank=rank, world_size=world_size, auto_mpi_discovery=False)
        self.processor = load_processor(model_dir)
        self.inputs = SampleInputs(cfg, self.processor)
        torch.manual_seed(cfg.seed)
        model = load_policy(model_dir, dtype=cfg.model.dtype, attn_implementation=cfg.model.attn_implementation)
        if cfg.learner.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        if cfg.learner.freeze_vision_tower:
            for name, p in model.named_parameters():
                if ".visual." in f".{name}" or name.startswith("visual."):
                    p.requires_grad_(False)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, model_parameters=params, config=deepspeed_config(cfg),
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg)),
        )
        self.reference = None
        if cfg.algorithm.kl_coef > 0 and cfg.learner.reference == "colocated":
            from medgrpo_ray.learner.reference import ColocatedReference

            self.reference = ColocatedReference(cfg, model_dir, self.device, deepspeed_config(cfg))
        self.pad_id = self.processor.tokenizer.pad_token_id
        self.optimizer_steps = 0

    def _reference_logprobs(self, mb, samples, like=None):
        """Reference log-probs (B, L_max) for a micro-batch: from the colocated reference model, from values a
        separate reference group attached to the samples, or None when there is no KL term."""
        torch = self.torch
        if self.reference is not None:
            return self.reference.logprobs(self._logprobs, samples)[0]
        if self.cfg.algorithm.kl_coef > 0 and self.cfg.learner.reference == "separate":
            ref = torch.zeros(len(mb), max(len(s.completion_ids) for s in mb), dtype=torch.float32, device=self.device)
            for j, s in enumerate(mb):
                if s.weight and len(s.ref_logprobs) != len(s.completion_ids):
                    raise RuntimeError(f"sample of group {s.group_id} has no reference log-probs from the reference group")
                ref[j, : len(s.ref_logprobs)] = torch.tensor(s.ref_logprobs, dtype=ref.dtype)
            return ref
        return None

    def _logprobs(self, model, samples, forward=None):
        from medgrpo_ray.grpo.logprobs import completion_logprobs

        return completion_logprobs(model, samples, pad_id=self.pad_id, forward=forward,
                                   completion_only=self.cfg.learner.completion_only_logits)

    # ---- the GRPO update ----------------------------------------------------------------------------------------
    def _isolate_failures(self, shard) -> tuple[dict, dict]:
        """Model inputs per group of the shard; a group that cannot be trained here (its video fails on this
        node, or it is too long) is replaced in place by zero-weight copies of a good sample, so every rank
        still runs the same forwards, and is reported back to the driver (which quarantines its record)."""
        from medgrpo_ray.grpo.batch import TrainSample

        inputs, failures = self.inputs.group_inputs([s for mb in shard.micro_batches for s in mb])
        if not failures:
            return inputs, failures
        good = next((s for mb in shard.micro_batches for s in mb if s.group_id not in failures), None)
        if good is None:
            raise RuntimeError(f"learner rank {self.rank}: no sample of its shard can be trained: "
                               + "; ".join(msg for _, msg in failures.values()))
        for gid, (reason, msg) in failures.items():
            log.warning("learner rank %d: group %d not trained (%s): %s", self.rank, gid, reason, msg)
        shard.micro_batches = [
            [s if s.group_id not in failures else TrainSample(good.group_id, good.record, good.completion_ids, 0.0,
                                                              weight=0.0, ref_logprobs=good.ref_logprobs)
             for s in mb] for mb in shard.micro_batches]
        return inputs, failures

    def _rollout_logprobs(self, mb, like):
        """(B, L) rollout-engine log-probs of each sample's completion tokens, NaN where none were recorded."""
        torch = self.torch
        out = torch.full(like.shape, float("nan"), dtype=torch.float32)
        for j, s in enumerate(mb):
            n = min(len(s.rollout_logprobs), like.shape[1])
            if n:
                out[j, :n] = torch.tensor(s.rollout_logprobs[:n], dtype=torch.float32)
        return out.to(like.device)

    def train_step(self, shard) -> dict:
        """One optimizer step over this rank's shard; returns this rank's metric sums (the driver reduces)."""
        torch = self.torch
        from medgrpo_ray.grpo.loss import grpo_loss

        a = self.cfg.algorithm
        t0 = time.perf_counter()
        inputs, failures = self._isolate_failures(shard)
        # With one update per step the old policy is the current one: its log-probs are the training forward's,
        # detached (ratio 1, the same loss and gradient), so the separate no-grad forward is skipped.
        separate_old = a.updates_per_step > 1 or a.recompute_old_logprobs
        prepared = []
        ref_s = 0.0
        with self.reference.on_device() if self.reference is not None else contextlib.nullcontext():
            for mb in shard.micro_batches:
                samples = self.inputs.logprob_samples(mb, inputs)
                mask_w = torch.tensor([s.weight for s in mb]).bool()[:, None]
                old_lp = ref_lp = None
                with torch.no_grad():
                    if separate_old:
                        old_lp, _ = self._logprobs(self.engine.module, samples, forward=self.engine)
                    t1 = time.perf_counter()
                    ref_lp = self._reference_logprobs(mb, samples, old_lp)
                    ref_s += time.perf_counter() - t1
                adv = torch.tensor([s.advantage for s in mb], dtype=torch.float32)
                prepared.append((samples, mb, old_lp, ref_lp, mask_w, adv))
        sums = {"tokens": 0.0, "rollout_logprob_gap_sum": 0.0, "rollout_logprob_gap_max": 0.0}
        # The whole step's token/sequence counts normalise every micro-batch, and DeepSpeed averages gradients
        # over ranks, so each rank's loss is scaled by world_size to recover the step-wide mean.
        for update in range(a.updates_per_step):
            for i, (samples, mb, old_lp, ref_lp, mask_w, adv) in enumerate(prepared):
                self.engine.set_gradient_accumulation_boundary(i == len(prepared) - 1)
                lp, mask = self._logprobs(self.engine.module, samples, forward=self.engine)
                mask = mask & mask_w.to(mask.device)
                adv = adv.to(mask.device)
                old_lp = lp.detach() if old_lp is None else old_lp
                loss, metrics = grpo_loss(
                    lp, old_lp, adv, mask, ref_logp=ref_lp, clip_low=a.clip_low, clip_high=a.clip_high,
                    kl_coef=a.kl_coef, kl_estimator=a.kl_estimator, loss_agg=a.loss_agg,
                    total_tokens=float(shard.total_tokens), total_seqs=float(shard.total_seqs),
                    rollout_logp=self._rollout_logprobs(mb, lp) if shard.is_cap else None, is_cap=shard.is_cap)
                self.engine.backward(loss * shard.world_size)
                self.engine.step()
                if update == 0:
                    n = float(mask.sum())
                    sums["tokens"] += n
                    for k in ("loss", "pg_loss"):  # already this micro-batch's share of the step total
                        sums[k] = sums.get(k, 0.0) + float(metrics[k])
                    for k in ("kl", "clip_frac", "ratio_mean"):  # per-call token means: weight by tokens
                        sums[k] = sums.get(k, 0.0) + float(metrics[k]) * n
                    sums["ratio_max"] = max(sums.get("ratio_max", 0.0), float(metrics["ratio_max"]))
                    if "is_ratio_mean" in metrics and n:  # rollout ahead: the truncated IS weights' statistics
                        for k in ("is_ratio_mean", "is_truncated_frac"):
                            sums[k] = sums.get(k, 0.0) + float(metrics[k]) * n
                        sums["is_ratio_max"] = max(sums.get("is_ratio_max", 0.0), float(metrics["is_ratio_max"]))
                        sums["is_ratio_min"] = min(sums.get("is_ratio_min", float("inf")), float(metrics["is_ratio_min"]))
                    for j, s in enumerate(mb):
                        if s.weight and s.rollout_logprobs:
                            gap = (old_lp[j, : len(s.rollout_logprobs)].cpu() - torch.tensor(s.rollout_logprobs)).abs()
                            sums["rollout_logprob_gap_sum"] += float(gap.sum())
                            sums["rollout_logprob_gap_max"] = max(sums["rollout_logprob_gap_max"], float(gap.max()))
            self.optimizer_steps += 1
        sums["failures"] = {int(g): list(v) for g, v in failures.items()}
        sums["grad_norm"] = float(self.engine.get_global_grad_norm() or 0.0)
        sums["lr"] = float(self.scheduler.get_last_lr()[0])
        sums["reference_s"] = ref_s
        sums["micro_batches"] = len(shard.micro_batches)
        sums["learner_s"] = time.perf_counter() - t0
        return sums

    def sft_step(self, shard) -> dict:
        """One SFT optimizer step over this rank's shard: cross-entropy on the answer tokens (`sft/loss.py`),
        token-mean over the whole step (all ranks), gradient accumulation over micro-batches."""
        torch = self.torch
        from medgrpo_ray.sft.loss import sft_loss

        t0 = time.perf_counter()
        inputs, failures = self._isolate_failures(shard)
        sums = {"nll_sum": 0.0, "tokens": 0.0}
        for i, mb in enumerate(shard.micro_batches):
            self.engine.set_gradient_accumulation_boundary(i == len(shard.micro_batches) - 1)
            samples = self.inputs.logprob_samples(mb, inputs)
            lp, mask = self._logprobs(self.engine.module, samples, forward=self.engine)
            mask = mask & torch.tensor([s.weight for s in mb]).bool()[:, None].to(mask.device)
            loss, part = sft_loss(lp, mask, shard.total_tokens)
            self.engine.backward(loss * shard.world_size)
            self.engine.step()
            sums["nll_sum"] += part["nll_sum"]
            sums["tokens"] += part["tokens"]
        self.optimizer_steps += 1
        sums["failures"] = {int(g): list(v) for g, v in failures.items()}
        sums["grad_norm"] = float(self.engine.get_global_grad_norm() or 0.0)
        sums["lr"] = float(self.scheduler.get_last_lr()[0])
        sums["learner_s"] = time.perf_counter() - t0
        return sums

    def score(self, records: list[dict], completions: list[list[int]]) -> list[list[float]]:
        """Current-policy log-probs of given completions (no update): the learner side of weight-sync checks."""
        from medgrpo_ray.grpo.batch import TrainSample

        batch = [TrainSample(group_id=i, record=r, completion_ids=c, advantage=0.0) for i, (r, c) in enumerate(zip(records, completions))]
        with self.torch.no_grad():
            lp, _ = self._logprobs(self.engine.module, self.inputs.logprob_samples(batch), forward=self.engine)
        return [lp[i, : len(c)].tolist() for i, c in enumerate(completions)]

    # ---- weights and checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict | None:
        """Full policy weights as CPU tensors on rank 0 (None elsewhere). Collective under ZeRO-3: call on every rank."""
        if self.cfg.learner.zero_stage == 3:
            sd = self.engine._zero3_consolidated_16bit_state_dict()
        else:
            sd = self.engine.module.state_dict()
        if self.rank != 0:
            return None
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in sd.items()}

    # ---- weight sync over the collective group (medgrpo_ray/weight_sync/collective.py) ----------------------------------
    def sync_metas(self) -> list:
        """Name (HF naming), full shape and dtype of every trainable parameter: what a broadcast sync sends."""
        from medgrpo_ray.weight_sync.collective import TensorMeta

        return [TensorMeta(n, tuple(getattr(p, "ds_shape", p.shape)), str(p.dtype))
                for n, p in self.engine.module.named_parameters() if p.requires_grad]

    def sync_join(self, host: str, port: int, world_size: int, epoch: int, timeout_s: float, backend: str) -> int:
        """Rank 0 joins the weight-sync group as its sender (rank 0 of it); other ranks are not members."""
        from medgrpo_ray.weight_sync.collective import SyncGroup

        if self.rank == 0:
            old, self.sync_group = getattr(self, "sync_group", None), None
            if old is not None:
                old.close()
            self.sync_group = SyncGroup(host, port, 0, world_size, epoch, timeout_s, backend, str(self.device))
        return epoch

    def sync_send(self, bucket_bytes: int) -> int:
        """Broadcast the trainable weights bucket by bucket; returns the bytes sent (0 on ranks > 0). Under
        ZeRO-3 every rank must call it: each bucket's parameters are gathered (collectively) just for that
        bucket, so no rank ever holds the whole model."""
        from medgrpo_ray.weight_sync.collective import plan_buckets, send

        named = {n: p for n, p in self.engine.module.named_parameters() if p.requires_grad}
        metas = self.sync_metas()
        buckets = plan_buckets(metas, bucket_bytes)
        if self.cfg.learner.zero_stage == 3:
            import deepspeed

            sent, failed = 0, None
            for idx in buckets:
                params = [named[metas[i].name] for i in idx]
                with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                    if self.rank == 0 and failed is None:
                        try:
                            sent += send(self.sync_group, metas, [idx], lambda ms: [named[m.name].data for m in ms])
                        except TimeoutError as err:  # keep gathering: every rank must run the same all-gathers
                            failed = err
            if failed is not None:
                raise failed
            return sent
        if self.rank != 0:
            return 0
        return send(self.sync_group, metas, buckets, lambda ms: [named[m.name].data for m in ms])

    def save(self, ckpt_dir: str, export_hf: bool) -> None:
        """DeepSpeed checkpoint (weights, optimizer, scheduler) into ckpt_dir/deepspeed; rank 0 also writes an HF
        directory (ckpt_dir/hf) loadable by transformers and vLLM. Collective: call on every rank."""
        self.engine.save_checkpoint(os.path.join(ckpt_dir, "deepspeed"), tag="state", save_latest=False)
        sd = self.state_dict() if export_hf else None
        if export_hf and self.rank == 0:
            hf_dir = os.path.join(ckpt_dir, "hf")
            self.engine.module.save_pretrained(hf_dir, state_dict=sd, safe_serialization=True)
            self.processor.save_pretrained(hf_dir)

    def save_to_storage(self, uri: str, prefix: str, export_hf: bool) -> dict:
        """save() into a directory on this rank's own disk, then upload what this rank wrote to `prefix` in the
        checkpoint storage; returns {relative path: size} of those parts. Collective: call on every rank."""
        import shutil
        import tempfile

        from medgrpo_ray.checkpoint.storage import resolve, upload_dir

        local = tempfile.mkdtemp(prefix=f"medgrpo-ckpt-rank{self.rank}-")
        try:
            self.save(local, export_hf)
            return upload_dir(local, resolve(uri), prefix)
        finally:
            shutil.rmtree(local, ignore_errors=True)

    def load_from_storage(self, uri: str, prefix: str) -> None:
        """Download the checkpoint's DeepSpeed files to this rank's disk and load them. Collective."""
        import shutil
        import tempfile

        from medgrpo_ray.checkpoint.storage import download_dir, resolve

        local = tempfile.mkdtemp(prefix=f"medgrpo-resume-rank{self.rank}-")
        try:
            download_dir(resolve(uri), f"{prefix}/deepspeed", os.path.join(local, "deepspeed"))
            self.load(local)
        finally:
            shutil.rmtree(local, ignore_errors=True)

    def load(self, ckpt_dir: str) -> None:
        path, _ = self.engine.load_checkpoint(os.path.join(ckpt_dir, "deepspeed"), tag="state",
                                              load_optimizer_states=True, load_lr_scheduler_states=True)
        if path is None:
            raise RuntimeError(f"no DeepSpeed state under {ckpt_dir}/deepspeed: the checkpoint is incomplete")

    def weights_hash(self) -> str | None:
        import hashlib

        sd = self.state_dict()
        if sd is None:
            return None
        h = hashlib.sha256()
        for k in sorted(sd):
            h.update(k.encode())
            h.update(sd[k].float().numpy().tobytes())
        return h.hexdigest()

    def shutdown(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
