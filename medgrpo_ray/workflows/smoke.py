"""Smoke demo: the two numbers a GRPO step needs, end to end on the configured model (tiny by default), on CPU.

Loads the model through the normal path, decodes a real video file with decord, builds the prompt with the model's
processor, samples G completions with vLLM and recomputes their per-token log-probs with an HF forward pass.
Run: medgrpo-smoke (or python -m medgrpo_ray.cli.smoke) [--config configs/quickstart_cpu.yaml] [KEY=VALUE ...]
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger("medgrpo_ray.workflows.smoke")

QUESTION = "Where is the instrument in this video? Describe its motion."


def run(cfg) -> dict:
    import torch

    from medgrpo_ray.data.demo_video import write_demo_video
    from medgrpo_ray.data.prompts import budget_for, hf_inputs, prompt_text, vision_token_ids, visual_token_count, vllm_request
    from medgrpo_ray.data.video import decode_video
    from medgrpo_ray.grpo.logprobs import LogprobSample, completion_logprobs
    from medgrpo_ray.models.loading import load_policy, load_processor, resolve_model_path
    from medgrpo_ray.rollout.types import SamplingSettings
    from medgrpo_ray.rollout.vllm_engine import VLLMEngine

    timings = {}
    t0 = time.perf_counter()
    model_dir = resolve_model_path(cfg.model.path, cfg.model.cache_dir, cfg.model.tiny_seed)
    processor = load_processor(model_dir)
    timings["model_resolve_s"] = time.perf_counter() - t0

    video = write_demo_video(Path(cfg.model.cache_dir).expanduser() / "demo" / "demo.mp4")
    budget = budget_for(processor, cfg.data.max_frames, cfg.data.min_pixels, cfg.data.max_pixels)
    t0 = time.perf_counter()
    clip = decode_video(str(video), fps=2.0, start_s=0.0, end_s=4.0, budget=budget, timeout_s=cfg.data.decode_timeout_s,
                        who="smoke demo")
    timings["decode_s"] = time.perf_counter() - t0
    text = prompt_text(processor, QUESTION)
    inputs = hf_inputs(processor, text, clip)

    t0 = time.perf_counter()
    engine = VLLMEngine(model_dir, dtype=cfg.model.dtype, max_model_len=cfg.rollout.max_model_len, seed=cfg.seed,
                        kv_cache_gib=cfg.rollout.kv_cache_space_gib, banned_token_ids=vision_token_ids(processor.tokenizer))
    timings["vllm_start_s"] = time.perf_counter() - t0
    settings = SamplingSettings(group_size=cfg.algorithm.group_size, temperature=cfg.rollout.temperature,
                                max_new_tokens=cfg.rollout.max_new_tokens, seed=cfg.seed)
    t0 = time.perf_counter()
    group = engine.generate([vllm_request(text, clip)], settings)[0]
    timings["generate_s"] = time.perf_counter() - t0

    policy = load_policy(model_dir, dtype=cfg.model.dtype, attn_implementation=cfg.model.attn_implementation)
    samples = [LogprobSample.from_processor(inputs, c.token_ids) for c in group.completions]
    t0 = time.perf_counter()
    with torch.no_grad():
        hf_lp, mask = completion_logprobs(policy, samples, pad_id=processor.tokenizer.pad_token_id)
    timings["hf_logprobs_s"] = time.perf_counter() - t0
    gaps = []
    for i, c in enumerate(group.completions):
        gaps.append(float((hf_lp[i, : len(c.logprobs)] - torch.tensor(c.logprobs)).abs().max()))
    return {
        "model_dir": model_dir,
        "video": str(video),
        "frames": clip.num_frames,
        "frame_size": list(clip.frames.shape[1:3]),
        "visual_tokens": visual_token_count(inputs["video_grid_thw"], processor),
        "prompt_tokens_hf": int(inputs["input_ids"].shape[1]),
        "prompt_tokens_vllm": len(group.prompt_token_ids),
        "samples": [{"tokens": len(c.token_ids), "text": c.text[:60], "sum_logprob_vllm": sum(c.logprobs),
                     "sum_logprob_hf": float(hf_lp[i].sum())} for i, c in enumerate(group.completions)],
        "max_abs_logprob_gap": max(gaps),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
