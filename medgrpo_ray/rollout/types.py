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
    allowed_token_ids: list[int] | None = None  # restrict sampling to these ids (None: whole vocabulary)


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


@dataclass
class RolloutItem:
    """One prompt to roll out: a record (published-format dict) and its group's id and sampling seed."""

    group_id: int  # unique within a step; the driver's key for this prompt's G samples
    record: dict  # MedVidBench record as published (workers decode its video themselves)
    seed: int | None = None
    greedy: bool = False  # evaluation: one greedy sample instead of G sampled ones


@dataclass
class RolloutGroup:
    """The G samples of one prompt, or the reason there are none (e.g. a corrupt video)."""

    group_id: int
    prompt_token_ids: list[int] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    error: str | None = None
    reason: str = ""  # why it failed: record | decode | too_long | over_batch_budget | engine
    visual_tokens: int = 0
    worker: str = ""
    timings: dict = field(default_factory=dict)
