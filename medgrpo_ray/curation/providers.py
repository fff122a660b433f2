"""Caption providers over HTTP: one unit's structured input -> one OpenAI-compatible endpoint -> the raw reply (the
caption loop that decides and regenerates is curation/caption_run.py).

A `CaptionProvider` is one OpenAI-compatible chat endpoint (a hosted API or a local vLLM OpenAI server), configured
by a `ProviderConfig` (medgrpo_ray/config/curation.py) and built on `medgrpo_ray.llm.chat.ChatClient`, which owns
the transport: retries honouring Retry-After, the shared rate limit and in-flight bound, per-attempt deadlines,
token/cost counters, secret redaction. `caption(units)` (or `await acaption(unit)`, one unit, from any event loop) sends each unit's structured input text
with its JSON output instruction, and the unit's rendered frames (curation/caption_frames.py) as image parts when
attached, and returns the raw reply text per unit, or a `validate.ProviderError` naming the failure ("<failure_reason> after <n> attempt(s):
...", secrets scrubbed) once the retries are spent. It never raises for a failed unit; parsing and judging the
reply is `validate.decide`'s job.

Cache: one sqlite file per cache directory (`CaptionCache` on llm/reply_cache.py, WAL, INSERT OR REPLACE: each put
is one atomic statement, safe for threads and processes). The key is sha256 of (model, PROMPT_VERSION, sha256 of the exact
messages with each image as its digest, the provider's name), so a rerun makes no calls, a regeneration prompt (it names the missing facts) has a key of its own, and
a model or prompt change never reuses a reply. Only replies that arrived are stored (a malformed caption is a
reply: the rerun reaches the same decision without paying again); provider errors are not, so they are retried.
Rows hold hashes, model, prompt version and the reply text: no prompts, no credentials. judge/cache.py's class is
not reused: its rows are validated score dicts, not text.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from medgrpo_ray.curation.caption_units import PROMPT_VERSION, CaptionUnit
from medgrpo_ray.curation.validate import ProviderError
from medgrpo_ray.llm.chat import ChatClient, ChatSettings, MalformedResponse
from medgrpo_ray.llm.reply_cache import ReplyCache

if TYPE_CHECKING:
    from medgrpo_ray.config.curation import ProviderConfig

log = logging.getLogger(__name__)

SYSTEM_PROMPT = ("You write captions of surgical video clips for a training data set. You are given a structured "
                 "description of the clip's sampled frames and annotations. Follow the rules exactly and answer "
                 "with the requested JSON only.")


def messages_for(unit: CaptionUnit, missing: Optional[Sequence[str]] = None) -> list[dict]:
    """The chat messages of one unit (plus, on a regeneration, the facts the last captions missed). With frames
    attached (unit.images), the user content is OpenAI-compatible parts: the structured text, each sent frame's
    JPEG as an `image_url` data URL right after that frame's text line."""
    text = unit.input_text(list(missing) if missing else None)
    if not unit.images:
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]
    after = {f"<Frame {i}> ": im for i, im in zip(unit.image_frames, unit.images)}
    parts: list[dict] = []
    chunk: list[str] = []
    for line in text.split("\n"):
        chunk.append(line)
        image = after.get(line[:line.index(" t=") + 1]) if line.startswith("<Frame ") and " t=" in line else None
        if image is not None:
            parts.append({"type": "text", "text": "\n".join(chunk)})
            parts.append({"type": "image_url",
                          "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(image).decode("ascii")}})
            chunk = []
    if chunk:
        parts.append({"type": "text", "text": "\n".join(chunk)})
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": parts}]


def text_of(content) -> str:
    """A message's text: the string, or its text parts joined by newlines (images left out)."""
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if p.get("type") == "text")


def images_of(content) -> list[str]:
    """The image data URLs of a message's content parts."""
    return [] if isinstance(content, str) else [p["image_url"]["url"] for p in content if p.get("type") == "image_url"]


def input_hash(messages: Sequence[dict]) -> str:
    """sha256 of the exact messages, each image part standing as the sha256 of its data URL: the frames' digest is
    part of the cache key (other frames, another key) without hashing megabytes twice per request."""
    def canon(content):
        if isinstance(content, str):
            return content
        return [p if p.get("type") != "image_url" else
                {"type": "image_url", "sha256": hashlib.sha256(p["image_url"]["url"].encode("ascii")).hexdigest()}
                for p in content]

    blob = [{**m, "content": canon(m["content"])} for m in messages]
    return hashlib.sha256(json.dumps(blob, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()


def cache_key(model: str, prompt_version: str, input_digest: str, provider: str = "") -> str:
    """The reply's key: the provider's name too, so two providers serving one model (a local server under two
    names) keep their own samples instead of reading each other's replies."""
    return hashlib.sha256(json.dumps([model, prompt_version, input_digest, provider]).encode("utf-8")).hexdigest()


class CaptionCache:
    """Reply text by cache key in `<cache_dir>/caption_cache.sqlite3` (llm/reply_cache.py: WAL mode; a local disk,
    not NFS)."""

    FILENAME = "caption_cache.sqlite3"

    def __init__(self, cache_dir: str | Path, section: str = "provider"):
        self._store = ReplyCache(cache_dir, self.FILENAME, "caption_replies", "input_hash", "reply",
                                 f"{section}.cache_dir")
        self.path = self._store.path

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        return self._store.get_many(keys)

    def put(self, key: str, reply: str, *, model: str, prompt_version: str, input_digest: str) -> None:
        self._store.put(key, reply, model=model, prompt_version=prompt_version, tag=input_digest)

    def __len__(self) -> int:
        return len(self._store)

    def close(self) -> None:
        self._store.close()


def chat_settings(cfg: "ProviderConfig") -> ChatSettings:
    """The transport settings of a provider (max_retries retries = max_retries + 1 attempts)."""
    if cfg.max_retries < 0:
        raise ValueError(f"curation.providers.{cfg.name}.max_retries={cfg.max_retries} must be >= 0")
    return ChatSettings(base_url=cfg.base_url, model=cfg.model, api_key_env=cfg.api_key_env, timeout_s=cfg.timeout_s,
                        max_attempts=cfg.max_retries + 1, backoff_initial_s=cfg.backoff_initial_s,
                        backoff_max_s=cfg.backoff_max_s, max_in_flight=cfg.max_in_flight,
                        requests_per_minute=cfg.requests_per_minute, temperature=cfg.temperature,
                        max_tokens=cfg.max_tokens, price_per_1k_input=cfg.price_per_1k_input,
                        price_per_1k_output=cfg.price_per_1k_output, section=f"curation.providers.{cfg.name}")


class CaptionProvider:
    """One caption model behind an OpenAI-compatible endpoint. Use as a context manager or call close()."""

    def __init__(self, cfg: "ProviderConfig"):
        if not cfg.name:
            raise ValueError("curation.providers: a provider needs a name (the qa_type suffix, e.g. gpt or gemini)")
        self.name = cfg.name
        self.model = cfg.model
        self._chat = ChatClient(chat_settings(cfg))
        try:
            self.cache = CaptionCache(cfg.cache_dir, self._chat.settings.section) if cfg.cache_dir else None
        except Exception:
            self._chat.close()
            raise
        self.cache_hits = 0
        self.failures: Counter = Counter()  # failure_reason -> units

    def __repr__(self) -> str:
        return f"CaptionProvider(name={self.name!r}, model={self.model!r}, base_url={self._chat.settings.base_url!r})"

    def caption(self, units: Sequence[CaptionUnit],
                missing: Optional[Sequence[Optional[Sequence[str]]]] = None) -> list[str | ProviderError]:
        """Raw reply text per unit (or a ProviderError); `missing[i]` names the facts unit i's regeneration must
        include. Blocks until every unit is answered or failed."""
        if missing is not None and len(missing) != len(units):
            raise ValueError(f"missing has {len(missing)} entries for {len(units)} units")
        msgs = [messages_for(u, missing[i] if missing else None) for i, u in enumerate(units)]
        return self._chat.run(self._batch(msgs))

    async def acaption(self, unit: CaptionUnit, missing: Optional[Sequence[str]] = None) -> str | ProviderError:
        """One unit's raw reply (or ProviderError), awaited from any event loop; the request runs on the client's
        loop, under its in-flight bound and rate limit, through the reply cache."""
        return (await self._chat.arun(self._batch([messages_for(unit, missing)])))[0]

    def scrub(self, text: str) -> str:
        """`text` with the API key replaced by ***."""
        return self._chat.scrub(text)

    def stats(self):
        """The transport counters (calls, retries, tokens, cost, attempt errors) of `llm.chat.ChatStats`."""
        return self._chat.stats()

    async def _batch(self, msgs: list[list[dict]]) -> list[str | ProviderError]:
        digests = [input_hash(m) for m in msgs]
        keys = [cache_key(self.model, PROMPT_VERSION, d, self.name) for d in digests]
        found: dict[str, str] = {}
        if self.cache is not None:
            try:
                found = await asyncio.to_thread(self.cache.get_many, keys)
            except Exception as exc:  # the cache is an optimisation: call instead
                log.warning("%s: caption cache read failed (%s); calling the provider", self.name, exc)
        self.cache_hits += sum(1 for k in keys if k in found)
        todo = [i for i, k in enumerate(keys) if k not in found]
        replies = await asyncio.gather(*(self._one(msgs[i], keys[i], digests[i]) for i in todo))
        out: list[str | ProviderError] = [found.get(k, "") for k in keys]
        for i, reply in zip(todo, replies):
            out[i] = reply
        return out

    async def _one(self, messages: list[dict], key: str, digest: str) -> str | ProviderError:
        async def attempt() -> str:
            content = await self._chat.complete(messages)
            if content is None:
                raise MalformedResponse("the reply has no message content")
            return content

        outcome = await self._chat.with_retries(attempt)
        if not outcome.ok:
            self.failures[outcome.reason or "error"] += 1
            return ProviderError(f"{self.name}: {outcome.error}")
        if self.cache is not None:
            try:
                await asyncio.to_thread(self.cache.put, key, outcome.value, model=self.model,
                                        prompt_version=PROMPT_VERSION, input_digest=digest)
            except Exception as exc:
                log.warning("%s: caption cache write failed (%s); the reply is kept for this run only", self.name, exc)
        return outcome.value

    def close(self) -> None:
        if self._chat.closed:
            return
        self._chat.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> "CaptionProvider":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_provider(cfg: "ProviderConfig") -> CaptionProvider:
    """A provider from its config (reads the API key from the variable named by cfg.api_key_env)."""
    return CaptionProvider(cfg)
