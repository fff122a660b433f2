"""The caption loop: caption units -> both providers at once, under one bound on requests in flight ->
`validate.decide` -> one regeneration round naming the missing facts -> caption records, unit by unit.

`run_units` drives every unit on one asyncio loop: `max_in_flight` workers take units from a queue, each unit asks
both providers concurrently (`CaptionProvider.acaption`: the request runs on that provider's `llm/chat.ChatClient`
loop, with its retries, rate limit, own in-flight bound and the sqlite reply cache), and one semaphore of
`max_in_flight` bounds the requests in flight of both providers together (a request's retries and backoff hold its
slot). A provider that raises instead of replying is turned into a `ProviderError`, so every unit ends in a decision.
Decisions (regex checks, the embedder) run on one helper thread, so the loop keeps issuing requests meanwhile.
`on_done(outcome)` is called on the loop as each unit finishes (the curation run appends it to its unit log there).

Also here: the reject-reason keys of the manifest (`reason_key`), the lexical embedder used when no
sentence-embedding model is configured, and the dry-run estimate of tokens and cost.
"""
from __future__ import annotations

import asyncio
import logging
import re
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from medgrpo_ray.curation.caption_units import CaptionUnit
from medgrpo_ray.curation.validate import (STOPWORDS, Decision, ProviderError, ValidationSettings, caption_records,
                                           count_decisions, decide, dvc_problem)

log = logging.getLogger(__name__)


@dataclass
class UnitOutcome:
    """How one caption unit ended: the final decision, the first one (differs when regenerated), every attempt's
    reasons, the records of the kept captions (DVC records failing `dvc_problem` moved to `rejected`), and the
    would-be records of a `review` decision."""

    unit: CaptionUnit
    decision: Decision
    first: Decision
    attempts: int
    reasons: list[str] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    review: list[dict] = field(default_factory=list)


class LexicalEmbedder:
    """Bag-of-words vectors (content words, hashed into `dim` buckets): the agreement cosine without a model. Two
    captions that say the same with other words score low, so a disagreement is sent to review rather than kept;
    configure a sentence-embedding model (captions.embedder) for real runs."""

    name = "lexical"

    def __init__(self, dim: int = 4096):
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float64)
        for i, text in enumerate(texts):
            for w in re.findall(r"[a-z0-9]+", text.lower()):
                if w not in STOPWORDS:
                    out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        return out


def load_embedder(path: Optional[str]):
    """captions.embedder: a sentence-embedding model directory, or None for the lexical embedder."""
    if not path:
        return LexicalEmbedder()
    from medgrpo_ray.models.embedding import SentenceEmbedder

    try:
        return SentenceEmbedder(path)
    except ValueError as err:
        raise ValueError(f"curation field 'captions.embedder' = {path!r}: {err}") from None


def reason_key(reason: str) -> str:
    """A rejected caption's reason as a manifest key: `<provider>: <check>: <kind>` without the unit's details
    ("gpt: format: not JSON", "gemini: grounding: unsupported term", "gpt: provider error: server_error")."""
    if reason.startswith("disagree:"):
        return "disagree"
    if reason.startswith("still failing"):
        return "still failing after regeneration"
    who, _, rest = reason.partition(": ")
    check, _, detail = rest.partition(": ")
    if check == "provider error":
        m = re.search(r":\s*(\w+) after \d+ attempt", detail)
        kind = m.group(1) if m else "error"
    elif check == "format":
        kind = next((k for k in ("not JSON", "forbidden word", "timestamp", "refusal") if detail.startswith(k)),
                    "length" if re.match(r"\d+ words", detail) else "schema")
    elif check == "grounding":
        kind = "missing fact" if detail.startswith("missing") else "unsupported term"
    else:
        return reason[:80]
    return f"{who}: {check}: {kind}"


def _records(unit: CaptionUnit, d: Decision, models: Mapping[str, str]) -> tuple[list[dict], list[str]]:
    keep, rejected = [], []
    for rec in caption_records(unit, d, models):
        problem = dvc_problem(rec) if unit.task == "dense_captioning" else None
        if problem:
            rejected.append(f"{rec['qa_type']}: {problem}")
        else:
            keep.append(rec)
    return keep, rejected


async def _ask(provider, unit: CaptionUnit, missing, slots: asyncio.Semaphore) -> str | ProviderError:
    async with slots:
        try:
            return await provider.acaption(unit, missing)
        except Exception as exc:  # noqa: BLE001 - a provider that breaks is an input of the rule, not a crash
            return ProviderError(f"{provider.name}: error after 1 attempt(s): "
                                 f"{provider.scrub(f'{type(exc).__name__}: {exc}')[:300]}")


