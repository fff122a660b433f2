"""The transformers `generate` backend: same interface as the vLLM engine, no vLLM needed (slow; a fallback)."""
from __future__ import annotations

from typing import Sequence

import torch

from medgrpo_ray.data.prompts import hf_inputs, vision_token_ids
from medgrpo_ray.data.video import Clip
from medgrpo_ray.grpo.logprobs import LogprobSample, completion_logprobs
from medgrpo_ray.rollout.types import Completion, GroupResult, SamplingSettings


class HFEngine:
    def __init__(self, model_dir: str | None, processor, dtype: str = "float32", model=None) -> None:
        """Loads the policy from `model_dir`, or wraps `model`, an HF policy already in memory (as
        benchmarks/gpu_check.py builds one on a GPU); generation runs on whatever device the model is on."""
        from medgrpo_ray.models.loading import load_policy

        self.processor = processor
        self.model = model if model is not None else load_policy(model_dir, dtype=dtype)
        self.tokenizer = processor.tokenizer
        self._banned = [[t] for t in vision_token_ids(self.tokenizer)]

    @torch.no_grad()
    def generate_clips(self, prompts: Sequence[tuple[str, Clip]], settings: Sequence[SamplingSettings]) -> list[GroupResult]:
        results = []
        for (text, clip), s in zip(prompts, settings):
            inputs = hf_inputs(self.processor, text, clip)  # CPU tensors (completion_logprobs moves its own)
            if s.seed is not None:
                torch.manual_seed(s.seed)
            out = self.model.generate(
                **{k: v.to(self.model.device) for k, v in inputs.items()},
                do_sample=s.temperature > 0, temperature=max(s.temperature, 1e-5), top_p=s.top_p,
                top_k=s.top_k if s.top_k > 0 else None, max_new_tokens=s.max_new_tokens,
                num_return_sequences=s.group_size, bad_words_ids=self._banned,
                prefix_allowed_tokens_fn=(lambda _b, _ids, ok=s.allowed_token_ids: ok) if s.allowed_token_ids else None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            p = inputs["input_ids"].shape[1]
            eos = set(self.model.generation_config.eos_token_id or [])
            comps_ids = []
            for row in out[:, p:].tolist():
                ids = []
                for t in row:
                    ids.append(t)
                    if t in eos:
                        break
                while ids and ids[-1] == self.tokenizer.pad_token_id and ids[-1] not in eos:
                    ids.pop()
                comps_ids.append(ids or [self.tokenizer.pad_token_id])
            samples = [LogprobSample.from_processor(inputs, ids) for ids in comps_ids]
            lp, _ = completion_logprobs(self.model, samples, pad_id=self.tokenizer.pad_token_id)
            comps = [Completion(token_ids=ids, logprobs=lp[i, : len(ids)].tolist(),
                                text=self.tokenizer.decode(ids, skip_special_tokens=True),
                                finish_reason="stop" if ids[-1] in eos else "length") for i, ids in enumerate(comps_ids)]
            results.append(GroupResult(prompt_token_ids=inputs["input_ids"][0].tolist(), completions=comps))
        return results

    def load_weights(self, named_tensors) -> None:
        # frozen parameters are not sent by a broadcast sync: keep them; a name the model lacks is an error
        unexpected = self.model.load_state_dict(dict(named_tensors), strict=False).unexpected_keys
        if unexpected:
            raise KeyError(f"weights the rollout model does not have: {unexpected[:5]} (a different model?)")
