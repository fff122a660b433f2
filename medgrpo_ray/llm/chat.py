"""OpenAI-compatible chat transport: one background event loop per client, retries that honour Retry-After, a
shared rate limit and in-flight bound, per-attempt timeouts, token and cost accounting, secret redaction.

It knows nothing about what is asked: the caller builds the messages and parses the reply inside an attempt
function, and `with_retries` retries that function (judge/client.py is one caller). Every request of a client
runs on the client's loop, so the bounds and the counters are shared by all callers, sync (`run`, from any
thread) or async (`arun`, from any loop).

Secrets: the settings hold only the *name* of the environment variable with the API key; the key is read when
the client is built, handed to the HTTP client only, never logged, and scrubbed from error messages.
`openai` and `tenacity` are imported inside functions, so importing this module stays light.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
from collections import Counter
from dataclasses import dataclass, field, fields
from email.utils import parsedate_to_datetime
from time import time as wall_time
from typing import Any, Awaitable, Callable, Coroutine, Generic, Sequence, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# Failure reasons (see `failure_reason`) worth another attempt; other 4xx and unknown errors fail at once.
RETRYABLE = frozenset({"rate_limited", "server_error", "timeout", "connection", "unparseable", "malformed_response",
                       "http_408", "http_409"})


class ReplyError(ValueError):
    """Raised by a caller's reply parser when the reply's content is unusable: retried as `unparseable`."""


class MalformedResponse(Exception):
    """The HTTP response is not a chat completion (no choices[0].message.content)."""


@dataclass(frozen=True)
class ChatSettings:
    """How to reach and pace one endpoint. No defaults here: the config section the values come from owns them
    (`from_config`). `section` is that section's name; errors and logs call the fields `<section>.<field>`."""

    base_url: str
    model: str
    api_key_env: str  # name of the variable holding the key; "" for servers that need none
    timeout_s: float  # deadline of one attempt (asyncio) and the HTTP timeout
    max_attempts: int  # attempts per request, first included
    backoff_initial_s: float  # exponential backoff initial * (1, 2, 4, ...) plus up to initial of jitter
    backoff_max_s: float  # cap on one wait, Retry-After included
    max_in_flight: int  # requests in flight at once, all callers together
    requests_per_minute: float  # shared rate limit; 0 disables
    temperature: float
    max_tokens: int
    price_per_1k_input: float  # USD, for cost accounting only
    price_per_1k_output: float
    section: str = "llm"

    def __post_init__(self) -> None:
        rules = {
            "timeout_s": (self.timeout_s > 0, "> 0"), "max_attempts": (self.max_attempts >= 1, ">= 1"),
            "backoff_initial_s": (self.backoff_initial_s >= 0, ">= 0"), "backoff_max_s": (self.backoff_max_s >= 0, ">= 0"),
            "max_in_flight": (self.max_in_flight >= 1, ">= 1"), "requests_per_minute": (self.requests_per_minute >= 0, ">= 0"),
            "temperature": (self.temperature >= 0, ">= 0"), "max_tokens": (self.max_tokens >= 1, ">= 1"),
            "price_per_1k_input": (self.price_per_1k_input >= 0, ">= 0"),
            "price_per_1k_output": (self.price_per_1k_output >= 0, ">= 0"),
        }
        for name, (ok, rule) in rules.items():
            if not ok:
                raise ValueError(f"{self.section}.{name}={getattr(self, name)!r} is out of range: it must be {rule}; "
                                 f"set {self.section}.{name}=<value>")
        if not self.base_url or not self.model:
            raise ValueError(f"{self.section}.base_url and {self.section}.model must be set "
                             "(an OpenAI-compatible endpoint and a model name)")

    @classmethod
    def from_config(cls, cfg: Any, section: str) -> "ChatSettings":
        """The transport fields of config section `section` (any object with these attributes, e.g. a dataclass)."""
        names = [f.name for f in fields(cls) if f.name != "section"]
        missing = [n for n in names if not hasattr(cfg, n)]
        if missing:
            raise ValueError(f"config section {section!r} lacks the chat settings {missing}; add them to its schema")
        return cls(**{n: getattr(cfg, n) for n in names}, section=section)


