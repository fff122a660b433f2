"""The medical LLM judge: caption pairs -> prompt -> chat call (medgrpo_ray.llm.chat) -> parsed scores -> cache.

A JudgeClient holds one ChatClient (one event loop, the retries, pacing and accounting). Every caller, sync
(`score_pairs`, from any thread) or async (`ascore_pairs`, from any loop), runs its batch on that loop, so the
in-flight deduplication, the persistent cache and the counters are shared by all of them. A pair never raises:
a failure comes back as JudgeResult(error=...) after its retry budget is spent. Settings: the `judge:` section
(medgrpo_ray/config/schema.py, JudgeConfig), the one place for their defaults.
"""
from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from medgrpo_ray.judge.cache import JudgeCache, cache_key
from medgrpo_ray.judge.prompt import PROMPT_VERSION, TASK_SUBJECT, build_prompt, detect_injection, parse_reply
from medgrpo_ray.judge.types import JudgeResult
from medgrpo_ray.llm.chat import ChatClient, ChatSettings

if TYPE_CHECKING:
    from medgrpo_ray.config.schema import JudgeConfig

log = logging.getLogger(__name__)
_TRANSPORT_FIELDS = ("calls", "retries", "prompt_tokens", "completion_tokens", "cost_usd", "attempt_errors")


@dataclass
class JudgeStats:
    """Counters since the client was built. Per pair: pairs = scored + failed + cache_hits + dedup_hits +
    skipped_empty. Per HTTP request: calls = scored + failed + retries (each own call's first attempt + retries)."""

    pairs: int = 0
    scored: int = 0  # pairs scored by a call of their own
    failed: int = 0  # pairs whose own call failed after its retries
    cache_hits: int = 0  # pairs answered by the persistent cache
    dedup_hits: int = 0  # pairs that shared another pair's call (same text, in the batch or in flight)
    skipped_empty: int = 0  # empty prediction or reference: nothing to judge, no call
    calls: int = 0  # HTTP requests sent
    retries: int = 0
    flagged_injections: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    failures: Counter = field(default_factory=Counter)  # reason -> failed pairs (own calls)
    attempt_errors: Counter = field(default_factory=Counter)  # reason -> failed attempts (incl. retried ones)

    def copy(self) -> "JudgeStats":
        return JudgeStats(**{**self.__dict__, "failures": Counter(self.failures), "attempt_errors": Counter(self.attempt_errors)})

    def as_metrics(self, prefix: str = "judge/") -> dict[str, float]:
        """Flat, namespaced numbers for the metrics logger."""
        out = {f"{prefix}{k}": float(v) for k, v in self.__dict__.items() if not isinstance(v, Counter)}
        out.update({f"{prefix}failures/{k}": float(v) for k, v in self.failures.items()})
        out.update({f"{prefix}attempt_errors/{k}": float(v) for k, v in self.attempt_errors.items()})
        return out


@dataclass(frozen=True)
class _Outcome:
    scores: dict[str, int] | None
    error: str | None
    reason: str | None
    attempts: int
    source: str  # "call" or "cache"


