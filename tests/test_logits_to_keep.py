"""Completion-only logits (grpo/logprobs.py): the LM head runs only from the first completion position on, and the
log-probs are those of the full-sequence logits to 1e-6 in fp32, for prompts of different lengths in one batch, on
both tiny model families; GRPO and SFT share this path (the learner, the reference, the HF engine)."""
from __future__ import annotations

import pytest
import torch

from medgrpo_ray.data.prompts import budget_for, hf_inputs, prompt_text
from medgrpo_ray.data.video import decode_video
from medgrpo_ray.grpo.logprobs import LogprobSample, collate, completion_logprobs, first_needed_position


def _samples(proc, demo_video, factor_pixels):
    """Two prompts of different lengths (2 and 4 frames, different questions), completions of 3, 7 and 5 tokens."""
    out = []
    ids = lambda text: proc.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    for frames, question, comps in ((2, "hi", (ids("cutting")[:3], ids("the grasper retracts the tissue")[:7])),
                                    (4, "What happens next in this clip?", (ids("clipping the duct")[:5],))):
        budget = budget_for(proc, frames, factor_pixels, factor_pixels * 2)
        clip = decode_video(demo_video, fps=1.0, start_s=0.0, end_s=float(frames), budget=budget)
        inputs = hf_inputs(proc, prompt_text(proc, question), clip)
        out += [LogprobSample.from_processor(inputs, c) for c in comps]
    return out


@pytest.mark.parametrize("kind", ["qwen2_5_vl", "qwen3_vl"])
def test_completion_only_logits_give_the_same_logprobs(kind, tmp_path, tiny_vlm_dir, demo_video):
    from medgrpo_ray.models.loading import load_policy, load_processor
    from medgrpo_ray.models.tiny_vlm import build_tiny_vlm

    d = tiny_vlm_dir if kind == "qwen2_5_vl" else str(build_tiny_vlm(tmp_path / kind, kind=kind, seed=0))
    proc, model = load_processor(d), load_policy(d, dtype="float32")
    samples = _samples(proc, demo_video, 3136 if kind == "qwen2_5_vl" else 4096)
    pad = proc.tokenizer.pad_token_id
    inputs, pos, mask = collate(samples, pad)
    t = inputs["input_ids"].shape[1]
    first = first_needed_position(pos, mask)
    assert 0 < first < t - 8  # the shorter prompt's end: everything before it needs no logits

    widths = []
    hook = model.lm_head.register_forward_hook(lambda m, i, o: widths.append(o.shape[1]))
    with torch.no_grad():
        full, mask_full = completion_logprobs(model, samples, pad, completion_only=False)
        kept, mask_kept = completion_logprobs(model, samples, pad)
    hook.remove()
    assert widths == [t, t - first]  # the LM head saw the whole sequence, then only the completion span
    assert torch.equal(mask_full, mask_kept)
    assert (full - kept).abs().max().item() <= 1e-6
    assert (kept[mask_kept] < 0).all()


def test_the_gradient_is_the_same_too(tiny_vlm_dir, tiny_processor, demo_video):
    from medgrpo_ray.models.loading import load_policy

    samples = _samples(tiny_processor, demo_video, 3136)
    grads = []
    for only in (False, True):
        model = load_policy(tiny_vlm_dir, dtype="float32").train()
        lp, mask = completion_logprobs(model, samples, tiny_processor.tokenizer.pad_token_id, completion_only=only)
        (lp * mask).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert grads[0].shape == grads[1].shape
    assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=1e-4)