@dataclass
class ChatStats:
    """Transport counters since the client was built: calls = first attempts + retries."""

    calls: int = 0  # HTTP requests sent
    retries: int = 0  # attempts after the first
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    attempt_errors: Counter = field(default_factory=Counter)  # reason -> failed attempts (retried ones included)

    def copy(self) -> "ChatStats":
        return ChatStats(**{**self.__dict__, "attempt_errors": Counter(self.attempt_errors)})


@dataclass(frozen=True)
class ChatOutcome(Generic[T]):
    """What `with_retries` returns: the attempt's value, or why there is none after the retry budget."""

    value: T | None
    error: str | None  # "<reason> after <n> attempt(s): <message>", secrets scrubbed
    reason: str | None  # a `failure_reason`
    attempts: int

    @property
    def ok(self) -> bool:
        return self.error is None


def failure_reason(exc: BaseException) -> str:
    """A short, stable name for why an attempt failed (metrics key; RETRYABLE decides what is retried)."""
    import openai

    if isinstance(exc, openai.RateLimitError):
        return "rate_limited"
    if isinstance(exc, (openai.APITimeoutError, asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.APIStatusError):
        return "server_error" if exc.status_code >= 500 else f"http_{exc.status_code}"
    if isinstance(exc, ReplyError):
        return "unparseable"
    if isinstance(exc, (MalformedResponse, openai.APIResponseValidationError, json.JSONDecodeError)):
        return "malformed_response"
    return "error"


def retry_after_s(exc: BaseException | None) -> float | None:
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


class ChatClient:
    """Chat completions from one OpenAI-compatible endpoint on a loop of its own. Use as a context manager or
    call close(). Only the loop's thread writes the counters; coroutines passed to run/arun/spawn run there."""

    def __init__(self, settings: ChatSettings):
        import openai

        self.settings = settings
        s = settings
        key = os.environ.get(s.api_key_env, "") if s.api_key_env else "not-needed"
        if not key:
            raise ValueError(
                f"{s.section}.api_key_env: environment variable {s.api_key_env!r} is not set or empty; export the "
                f"API key under that name, or set {s.section}.api_key_env to the variable that holds it "
                "('' for a local server without authentication)"
            )
        self._secret = key
        self._openai = openai.AsyncOpenAI(base_url=s.base_url, api_key=key, timeout=s.timeout_s, max_retries=0)
        self._stats = ChatStats()
        self._limiter = _RateLimiter(s.requests_per_minute)
        self._semaphore: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"medgrpo-{s.section}-loop", daemon=True)
        self._thread.start()
        self.closed = False

    def __repr__(self) -> str:
        return f"ChatClient(section={self.settings.section!r}, model={self.settings.model!r}, base_url={self.settings.base_url!r})"

    # ---- running work on the client's loop -------------------------------------------------------------
    def on_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the client's loop and block until it is done (from any thread but the loop's own)."""
        if self.on_loop_thread():
            coro.close()
            raise RuntimeError(f"{self.settings.section}: a blocking call was made on the client's own event loop; "
                               "use the async form (await) there instead")
        return asyncio.run_coroutine_threadsafe(coro, self._live_loop(coro)).result()

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the client's loop, from any event loop."""
        if asyncio.get_running_loop() is self._loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._live_loop(coro)))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        """Start `coro` as a task on the client's loop (call from the loop); the client keeps it alive."""
        task = self._loop.create_task(coro)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)
        return task

    def _live_loop(self, coro: Coroutine[Any, Any, Any]) -> asyncio.AbstractEventLoop:
        if self.closed:
            coro.close()
            raise RuntimeError(f"{self!r} is closed; build a new client")
        return self._loop

    # ---- requests ------------------------------------------------------------------------------------------
    async def complete(self, messages: Sequence[dict[str, str]]) -> str | None:
        """One chat-completion attempt (on the client's loop): in-flight bound, rate limit, deadline, accounting.
        Returns the reply's content; raises on any failure (see `failure_reason`)."""
        s = self.settings
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(s.max_in_flight)
        async with self._semaphore:
            await self._limiter.acquire()
            self._stats.calls += 1
            response = await asyncio.wait_for(
                self._openai.chat.completions.create(model=s.model, messages=list(messages),
                                                     temperature=s.temperature, max_tokens=s.max_tokens),
                timeout=s.timeout_s,
            )
        self._account(getattr(response, "usage", None))
        try:
            return response.choices[0].message.content
        except (AttributeError, IndexError, TypeError, KeyError):
            raise MalformedResponse(f"response is not a chat completion: {type(response).__name__}") from None

    async def with_retries(self, attempt: Callable[[], Awaitable[T]]) -> ChatOutcome[T]:
        """Run `attempt` (typically: build messages, `complete`, parse) until it succeeds, fails for a reason not
        in RETRYABLE, or `max_attempts` are spent. Never raises for a failed attempt: the outcome says why."""
        import tenacity as tn

        s = self.settings
        attempts = 0
        retrying = tn.AsyncRetrying(stop=tn.stop_after_attempt(s.max_attempts), wait=self._wait,
                                    retry=tn.retry_if_exception(lambda e: failure_reason(e) in RETRYABLE), reraise=True)
        try:
            async for try_ in retrying:
                with try_:
                    attempts += 1
                    if attempts > 1:
                        self._stats.retries += 1
                    try:
                        value = await attempt()
                    except Exception as exc:
                        self._stats.attempt_errors[failure_reason(exc)] += 1
                        log.debug("%s attempt %d failed: %s", s.section, attempts, failure_reason(exc))
                        raise
            return ChatOutcome(value, None, None, attempts)
        except Exception as exc:
            reason = failure_reason(exc)
            error = f"{reason} after {attempts} attempt(s): {self.scrub(str(exc))[:300]}"
            log.warning("%s call failed: %s", s.section, error)
            return ChatOutcome(None, error, reason, attempts)

    def _wait(self, retry_state: Any) -> float:
        """initial * (2^(n-1) + U[0, 1)) after attempt n, capped; a server's Retry-After wins when longer (capped)."""
        s = self.settings
        backoff = min(s.backoff_max_s, s.backoff_initial_s * (2 ** (retry_state.attempt_number - 1) + random.random()))
        after = retry_after_s(retry_state.outcome.exception() if retry_state.outcome else None)
        if after is not None and after > backoff:
            return min(s.backoff_max_s, after * (1.0 + 0.1 * random.random()))
        return backoff

    def _account(self, usage: Any) -> None:
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        self._stats.prompt_tokens += prompt_tokens
        self._stats.completion_tokens += completion_tokens
        self._stats.cost_usd += (prompt_tokens * self.settings.price_per_1k_input
                                 + completion_tokens * self.settings.price_per_1k_output) / 1000.0

    def scrub(self, text: str) -> str:
        """`text` with the API key replaced by ***."""
        return text.replace(self._secret, "***") if self._secret else text

    # ---- counters and lifetime -----------------------------------------------------------------------------
    def stats(self) -> ChatStats:
        """A consistent snapshot of the counters (taken on the loop, their only writer)."""
        if self.closed or self.on_loop_thread():
            return self._stats.copy()

        async def snapshot() -> ChatStats:
            return self._stats.copy()

        return self.run(snapshot())

    def close(self) -> None:
        """Close the HTTP client and stop the loop thread (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._openai.close(), self._loop).result(timeout=10)
        except Exception as exc:  # closing is best effort
            log.debug("%s HTTP client close failed: %s", self.settings.section, type(exc).__name__)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> "ChatClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
