"""The prepared GPU check: one command, under 8 minutes on one H100/H200, JSON out.

Longer than 400 lines on purpose: it is the one script a lent GPU machine runs, its parts share the time guard,
the skip rule and the result record, and it reads top to bottom as the run it performs.

On a machine with one CUDA GPU, PyTorch and transformers (no vLLM, Ray or DeepSpeed needed), from the repository
root:

    python3 benchmarks/gpu_check.py --out $OUT/gpu_check.json          # default out: benchmarks/results/gpu_check.json

Carry the repository only (no virtual environment): the modules it imports need torch, transformers (with
tokenizers, safetensors), numpy, Pillow and torchvision (transformers' video processor), all in the GPU image;
PyAV and decord are optional: with both, the clip is a real H.264 demo video written with PyAV and decoded with
decord (data/demo_video.py, data/video.py); without either, the same picture is synthesised as frames in memory,
and the JSON says which (`video.source`). Nothing is downloaded and nothing is written but the JSON.

Parts, in order, each timed, each recorded as measured / skipped (with the reason) / error (with the traceback's
tail), a failure never stopping the parts that do not depend on it; no part starts after `--time-limit-s`
(default 420 s, 7 minutes):
1. build_model: a random-weight model of the Qwen2.5-VL-3B shape (the kit's size "3b", models/tiny_vlm.py: the
   released config's shape, 3,754,622,976 parameters with the 151,936-token embedding; the kit's small tokenizer
   and processor, patch 14), constructed directly on the GPU in bf16, attention sdpa; and `matmul_peak`, an
   8192^3 bf16 matrix product, the reachable ceiling next to the datasheet peak.
2. learner_step: forward + backward + torch AdamW step in bf16 through grpo/logprobs.py completion_logprobs and
   grpo/loss.py grpo_loss, on 8 samples x (about 990 video + prompt tokens + 256 completion tokens) from one real
   clip, gradient checkpointing on (`--no-grad-ckpt` turns it off); warm-up, then timed reps: tokens/s and MFU.
3. completion_only_logits: peak GPU memory of one step with the LM head over every position and over the
   completion only (`completion_logprobs(..., completion_only=False/True)`), and the largest log-prob difference.
4. hf_rollout: rollout/hf_engine.py's HFEngine around the same in-memory model, generating 8 x 128 new tokens.
5. colocated_handover: the colocated mode's weight hand-over (weight_sync/handover.py) from this process to a second
   process on the same GPU, through CUDA IPC handles: every parameter of the model built in part 1, in buckets of
   `rollout.weight_sync_bucket_mb`'s default (256 MiB), into same-shape bf16 weights the second process allocated
   (7.5 GB more on the GPU); three versions (the first a warm-up: handles opened for the first time), bytes/s of
   the others, and whether the second process's weights equal these exactly (a float64 sum per tensor on both sides).

Memory: 3.75 B parameters in bf16 (7.5 GB), bf16 gradients (7.5 GB) and torch AdamW's two states, which it keeps
in the parameters' dtype, bf16 (15 GB): 30 GB of model states, so the step fits one 80 GB GPU with room for the
activations. Mixed precision as DeepSpeed runs it (fp32 master weights and fp32 states: 16 bytes/parameter,
60 GB unsharded) would leave about 20 GB, too little without sharding; bf16 states change no FLOPs or timing.

Without CUDA (or with `--cpu-smoke`) the same code paths run on CPU at the tiny kit shape (fp32, small sizes, a
16,384-token vocabulary), in well under a minute: each CUDA part prints "skip: <part>: no CUDA device" and is
recorded in `cuda_parts` as skipped (colocated_handover then runs the same protocol with shared-memory tensors
between two CPU processes, at the smoke model's size in 1 MiB buckets); the default out is then
benchmarks/results/gpu_check_cpu_smoke.json, so a CPU run never overwrites a GPU result. Exit status: 0 when no
part failed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_io import write_results  # noqa: E402

ENGINES = ("ray", "vllm", "deepspeed", "openai")  # none of these may be needed (nor imported) here
QWEN25_VL_3B_VOCAB = 151936  # Qwen/Qwen2.5-VL-3B-Instruct config.json vocab_size
CUDA_PARTS = ("matmul_peak", "build_model", "learner_step", "completion_only_logits", "hf_rollout",
              "colocated_handover")
# Dense bf16 tensor-core peaks (without sparsity), matched in order against torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = (
    ("H200", 989.4, "NVIDIA H200 Tensor Core GPU datasheet: BF16 1,979 TFLOPS with sparsity = 989 dense (as H100 SXM)"),
    ("H100 PCIe", 756.0, "NVIDIA H100 Tensor Core GPU datasheet, PCIe: BF16 1,513 TFLOPS with sparsity = 756 dense"),
    ("H100 NVL", 835.0, "NVIDIA H100 Tensor Core GPU datasheet, NVL: BF16 1,671 TFLOPS with sparsity = 835 dense"),
    ("H100", 989.4, "NVIDIA H100 Tensor Core GPU datasheet, SXM5: BF16 1,979 TFLOPS with sparsity = 989 dense"),
    ("A100", 312.0, "NVIDIA A100 Tensor Core GPU datasheet: BF16 312 TFLOPS dense"),
)
FLOPS_FORMULA = ("model FLOPs per step = 6 x (N_text_layers x T + N_lm_head x T_logits + N_vision_blocks x T_patches "
                 "+ N_merger x T_patches / 4): 2 FLOPs per parameter per token forward, 4 backward, each part over "
                 "the tokens it processes (T sequence tokens, T_logits positions the LM head is applied to, "
                 "T_patches vision patches, 4 patches per merged token); attention scores and the gradient "
                 "checkpointing recompute are not counted (the MFU convention)")

# Sizes: the GPU shape and the CPU smoke shape.
# The smoke's vocabulary (16,384) is still far beyond the kit tokenizer's 975 tokens, as the GPU shape's is.
GPU = dict(size="3b", vocab=QWEN25_VL_3B_VOCAB, dtype="bfloat16", samples=8, completion=256, frames=16, height=280,
           width=336, reps=3, gen_group=8, gen_tokens=128, matmul_n=8192, handover_bucket_mb=256)
SMOKE = dict(size="tiny", vocab=16384, dtype="float32", samples=4, completion=16, frames=4, height=56, width=84,
             reps=1, gen_group=4, gen_tokens=8, matmul_n=256, handover_bucket_mb=1)


class Check:
    """Runs the parts in order, times each, keeps going after a failure and stops starting parts at the limit."""

    def __init__(self, time_limit_s: float) -> None:
        self.t0 = time.perf_counter()
        self.limit = time_limit_s
        self.parts: dict[str, dict] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def run(self, name: str, fn, needs: tuple[str, ...] = ()) -> dict:
        for dep in needs:
            if self.parts.get(dep, {}).get("status") != "measured":
                return self._record(name, {"status": "skipped", "reason": f"{dep} did not run"})
        if self.elapsed() > self.limit:
            return self._record(name, {"status": "skipped", "reason": f"time guard: {self.elapsed():.0f} s elapsed "
                                                                      f"> --time-limit-s {self.limit:.0f}"})
        print(f"{name}: running ({self.elapsed():.0f} s elapsed)", flush=True)
        t = time.perf_counter()
        try:
            res = {"status": "measured", **fn()}
        except Exception as err:  # noqa: BLE001 - a part's failure is recorded, the others still run
            res = {"status": "error", "error": f"{type(err).__name__}: {str(err)[:500]}",
                   "traceback": traceback.format_exc()[-2000:]}
            _free()
        res["seconds"] = round(time.perf_counter() - t, 2)
        return self._record(name, res)

    def _record(self, name: str, res: dict) -> dict:
        self.parts[name] = res
        shown = {k: v for k, v in res.items() if k not in ("traceback", "all_step_s")}
        print(f"{'skip: ' if res['status'] == 'skipped' else ''}{name}: {json.dumps(shown)}", flush=True)
        return res


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_tflops(name: str) -> tuple[float | None, str]:
    for key, tflops, source in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return tflops, source
    return None, f"no bf16 peak known for {name!r}: MFU not computed"


def matmul_peak(device, dtype, n: int) -> dict:
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    reps = 10
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    dt = (time.perf_counter() - t) / reps
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "tflops": _sig(2 * n ** 3 / dt / 1e12)}


def make_clip(frames: int, h: int, w: int, tmp: Path, synthetic: bool):
    """A clip of `frames` frames at h x w (multiples of 28: no resize) from a real decoded H.264 video, or the same
    picture synthesised when PyAV or decord is missing (or `synthetic`)."""
    import numpy as np

    from medgrpo_ray.data.video import Clip, FrameBudget, decode_video

    fps = 8
    if not synthetic:
        try:
            from medgrpo_ray.data.demo_video import write_demo_video

            path = write_demo_video(tmp / "demo.mp4", seconds=frames / fps, fps=fps, size=(h, w))
            budget = FrameBudget(max_frames=frames, min_pixels=h * w, max_pixels=h * w, factor=28)
            clip = decode_video(str(path), fps=fps, start_s=None, end_s=None, budget=budget, who="gpu_check")
            return clip, "decoded: H.264 demo video written with PyAV (data/demo_video.py), decoded with decord"
        except ImportError as err:
            why = f"synthetic frames ({err.name or err} not installed: no video written or decoded)"
    else:
        why = "synthetic frames (--synthetic-video)"
    img = np.zeros((frames, h, w, 3), np.uint8)  # the demo video's picture: a green box over a pink gradient
    img[..., 0] = np.linspace(150, 230, w, dtype=np.uint8)[None, None, :]
    img[..., 1] = np.linspace(60, 110, h, dtype=np.uint8)[None, :, None]
    img[..., 2] = 90
    for i in range(frames):
        x = int((w - 40) * i / max(1, frames - 1))
        img[i, h // 3: h // 3 + 30, x: x + 40] = (40, 200, 60)
    return Clip(frames=img, fps=float(fps), timestamps=tuple(i / fps for i in range(frames)), source="synthetic"), why


class State:
    """What the parts hand on: the model, processor, prompt, samples, advantages, optimizer, parameter counts."""

    def __init__(self) -> None:
        self.model = self.processor = self.gen = self.prompt_inputs = self.samples = self.adv = self.opt = None
        self.pad_id = None
        self.counts: dict = {}


def build_model(st: State, shape: dict, device, dtype, grad_ckpt: bool, vocab: int, tmp: Path, synthetic: bool) -> dict:
    import torch
    from transformers import AutoModelForImageTextToText

    from medgrpo_ray.data.prompts import hf_inputs, prompt_text, visual_token_count
    from medgrpo_ray.grpo.logprobs import LogprobSample
    from medgrpo_ray.models.tiny_vlm import kit_parts

    t = time.perf_counter()
    cfg, st.processor, st.gen = kit_parts("qwen2_5_vl", shape["size"], vocab)
    torch.manual_seed(0)
    with device:
        model = AutoModelForImageTextToText.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    model.generation_config = st.gen
    _sync(device)
    build_s = time.perf_counter() - t
    if grad_ckpt:
        model.gradient_checkpointing_enable()  # as learner/policy.py does (learner.gradient_checkpointing)
    model.train()
    st.model = model

    clip, source = make_clip(shape["frames"], shape["height"], shape["width"], tmp, synthetic)
    tok = st.processor.tokenizer
    st.pad_id = tok.pad_token_id
    text = prompt_text(st.processor, "Which surgical action comes next? Answer with the action's name.")
    inputs = hf_inputs(st.processor, text, clip)
    g = torch.Generator().manual_seed(0)
    banned = set(tok.all_special_ids)
    ordinary = torch.tensor([i for i in range(len(tok)) if i not in banned])
    st.samples = [LogprobSample.from_processor(inputs, ordinary[torch.randint(len(ordinary), (shape["completion"],),
                                                                              generator=g)])
                  for _ in range(shape["samples"])]
    st.adv = torch.tensor([1.0 if i % 2 else -1.0 for i in range(shape["samples"])])
    st.prompt_inputs = (text, clip)

    n_text = sum(p.numel() for p in model.model.language_model.layers.parameters())
    n_head = model.lm_head.weight.numel()
    visual = model.model.visual
    n_merger = sum(p.numel() for p in visual.merger.parameters())
    n_vision = sum(p.numel() for p in visual.parameters()) - n_merger
    prompt_len = int(inputs["input_ids"].shape[1])
    st.counts = dict(n_text=n_text, n_head=n_head, n_vision=n_vision, n_merger=n_merger, prompt=prompt_len,
                     seq=prompt_len + shape["completion"], patches=int(inputs["pixel_values_videos"].shape[0]))
    params = sum(p.numel() for p in model.parameters())
    return {"model_build_s": round(build_s, 2), "size": shape["size"], "dtype": str(dtype).replace("torch.", ""),
            "params": params, "vision_params": n_vision + n_merger, "vocab_size": cfg.text_config.vocab_size,
            "tokenizer_tokens": len(tok), "tie_word_embeddings": bool(cfg.tie_word_embeddings),
            "attn_implementation": "sdpa", "gradient_checkpointing": grad_ckpt,
            "video": {"source": source, "frames": clip.num_frames, "height": int(clip.frames.shape[1]),
                      "width": int(clip.frames.shape[2]), "video_tokens": visual_token_count(inputs["video_grid_thw"],
                                                                                              st.processor),
                      "patches": st.counts["patches"]},
            "prompt_tokens": prompt_len, "completion_tokens": shape["completion"], "samples": shape["samples"],
            "memory_allocated_gib": _gib(torch.cuda.memory_allocated(device)) if device.type == "cuda" else None}


def _gib(n: int) -> float:
    return round(n / 2 ** 30, 2)


def _sig(x: float, digits: int = 4) -> float:
    """`x` to `digits` significant digits (CPU smoke numbers are tiny, GPU ones large)."""
    return float(f"{x:.{digits}g}")


def model_flops(c: dict, samples: int, completion: int, completion_only: bool) -> float:
    logits = samples * (completion + 1 if completion_only else c["seq"])  # logits_to_keep = T - (P - 1)
    return 6.0 * (c["n_text"] * samples * c["seq"] + c["n_head"] * logits + c["n_vision"] * samples * c["patches"]
                  + c["n_merger"] * samples * c["patches"] / 4)


def grpo_step(st: State, completion_only: bool, micro: int, device) -> tuple[float, float]:
    """One optimizer step over all samples in micro-batches of `micro`; returns (seconds, fwd+bwd peak bytes)."""
    import torch

    from medgrpo_ray.grpo.logprobs import completion_logprobs
    from medgrpo_ray.grpo.loss import grpo_loss

    cuda = device.type == "cuda"
    _sync(device)
    t = time.perf_counter()
    st.opt.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    total = sum(len(s.completion_ids) for s in st.samples)
    for i in range(0, len(st.samples), micro):
        mb = st.samples[i:i + micro]
        lp, mask = completion_logprobs(st.model, mb, pad_id=st.pad_id, completion_only=completion_only)
        loss, _ = grpo_loss(lp, lp.detach(), st.adv[i:i + micro], mask, clip_low=0.2, clip_high=0.28, kl_coef=0.0,
                            kl_estimator="k3", loss_agg="token_mean", total_tokens=total)
        loss.backward()
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) if cuda else 0
    st.opt.step()
    _sync(device)
    return time.perf_counter() - t, peak


def learner_step(st: State, shape: dict, device, micro: int, fused: bool) -> dict:
    import torch

    params = [p for p in st.model.parameters() if p.requires_grad]
    st.opt = torch.optim.AdamW(params, lr=1e-6, fused=fused or None)
    warm_s, _ = grpo_step(st, True, micro, device)  # also allocates AdamW's states
    times = [grpo_step(st, True, micro, device)[0] for _ in range(shape["reps"])]
    mean = sum(times) / len(times)
    c, n = st.counts, shape["samples"]
    flops = model_flops(c, n, shape["completion"], True)
    res = {"optimizer": f"torch.optim.AdamW({'fused' if fused else 'foreach'}), states in the parameters' dtype",
           "micro_batch": micro, "warmup_step_s": round(warm_s, 3), "reps": len(times), "mean_step_s": round(mean, 4),
           "all_step_s": [round(x, 4) for x in times], "sequence_tokens_per_step": n * c["seq"],
           "tokens_per_s": _sig(n * c["seq"] / mean), "completion_tokens_per_s": _sig(n * shape["completion"] / mean),
           "model_tflops_per_step": _sig(flops / 1e12), "achieved_tflops": _sig(flops / mean / 1e12),
           "flops_formula": FLOPS_FORMULA}
    if device.type == "cuda":
        peak, source = peak_tflops(torch.cuda.get_device_name(device))
        res.update(peak_bf16_tflops=peak, peak_source=source,
                   mfu=round(flops / mean / 1e12 / peak, 4) if peak else None,
                   memory_allocated_gib=_gib(torch.cuda.memory_allocated(device)))
    return res


def logits_memory(st: State, micro: int, device) -> dict:
    import torch

    from medgrpo_ray.grpo.logprobs import completion_logprobs

    cuda = device.type == "cuda"
    lps = {}
    with torch.no_grad():  # the same weights for both: no update between these two forwards
        for only in (False, True):
            lps[only] = torch.cat([completion_logprobs(st.model, st.samples[i:i + micro], pad_id=st.pad_id,
                                                       completion_only=only)[0].float()
                                   for i in range(0, len(st.samples), micro)])
    diff = float((lps[False] - lps[True]).abs().max())
    base = torch.cuda.memory_allocated(device) if cuda else 0
    logits_dtype = str(next(st.model.parameters()).dtype).replace("torch.", "")
    out = {"max_abs_logprob_diff": diff,
           "compared": f"float32 log-softmax over {logits_dtype} logits, no-grad forwards, the same weights"}
    for only, name in ((False, "all_positions"), (True, "completion_only")):
        _free()
        s, peak = grpo_step(st, only, micro, device)
        out[name] = {"step_s": round(s, 3),
                     "peak_fwd_bwd_gib": _gib(peak) if cuda else None,
                     "activation_peak_gib": _gib(peak - base) if cuda else None}
    if cuda:
        before, after = out["all_positions"]["peak_fwd_bwd_gib"], out["completion_only"]["peak_fwd_bwd_gib"]
        out["saved_gib"] = round(before - after, 2)
        out["memory_note"] = ("torch.cuda.max_memory_allocated over forward + backward, reset before each step; "
                              "activation_peak = peak - memory allocated before the step (weights, grads, states)")
    else:
        out["memory_note"] = "CPU: no CUDA memory statistics; only the log-prob difference and step times"
    return out


def hf_rollout(st: State, shape: dict, device) -> dict:
    import torch

    from medgrpo_ray.rollout.hf_engine import HFEngine
    from medgrpo_ray.rollout.types import SamplingSettings

    st.opt = None
    st.model.zero_grad(set_to_none=True)
    if st.model.is_gradient_checkpointing:
        st.model.gradient_checkpointing_disable()
    st.model.eval()
    _free()
    engine = HFEngine(None, st.processor, model=st.model)
    warm = SamplingSettings(group_size=shape["gen_group"], temperature=1.0, max_new_tokens=4, seed=0)
    engine.generate_clips([st.prompt_inputs], [warm])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    s = SamplingSettings(group_size=shape["gen_group"], temperature=1.0, max_new_tokens=shape["gen_tokens"], seed=1)
    _sync(device)
    t = time.perf_counter()
    (group,) = engine.generate_clips([st.prompt_inputs], [s])
    _sync(device)
    dt = time.perf_counter() - t
    new = sum(len(c.token_ids) for c in group.completions)
    res = {"engine": "rollout/hf_engine.py HFEngine(model=<in-memory policy>)", "group_size": shape["gen_group"],
           "max_new_tokens": shape["gen_tokens"], "prompt_tokens": len(group.prompt_token_ids),
           "generated_tokens": new, "generate_s": round(dt, 3), "new_tokens_per_s": _sig(new / dt),
           "finish_reasons": sorted({c.finish_reason for c in group.completions}),
           "note": "the time includes the engine's own log-prob forward over the completions (generate_clips)"}
    if device.type == "cuda":
        res["peak_memory_gib"] = _gib(torch.cuda.max_memory_allocated(device))
    return res


def _handover_consumer(metas, device_index, inbox, outbox, results, versions: int, timeout_s: float) -> None:
    """The engine's side of colocated_handover, in its own process: weights of the metas' shapes on the same
    device, `versions` hand-overs loaded into them, then a float64 sum per tensor for the exactness check."""
    try:
        import torch

        from medgrpo_ray.weight_sync.collective import DTYPES
        from medgrpo_ray.weight_sync.handover import HandoverReceiver, queue_transport

        device = torch.device("cpu") if device_index is None else torch.device("cuda", device_index)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        weights = {m.name: torch.empty(m.shape, dtype=DTYPES[m.dtype], device=device) for m in metas}
        rx = HandoverReceiver(*queue_transport(outbox, inbox), timeout_s=timeout_s)

        def load(pairs):
            for name, t in pairs:
                weights[name].copy_(t)
        results.put(("ready",))
        for _ in range(versions):
            rx.receive(load)
        results.put(("done", [float(weights[m.name].sum(dtype=torch.float64)) for m in metas]))
    except Exception as err:  # noqa: BLE001 - reported to the producer's part
        results.put(("error", f"{type(err).__name__}: {str(err)[:300]}", traceback.format_exc()[-1500:]))


def colocated_handover(st: State, shape: dict, device, versions: int = 3, timeout_s: float = 60.0) -> dict:
    import multiprocessing as mp

    import torch

    from medgrpo_ray.weight_sync.collective import plan_buckets
    from medgrpo_ray.weight_sync.handover import HandoverSender, queue_transport, trainable_metas

    _free()
    named = dict(st.model.named_parameters())
    metas = trainable_metas(named.items(), lambda n, p: True)  # every parameter (none is frozen in this check)
    buckets = plan_buckets(metas, int(shape["handover_bucket_mb"] * 2 ** 20))
    ctx = mp.get_context("spawn")
    to_engine, to_learner, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    t = time.perf_counter()
    proc = ctx.Process(target=_handover_consumer, daemon=True,
                       args=(metas, device.index if device.type == "cuda" else None, to_engine, to_learner, results,
                             versions, timeout_s))
    proc.start()
    try:
        msg = results.get(timeout=180)
        if msg[0] != "ready":
            raise RuntimeError(f"the engine process failed before the hand-over: {msg[1]}\n{msg[2]}")
        start_s = time.perf_counter() - t
        sender = HandoverSender(*queue_transport(to_engine, to_learner), timeout_s=timeout_s, device=device)
        times, sent = [], 0
        for v in range(1, versions + 1):
            _sync(device)
            t0 = time.perf_counter()
            sent = sender.send_version(v, metas, buckets, lambda ms: [named[m.name].detach() for m in ms])
            times.append(time.perf_counter() - t0)
        msg = results.get(timeout=180)
        if msg[0] != "done":
            raise RuntimeError(f"the engine process failed: {msg[1]}\n{msg[2]}")
        with torch.no_grad():
            ours = [float(named[m.name].sum(dtype=torch.float64)) for m in metas]
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    timed = times[1:] or times
    mean = sum(timed) / len(timed)
    cuda = device.type == "cuda"
    return {"mechanism": ("CUDA IPC handles (torch.multiprocessing.reductions.reduce_tensor), two processes on one GPU"
                          if cuda else "shared-memory tensors (file_system strategy), two CPU processes"),
            "tensors": len(metas), "buckets": len(buckets), "bucket_mb": shape["handover_bucket_mb"],
            "dtypes": sorted({m.dtype.replace("torch.", "") for m in metas}), "bytes_per_version": sent,
            "versions": versions, "version_s": [round(x, 4) for x in times], "warmup_version_s": round(times[0], 4),
            "mean_s": round(mean, 4), "bytes_per_s": _sig(sent / mean), "gb_per_s": _sig(sent / mean / 1e9),
            "exact": msg[1] == ours, "engine_process_start_s": round(start_s, 2),
            "note": "per version: each bucket packed into a fresh flat tensor on the device, its handle sent through a "
                    "multiprocessing queue, copied into the engine's weights, acknowledged, released; timed from the "
                    "first pack to the last acknowledgement; the warm-up version not in the mean"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="On a GPU machine: python3 benchmarks/gpu_check.py --out $OUT/gpu_check.json")
    ap.add_argument("--out", help="JSON path (default: benchmarks/results/gpu_check.json; CPU smoke: "
                                  "benchmarks/results/gpu_check_cpu_smoke.json)")
    ap.add_argument("--cpu-smoke", action="store_true", help="run the tiny shape on CPU even where CUDA is present")
    ap.add_argument("--no-grad-ckpt", action="store_true", help="train without gradient checkpointing (GPU: use "
                    "--micro-batch 1 or 2 then; 8 samples do not fit 80 GB without it)")
    ap.add_argument("--micro-batch", type=int, help="samples per forward (default: all in one)")
    ap.add_argument("--reps", type=int, help="timed learner steps after the warm-up (default 3; CPU smoke 1)")
    ap.add_argument("--synthetic-video", action="store_true",
                    help="synthesise the frames even where PyAV and decord are installed")
    ap.add_argument("--time-limit-s", type=float, default=420.0, help="start no part after this many seconds")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch
    import transformers

    check = Check(a.time_limit_s)
    cuda = torch.cuda.is_available() and not a.cpu_smoke
    shape = dict(GPU if cuda else SMOKE)
    if a.reps:
        shape["reps"] = a.reps
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    dtype = getattr(torch, shape["dtype"])
    micro = a.micro_batch or shape["samples"]
    default = "gpu_check.json" if cuda else "gpu_check_cpu_smoke.json"
    out = Path(a.out) if a.out else ROOT / "benchmarks/results" / default
    res: dict = {"benchmark": "gpu_check", "mode": "gpu" if cuda else "cpu_smoke",
                 "device": torch.cuda.get_device_name(device) if cuda else f"cpu ({os.cpu_count()} cores)",
                 "versions": {"python": platform.python_version(), "torch": torch.__version__,
                              "transformers": transformers.__version__, "cuda": torch.version.cuda},
                 "shape": shape}
    if not cuda:
        why = "--cpu-smoke given" if torch.cuda.is_available() else "no CUDA device"
        res["cuda_parts"] = {}
        for name in CUDA_PARTS:
            print(f"skip: {name}: {why} (the Qwen2.5-VL-3B shape in bf16 on the GPU)", flush=True)
            res["cuda_parts"][name] = {"status": "skipped", "reason": why}
        print(f"cpu smoke: the same code paths at the tiny shape ({shape['dtype']}, small sizes) on CPU", flush=True)

    st = State()
    with tempfile.TemporaryDirectory() as tmp:
        check.run("matmul_peak", lambda: matmul_peak(device, dtype, shape["matmul_n"]))
        check.run("build_model", lambda: build_model(st, shape, device, dtype, not a.no_grad_ckpt, shape["vocab"],
                                                     Path(tmp), a.synthetic_video))
        check.run("learner_step", lambda: learner_step(st, shape, device, micro, fused=cuda), needs=("build_model",))
        check.run("completion_only_logits", lambda: logits_memory(st, micro, device), needs=("learner_step",))
        check.run("hf_rollout", lambda: hf_rollout(st, shape, device), needs=("build_model",))
        check.run("colocated_handover", lambda: colocated_handover(st, shape, device), needs=("build_model",))
    ls = check.parts.get("learner_step", {})
    mm = check.parts["matmul_peak"].get("tflops")
    if cuda and ls.get("status") == "measured" and mm:
        ls["fraction_of_measured_matmul"] = round(ls["achieved_tflops"] / mm, 4)
    res["parts"] = check.parts
    res["engines_imported"] = sorted(m for m in ENGINES if m in sys.modules)
    res["total_seconds"] = round(check.elapsed(), 1)
    write_results(out, res)
    print(f"wrote {out}")
    failed = [n for n, p in check.parts.items() if p["status"] == "error"]
    if failed:
        print(f"failed parts: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
