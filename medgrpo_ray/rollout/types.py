"""What a generation engine returns: G samples of one prompt with token ids and per-token log-probs."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SamplingSettings:
    group_size: int = 4  # G samples per prompt
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_new_tokens: int = 64
    seed: int | None = None  # per-request seed; None = engine's RNG


@dataclass
class Completion:
    token_ids: list[int]  # (L,) sampled tokens, EOS included when generated
    logprobs: list[float]  # (L,) log-prob of each sampled token under the engine's (raw, T=1) distribution
    text: str
    finish_reason: str = ""


@dataclass
class GroupResult:
    prompt_token_ids: list[int]  # (P,) prompt ids as the engine tokenized them (vision placeholders expanded)
    completions: list[Completion] = field(default_factory=list)  # G samples