def run_units(units: Sequence[CaptionUnit], provider_a, provider_b, embedder,
              settings: Optional[ValidationSettings] = None, *, max_in_flight: int = 32,
              judge: Optional[Callable[[CaptionUnit, str, str], Optional[float]]] = None,
              on_done: Optional[Callable[[UnitOutcome], None]] = None) -> list[UnitOutcome]:
    """Caption, decide and (once) regenerate every unit; returns the outcomes in unit order. Blocks; call it from
    a thread without a running event loop."""
    s = settings or ValidationSettings()
    names = (provider_a.name, provider_b.name)
    if names[0] == names[1]:
        raise ValueError(f"the two caption providers share the name {names[0]!r}; their records would collide")
    if max_in_flight < 1:
        raise ValueError(f"captions.max_in_flight={max_in_flight} must be >= 1")
    models = {provider_a.name: provider_a.model, provider_b.name: provider_b.model}
    units = list(units)
    outcomes: list[Optional[UnitOutcome]] = [None] * len(units)

    def judge_unit(unit: CaptionUnit, ra, rb, attempt: int) -> Decision:
        return decide(unit, ra, rb, attempt, embedder=embedder, judge=judge, settings=s, providers=names)

    async def one(i: int, slots: asyncio.Semaphore, helper: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        unit, missing, reasons, first = units[i], None, [], None
        for attempt in range(s.max_attempts):
            ra, rb = await asyncio.gather(_ask(provider_a, unit, missing, slots),
                                          _ask(provider_b, unit, missing, slots))
            d = await loop.run_in_executor(helper, judge_unit, unit, ra, rb, attempt)
            first = first or d
            reasons += [reason_key(r) for r in d.reasons]
            if d.kind != "regenerate":
                break
            missing = d.missing
        kept, rejected = _records(unit, d, models)
        review = _records(unit, replace(d, kept=list(names)), models)[0] if d.kind == "review" else []
        outcomes[i] = out = UnitOutcome(unit, d, first, attempt + 1, reasons, kept, rejected, review)
        if on_done is not None:
            on_done(out)

    async def main() -> None:
        slots = asyncio.Semaphore(max_in_flight)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(units)):
            queue.put_nowait(i)

        async def worker(helper: ThreadPoolExecutor) -> None:
            while not queue.empty():
                await one(queue.get_nowait(), slots, helper)

        with ThreadPoolExecutor(1, thread_name_prefix="caption-decide") as helper:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(max_in_flight, len(units))):
                    group.create_task(worker(helper))

    if units:
        asyncio.run(main())
    return outcomes  # type: ignore[return-value]


def generate_and_decide(units: Sequence[CaptionUnit], provider_a, provider_b, embedder,
                        settings: Optional[ValidationSettings] = None, *,
                        judge: Optional[Callable[[CaptionUnit, str, str], Optional[float]]] = None,
                        max_in_flight: int = 32) -> tuple[list[dict], Counter]:
    """`run_units` for callers that want everything at once: (records of the kept captions in unit order, Counter
    of final decision kinds); the kind -> reason table is logged."""
    outcomes = run_units(units, provider_a, provider_b, embedder, settings, max_in_flight=max_in_flight, judge=judge)
    log.info("captions: decisions %s", count_decisions(o.decision for o in outcomes))
    return [r for o in outcomes for r in o.records], Counter(o.decision.kind for o in outcomes)


def estimate(units: Sequence[CaptionUnit], providers: Sequence, chars_per_token: float,
             output_tokens: Mapping[str, int], max_attempts: int, max_frames: int = 0,
             tokens_per_image: int = 0) -> dict:
    """--dry-run: per provider, the units per task, requests, tokens and cost in USD at its configured prices (the
    first generation; `*_max` if every unit were regenerated). Input tokens = prompt characters / chars_per_token
    + the frames sent (at most `max_frames` per unit) x tokens_per_image; frames are not rendered for the plan."""
    from medgrpo_ray.curation.providers import messages_for, text_of

    by_task = Counter(u.task for u in units)
    chars = sum(len(text_of(m["content"])) for u in units for m in messages_for(u))
    images = sum(min(max_frames, len(u.frame_lines)) for u in units)
    tokens_in = int(round(chars / chars_per_token)) + images * tokens_per_image
    tokens_out = sum(output_tokens[t] * n for t, n in by_task.items())
    out = {}
    for p in providers:
        cost = (tokens_in * p.price_per_1k_input + tokens_out * p.price_per_1k_output) / 1000.0
        out[p.name] = {"model": p.model, "units_by_task": dict(sorted(by_task.items())), "requests": len(units),
                       "requests_max": len(units) * max_attempts, "images": images, "input_tokens": tokens_in,
                       "output_tokens": tokens_out, "cost_usd": round(cost, 4),
                       "cost_usd_max": round(cost * max_attempts, 4),
                       "prices_per_1k": {"input": p.price_per_1k_input, "output": p.price_per_1k_output}}
    return out
