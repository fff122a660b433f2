"""The offline tiny VLM kit: deterministic builds, hub-style loading, generation and per-token log-probs on CPU."""
from __future__ import annotations

import json

import pytest
import torch

from medgrpo_ray.data.prompts import budget_for, hf_inputs, prompt_text, vision_token_ids
from medgrpo_ray.data.video import decode_video
from medgrpo_ray.grpo.logprobs import LogprobSample, completion_logprobs
from medgrpo_ray.models.tiny_tokenizer import SPECIAL_TOKENS
from medgrpo_ray.models.tiny_vlm import build_tiny_vlm, tiny_model_dir, weights_hash


def test_build_is_deterministic_per_seed(tmp_path, tiny_vlm_dir):
    a = build_tiny_vlm(tmp_path / "a", kind="qwen2_5_vl", seed=0)
    b = build_tiny_vlm(tmp_path / "b", kind="qwen2_5_vl", seed=0)
    c = build_tiny_vlm(tmp_path / "c", kind="qwen2_5_vl", seed=1)
    assert weights_hash(a) == weights_hash(b) == weights_hash(tiny_vlm_dir)
    assert weights_hash(a) != weights_hash(c)
    assert (a / "tokenizer.json").read_text() == (c / "tokenizer.json").read_text()


def test_cache_reuses_built_model(model_cache, tiny_vlm_dir):
    marker = f"{tiny_vlm_dir}/model.safetensors"
    import os

    before = os.stat(marker).st_mtime_ns
    assert str(tiny_model_dir(model_cache, "qwen2_5_vl", 0)) == tiny_vlm_dir
    assert os.stat(marker).st_mtime_ns == before


def test_checkpoint_looks_like_a_hub_checkpoint(tiny_vlm_dir, tiny_processor):
    cfg = json.load(open(f"{tiny_vlm_dir}/config.json"))
    assert cfg["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    text = cfg["text_config"]
    assert text["hidden_size"] // text["num_attention_heads"] >= 32  # vLLM CPU attention needs head_dim >= 32
    tok = tiny_processor.tokenizer
    ids = [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert len(set(ids)) == len(SPECIAL_TOKENS) and tok.unk_token_id not in ids
    assert cfg["video_token_id"] == tok.convert_tokens_to_ids("<|video_pad|>")
    assert text["eos_token_id"] == tok.convert_tokens_to_ids("<|im_end|>")
    assert type(tiny_processor).__name__ == "Qwen2_5_VLProcessor"
    rendered = prompt_text(tiny_processor, "What happens?")
    assert rendered.endswith("<|im_start|>assistant\n")
    assert "<|vision_start|><|video_pad|><|vision_end|>What happens?<|im_end|>" in rendered


def test_generate_and_logprobs_on_video(tiny_processor, tiny_policy, demo_video):
    budget = budget_for(tiny_processor, 4, 3136, 12544)
    clip = decode_video(demo_video, fps=1.0, start_s=0.0, end_s=4.0, budget=budget)
    inputs = hf_inputs(tiny_processor, prompt_text(tiny_processor, "Describe the video."), clip)
    grid = inputs["video_grid_thw"]
    assert grid.tolist() == [[2, clip.frames.shape[1] // 14, clip.frames.shape[2] // 14]]
    assert inputs["pixel_values_videos"].shape[0] == int(grid.prod())
    torch.manual_seed(0)
    out = tiny_policy.generate(**inputs, max_new_tokens=32, do_sample=True, num_return_sequences=4, temperature=1.5)
    prompt_len = inputs["input_ids"].shape[1]
    new = out[:, prompt_len:]
    assert new.shape == (4, 32) or (new.shape[0] == 4 and new.shape[1] <= 32)
    assert not set(new.flatten().tolist()) & set(vision_token_ids(tiny_processor.tokenizer))
    comps = [row[: (row != tiny_processor.tokenizer.pad_token_id).sum()] for row in new]
    samples = [LogprobSample.from_processor(inputs, c) for c in comps]
    with torch.no_grad():
        lp, mask = completion_logprobs(tiny_policy, samples, pad_id=tiny_processor.tokenizer.pad_token_id)
    assert lp.shape == mask.shape == (4, max(len(c) for c in comps))
    assert torch.isfinite(lp).all() and (lp[mask] < 0).all() and (lp[~mask] == 0).all()


def test_logprobs_backprop_through_vision_tower(tiny_processor, tiny_vlm_dir, demo_video):
    from medgrpo_ray.models.loading import load_policy

    model = load_policy(tiny_vlm_dir).train()
    budget = budget_for(tiny_processor, 2, 3136, 3136)
    clip = decode_video(demo_video, fps=1.0, start_s=0.0, end_s=2.0, budget=budget)
    inputs = hf_inputs(tiny_processor, prompt_text(tiny_processor, "hi"), clip)
    lp, mask = completion_logprobs(model, [LogprobSample.from_processor(inputs, [5, 6, 7])], pad_id=0)
    lp.sum().backward()
    vision_grads = [p.grad for n, p in model.named_parameters() if "visual" in n]
    assert vision_grads and all(g is not None for g in vision_grads)
    assert any(g.abs().sum() > 0 for g in vision_grads)


@pytest.mark.parametrize("kind", ["qwen3_vl"])
def test_qwen3_vl_kit_loads_and_generates(tmp_path, kind, demo_video):
    from medgrpo_ray.models.loading import load_policy, load_processor

    d = build_tiny_vlm(tmp_path / kind, kind=kind, seed=0)
    proc, model = load_processor(str(d)), load_policy(str(d))
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    budget = budget_for(proc, 4, 4096, 16384)
    assert budget.factor == 32  # Qwen3-VL patches are 16 px, merged 2x2
    clip = decode_video(demo_video, fps=1.0, start_s=0.0, end_s=4.0, budget=budget)
    inputs = hf_inputs(proc, prompt_text(proc, "What now?"), clip)
    out = model.generate(**inputs, max_new_tokens=8, do_sample=True)
    new = out[0, inputs["input_ids"].shape[1]:]
    assert len(new) > 0 and not set(new.tolist()) & set(vision_token_ids(proc.tokenizer))
    with torch.no_grad():
        lp, _ = completion_logprobs(model, [LogprobSample.from_processor(inputs, new)], pad_id=proc.tokenizer.pad_token_id)
    assert torch.isfinite(lp).all()