class JudgeClient:
    """CaptionJudge over an OpenAI-compatible chat endpoint. Use as a context manager or call close()."""

    def __init__(self, cfg: "JudgeConfig"):
        self.config = copy.copy(cfg)  # later edits of the caller's config do not reach a running client
        self._chat = ChatClient(ChatSettings.from_config(cfg, "judge"))
        self._model = self._chat.settings.model
        try:
            self.cache = JudgeCache(os.path.expanduser(cfg.cache_dir)) if cfg.cache_dir else None
        except Exception:
            self._chat.close()
            raise
        self._stats = JudgeStats()  # pair counters; the transport's come from the ChatClient
        self._inflight: dict[str, asyncio.Future[_Outcome]] = {}

    def __repr__(self) -> str:
        return f"JudgeClient(model={self._model!r}, base_url={self._chat.settings.base_url!r}, prompt={PROMPT_VERSION!r})"

    # ---- public API ---------------------------------------------------------------------------------------
    def score_pairs(self, pairs: Sequence[tuple[str, str]], task: str) -> list[JudgeResult]:
        """Judge (prediction, reference) pairs of a caption `task`; blocks until every pair is scored or failed."""
        if self._chat.on_loop_thread():
            raise RuntimeError("JudgeClient.score_pairs was called on the judge's own event loop; await ascore_pairs instead")
        self._check_open()
        return self._chat.run(self._score_batch(list(pairs), task))

    async def ascore_pairs(self, pairs: Sequence[tuple[str, str]], task: str) -> list[JudgeResult]:
        """Async form of score_pairs, callable from any event loop."""
        self._check_open()
        return await self._chat.arun(self._score_batch(list(pairs), task))

    def stats(self) -> JudgeStats:
        """A consistent snapshot of the counters (taken on the judge's loop, which is the only writer)."""
        if self._chat.closed or self._chat.on_loop_thread():
            return self._snapshot()

        async def snapshot() -> JudgeStats:
            return self._snapshot()

        return self._chat.run(snapshot())

    def close(self) -> None:
        """Close the chat client (HTTP client, loop thread) and the cache (idempotent)."""
        if self._chat.closed:
            return
        self._chat.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> "JudgeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- batch --------------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._chat.closed:
            raise RuntimeError("JudgeClient is closed; build a new one with build_judge(cfg.judge)")

    def _snapshot(self) -> JudgeStats:
        chat = self._chat.stats()
        return dataclasses.replace(self._stats.copy(), **{name: getattr(chat, name) for name in _TRANSPORT_FIELDS})

    async def _score_batch(self, pairs: list[tuple[str, str]], task: str) -> list[JudgeResult]:
        if task not in TASK_SUBJECT:
            raise ValueError(f"judge task {task!r} is not a caption task; expected one of {', '.join(TASK_SUBJECT)}")
        st = self._stats
        st.pairs += len(pairs)
        keys: list[str | None] = []
        flags: list[tuple[str, ...]] = []
        for pred, ref in pairs:
            flags.append(detect_injection(pred))
            empty = not (pred or "").strip() or not (ref or "").strip()
            keys.append(None if empty else cache_key(self._model, PROMPT_VERSION, task, pred, ref))
        st.flagged_injections += sum(1 for f in flags if f)
        if any(flags):
            log.info("judge: %d of %d predictions address the grader (flagged, scored as quoted data)", sum(map(bool, flags)), len(pairs))

        # Join calls already in flight; register a future for every other unique key before any await.
        loop = asyncio.get_running_loop()
        owners: dict[str, int] = {}  # key -> index of the pair that makes the call
        futures: dict[str, asyncio.Future[_Outcome]] = {}
        for i, key in enumerate(keys):
            if key is None or key in futures:
                continue
            if key in self._inflight:
                futures[key] = self._inflight[key]
            else:
                futures[key] = self._inflight[key] = loop.create_future()
                owners[key] = i
        if owners:  # a task of its own, so a cancelled caller never strands a future others may have joined
            self._chat.spawn(self._resolve({key: pairs[i] for key, i in owners.items()}, task))
        if futures:
            await asyncio.wait(list(futures.values()))

        results = []
        for i, key in enumerate(keys):
            if key is None:
                st.skipped_empty += 1
                results.append(JudgeResult(error="empty prediction or reference: nothing to judge", flagged_injection=bool(flags[i]),
                                           cached=True, extra={"source": "skipped", "reason": "empty", "injection": flags[i]}))
                continue
            out = futures[key].result()
            source = out.source if owners.get(key) == i else "dedup"
            if source == "cache":
                st.cache_hits += 1
            elif source == "dedup":
                st.dedup_hits += 1
            elif out.scores is not None:
                st.scored += 1
            else:
                st.failed += 1
                st.failures[out.reason or "error"] += 1
            results.append(JudgeResult(scores=out.scores, error=out.error, flagged_injection=bool(flags[i]), cached=source != "call",
                                       attempts=out.attempts if source == "call" else 0,
                                       extra={"source": source, "reason": out.reason, "injection": flags[i]}))
        return results

    async def _resolve(self, owned: dict[str, tuple[str, str]], task: str) -> None:
        """Answer owned keys from the persistent cache, then start one call per remaining key."""
        found: dict[str, dict[str, int]] = {}
        if self.cache is not None:
            try:
                found = await asyncio.to_thread(self.cache.get_many, list(owned))
            except Exception as exc:  # the cache is an optimisation: fall through to calls
                log.warning("judge cache read failed (%s); calling the judge instead", exc)
        for key, (pred, ref) in owned.items():
            future = self._inflight.get(key)
            if future is None or future.done():
                continue
            if key in found:
                self._inflight.pop(key, None)
                future.set_result(_Outcome(found[key], None, None, 0, "cache"))
            else:
                self._chat.spawn(self._call_into(key, future, pred, ref, task))

    # ---- one call -----------------------------------------------------------------------------------------
    async def _call_into(self, key: str, future: asyncio.Future[_Outcome], pred: str, ref: str, task: str) -> None:
        try:
            outcome = await self._call(pred, ref, task)
            if outcome.scores is not None and self.cache is not None:
                try:
                    await asyncio.to_thread(self.cache.put, key, outcome.scores, model=self._model,
                                            prompt_version=PROMPT_VERSION, task=task)
                except Exception as exc:
                    log.warning("judge cache write failed (%s); the score is kept for this run only", exc)
        except Exception as exc:  # a bug must not lose the pair: report it as a failure
            outcome = _Outcome(None, f"error: {self._chat.scrub(repr(exc))}", "error", 0, "call")
        finally:
            self._inflight.pop(key, None)
        if not future.done():
            future.set_result(outcome)

    async def _call(self, pred: str, ref: str, task: str) -> _Outcome:
        async def attempt() -> dict[str, int]:
            prompt = build_prompt(pred, ref, task)  # a fresh nonce per attempt
            return parse_reply(await self._chat.complete(prompt.messages), prompt.nonce)

        out = await self._chat.with_retries(attempt)
        return _Outcome(out.value, out.error, out.reason, out.attempts, "call")


def build_judge(cfg: "JudgeConfig") -> JudgeClient:
    """The judge the evaluator and the caption rewards use, from the `judge:` config section (reads the API key
    from the variable named by cfg.api_key_env)."""
    return JudgeClient(cfg)
