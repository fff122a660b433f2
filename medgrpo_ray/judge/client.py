"""The medical LLM judge client: async OpenAI-compatible calls with retries, rate limits, caching and accounting.

One JudgeClient owns one background event loop. Every caller, sync (`score_pairs`, from any thread) or async
(`ascore_pairs`, from any loop), runs its batch on that loop, so the in-flight bound, the requests-per-minute
limit, the in-flight deduplication and the counters are shared by all of them. A pair never raises: a failure
comes back as JudgeResult(error=...) after its retry budget is spent.

Secrets: the settings hold only the *name* of the environment variable with the API key; the key is read
when the client is built, is never logged or cached, and is scrubbed from error messages.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from email.utils import parsedate_to_datetime
from time import time as wall_time
from typing import Any, Sequence

from medgrpo_ray.judge.cache import JudgeCache, cache_key
from medgrpo_ray.judge.prompt import PROMPT_VERSION, TASK_SUBJECT, ReplyFormatError, build_prompt, detect_injection, parse_reply
from medgrpo_ray.judge.types import JudgeResult

log = logging.getLogger(__name__)

_RETRYABLE = frozenset({"rate_limited", "server_error", "timeout", "connection", "unparseable", "malformed_response",
                        "http_408", "http_409"})


@dataclass(frozen=True)
class JudgeSettings:
    """How to reach and pace the judge. Field names follow the `judge:` config section; no secret is stored."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4.1"
    api_key_env: str = "OPENAI_API_KEY"  # name of the variable holding the key; "" for servers that need none
    timeout_s: float = 30.0  # whole-call deadline of one attempt
    max_attempts: int = 4  # attempts per call, first included
    backoff_initial_s: float = 1.0  # exponential backoff 1, 2, 4, ... s plus up to this much jitter
    backoff_max_s: float = 60.0  # cap on one wait, Retry-After included
    max_in_flight: int = 32  # calls in flight at once, all callers together
    requests_per_minute: float = 0.0  # shared rate limit; 0 disables
    cache_dir: str | None = None  # persistent cache directory; None disables (in-flight dedup still applies)
    temperature: float = 0.0
    max_tokens: int = 200  # the reply is ~60 tokens; the cap bounds the cost of a rambling judge
    price_per_1k_input: float = 0.002  # USD, GPT-4.1 list price, for cost accounting only
    price_per_1k_output: float = 0.008

    def __post_init__(self) -> None:
        checks = {
            "timeout_s": self.timeout_s > 0, "max_attempts": self.max_attempts >= 1,
            "backoff_initial_s": self.backoff_initial_s >= 0, "backoff_max_s": self.backoff_max_s >= 0,
            "max_in_flight": self.max_in_flight >= 1, "requests_per_minute": self.requests_per_minute >= 0,
            "temperature": self.temperature >= 0, "max_tokens": self.max_tokens >= 1,
            "price_per_1k_input": self.price_per_1k_input >= 0, "price_per_1k_output": self.price_per_1k_output >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"judge.{name}={getattr(self, name)!r} is out of range; see JudgeSettings for its meaning")
        if not self.base_url or not self.model:
            raise ValueError("judge.base_url and judge.model must be set (an OpenAI-compatible endpoint and a model name)")


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


class _MalformedResponse(Exception):
    """The HTTP response is not a chat completion (no choices[0].message.content)."""


def _reason(exc: BaseException) -> str:
    import openai

    if isinstance(exc, openai.RateLimitError):
        return "rate_limited"
    if isinstance(exc, (openai.APITimeoutError, asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.APIStatusError):
        return "server_error" if exc.status_code >= 500 else f"http_{exc.status_code}"
    if isinstance(exc, ReplyFormatError):
        return "unparseable"
    if isinstance(exc, (_MalformedResponse, openai.APIResponseValidationError, json.JSONDecodeError)):
        return "malformed_response"
    return "error"


def _retry_after_s(exc: BaseException | None) -> float | None:
    """Seconds asked for by a 429/503's Retry-After (or OpenAI's retry-after-ms) header, if any."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    try:
        if headers.get("retry-after-ms") is not None:
            return float(headers["retry-after-ms"]) / 1000.0
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            return parsedate_to_datetime(value).timestamp() - wall_time()
    except (TypeError, ValueError):
        return None


class _RateLimiter:
    """Spaces request starts 60/rpm seconds apart, shared by everything on one loop (no bursts)."""

    def __init__(self, requests_per_minute: float):
        self.interval = 60.0 / requests_per_minute if requests_per_minute > 0 else 0.0
        self._next = 0.0

    async def acquire(self) -> None:
        if not self.interval:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class JudgeClient:
    """CaptionJudge over an OpenAI-compatible chat endpoint. Use as a context manager or call close()."""

    def __init__(self, settings: JudgeSettings):
        import openai

        self.settings = settings
        key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else "not-needed"
        if not key:
            raise ValueError(
                f"judge.api_key_env: environment variable {settings.api_key_env!r} is not set or empty; export the "
                "judge's API key under that name, or set judge.api_key_env to the variable that holds it "
                "('' for a local server without authentication)"
            )
        self._secret = key
        self._openai = openai.AsyncOpenAI(base_url=settings.base_url, api_key=key, timeout=settings.timeout_s, max_retries=0)
        self.cache = JudgeCache(os.path.expanduser(settings.cache_dir)) if settings.cache_dir else None
        self._stats = JudgeStats()
        self._inflight: dict[str, asyncio.Future[_Outcome]] = {}
        self._limiter = _RateLimiter(settings.requests_per_minute)
        self._loop = asyncio.new_event_loop()
        self._semaphore: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="medgrpo-judge-loop", daemon=True)
        self._thread.start()
        self._closed = False

    def __repr__(self) -> str:
        return f"JudgeClient(model={self.settings.model!r}, base_url={self.settings.base_url!r}, prompt={PROMPT_VERSION!r})"

    # ---- public API ---------------------------------------------------------------------------------------
    def score_pairs(self, pairs: Sequence[tuple[str, str]], task: str) -> list[JudgeResult]:
        """Judge (prediction, reference) pairs of a caption `task`; blocks until every pair is scored or failed."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("JudgeClient.score_pairs was called on the judge's own event loop; await ascore_pairs instead")
        return asyncio.run_coroutine_threadsafe(self._score_batch(list(pairs), task), self._live_loop()).result()

    async def ascore_pairs(self, pairs: Sequence[tuple[str, str]], task: str) -> list[JudgeResult]:
        """Async form of score_pairs, callable from any event loop."""
        if asyncio.get_running_loop() is self._loop:
            return await self._score_batch(list(pairs), task)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._score_batch(list(pairs), task), self._live_loop()))

    def stats(self) -> JudgeStats:
        """A consistent snapshot of the counters (taken on the judge's loop, which is the only writer)."""
        if self._closed or threading.current_thread() is self._thread:
            return self._stats.copy()

        async def snapshot() -> JudgeStats:
            return self._stats.copy()

        return asyncio.run_coroutine_threadsafe(snapshot(), self._loop).result()

    def close(self) -> None:
        """Close the HTTP client, stop the loop thread and close the cache (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._openai.close(), self._loop).result(timeout=10)
        except Exception as exc:  # closing is best effort
            log.debug("judge HTTP client close failed: %s", type(exc).__name__)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> "JudgeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- batch --------------------------------------------------------------------------------------------
    def _live_loop(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise RuntimeError("JudgeClient is closed; build a new one with build_judge(settings)")
        return self._loop

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
            keys.append(None if empty else cache_key(self.settings.model, PROMPT_VERSION, task, pred, ref))
        st.flagged_injections += sum(1 for f in flags if f)
        if any(flags):
            log.info("judge: %d of %d predictions address the grader (flagged, scored as quoted data)", sum(map(bool, flags)), len(pairs))

        # Join calls already in flight; register a future for every other unique key before any await.
        owners: dict[str, int] = {}  # key -> index of the pair that makes the call
        futures: dict[str, asyncio.Future[_Outcome]] = {}
        for i, key in enumerate(keys):
            if key is None or key in futures:
                continue
            if key in self._inflight:
                futures[key] = self._inflight[key]
            else:
                futures[key] = self._inflight[key] = self._loop.create_future()
                owners[key] = i
        if owners:  # a task of its own, so a cancelled caller never strands a future others may have joined
            self._spawn(self._resolve({key: pairs[i] for key, i in owners.items()}, task))
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

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

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
                self._spawn(self._call_into(key, future, pred, ref, task))

    # ---- one call -----------------------------------------------------------------------------------------
    async def _call_into(self, key: str, future: asyncio.Future[_Outcome], pred: str, ref: str, task: str) -> None:
        try:
            outcome = await self._call(pred, ref, task)
            if outcome.scores is not None and self.cache is not None:
                try:
                    await asyncio.to_thread(self.cache.put, key, outcome.scores, model=self.settings.model,
                                            prompt_version=PROMPT_VERSION, task=task)
                except Exception as exc:
                    log.warning("judge cache write failed (%s); the score is kept for this run only", exc)
        except Exception as exc:  # a bug must not lose the pair: report it as a failure
            outcome = _Outcome(None, f"error: {self._scrub(repr(exc))}", "error", 0, "call")
        finally:
            self._inflight.pop(key, None)
        if not future.done():
            future.set_result(outcome)

    async def _call(self, pred: str, ref: str, task: str) -> _Outcome:
        import tenacity as tn

        attempts = 0
        retrying = tn.AsyncRetrying(
            stop=tn.stop_after_attempt(self.settings.max_attempts),
            wait=self._wait,
            retry=tn.retry_if_exception(lambda e: _reason(e) in _RETRYABLE),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    if attempts > 1:
                        self._stats.retries += 1
                    try:
                        scores = await self._attempt(pred, ref, task)
                    except Exception as exc:
                        self._stats.attempt_errors[_reason(exc)] += 1
                        log.debug("judge attempt %d failed: %s", attempts, _reason(exc))
                        raise
            return _Outcome(scores, None, None, attempts, "call")
        except Exception as exc:
            reason = _reason(exc)
            error = f"{reason} after {attempts} attempt(s): {self._scrub(str(exc))[:300]}"
            log.warning("judge call failed: %s", error)
            return _Outcome(None, error, reason, attempts, "call")

    def _wait(self, retry_state: Any) -> float:
        """initial * (2^(n-1) + U[0, 1)) after attempt n, capped; a server's Retry-After wins when longer (capped)."""
        s = self.settings
        backoff = min(s.backoff_max_s, s.backoff_initial_s * (2 ** (retry_state.attempt_number - 1) + random.random()))
        after = _retry_after_s(retry_state.outcome.exception() if retry_state.outcome else None)
        if after is not None and after > backoff:
            return min(self.settings.backoff_max_s, after * (1.0 + 0.1 * random.random()))
        return backoff

    async def _attempt(self, pred: str, ref: str, task: str) -> dict[str, int]:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.settings.max_in_flight)
        prompt = build_prompt(pred, ref, task)
        async with self._semaphore:
            await self._limiter.acquire()
            self._stats.calls += 1
            response = await asyncio.wait_for(
                self._openai.chat.completions.create(
                    model=self.settings.model, messages=prompt.messages,
                    temperature=self.settings.temperature, max_tokens=self.settings.max_tokens,
                ),
                timeout=self.settings.timeout_s,
            )
        self._account(getattr(response, "usage", None))
        try:
            content = response.choices[0].message.content
        except (AttributeError, IndexError, TypeError, KeyError):
            raise _MalformedResponse(f"response is not a chat completion: {type(response).__name__}") from None
        return parse_reply(content, prompt.nonce)

    def _account(self, usage: Any) -> None:
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        self._stats.prompt_tokens += prompt_tokens
        self._stats.completion_tokens += completion_tokens
        self._stats.cost_usd += (prompt_tokens * self.settings.price_per_1k_input
                                 + completion_tokens * self.settings.price_per_1k_output) / 1000.0

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


def settings_from_config(judge_cfg) -> JudgeSettings:
    """JudgeSettings from the `judge:` section of the experiment config (same field names; "" cache = off)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(JudgeSettings)}
    values = {n: getattr(judge_cfg, n) for n in names if hasattr(judge_cfg, n)}
    values["cache_dir"] = str(Path(values["cache_dir"]).expanduser()) if values.get("cache_dir") else None
    return JudgeSettings(**values)


def build_judge(settings: JudgeSettings) -> JudgeClient:
    """The judge the evaluator and the caption rewards use (reads the API key from settings.api_key_env)."""
    return JudgeClient(settings)
