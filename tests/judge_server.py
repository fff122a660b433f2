"""An OpenAI-compatible chat-completions server for the judge tests and benchmark (FastAPI + uvicorn, 127.0.0.1).

It answers POST /v1/chat/completions deterministically from the request: it reads the quoted prediction and
reference between the request's nonce markers and scores the five aspects from word recall (`expected_scores`),
in the strict PROMPT_VERSION format. Faults are injected on demand through `ServerControl` (a shared object
in-thread, or POST /admin/control from another process): latency, 429 with Retry-After, 500, timeouts (sleeping
past the client's deadline), malformed bodies, partial (truncated) replies, replies in the wrong format, 401,
and "echo" (a gullible judge that repeats the prediction). Counters say what was served.

Run standalone (benchmark): python tests/judge_server.py [--latency 0.1] -> prints "PORT <n>" and serves.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import socket
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from medgrpo_ray.judge.prompt import PROMPT_VERSION
from medgrpo_ray.judge.types import ASPECTS

FAULT_KINDS: tuple[str, ...] = ("429", "500", "timeout", "malformed", "partial", "bad_format")
_OFFSETS = (0, 0, 1, 0, 1)  # per-aspect offsets so the five scores are not all equal


def expected_scores(prediction: str, reference: str) -> dict[str, int]:
    """The server's verdict: base = 1 + round(4 * recall of reference words in the prediction), minus a per-aspect
    offset, floored at 1. Words added to a prediction never lower recall, so an appended injection cannot move it."""
    ref = set(re.findall(r"[a-z]+", reference.lower()))
    pred = set(re.findall(r"[a-z]+", prediction.lower()))
    base = 1 + round(4 * len(ref & pred) / len(ref)) if ref else 1
    return {a: max(1, base - d) for a, d in zip(ASPECTS, _OFFSETS)}


@dataclass
class ServerControl:
    """Fault plan (set by tests) and what the server saw (read by tests)."""

    latency_s: float = 0.0
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    seed: int = 0
    retry_after_s: float = 0.05
    timeout_sleep_s: float = 1.0
    expected_key: str | None = None  # when set, other bearer tokens get 401
    script: deque = field(default_factory=deque)  # faults forced on the next requests ("ok" for none)
    requests: int = 0
    outcomes: Counter = field(default_factory=Counter)  # "ok" or fault kind -> requests
    in_flight: int = 0
    max_in_flight: int = 0
    seen: deque = field(default_factory=lambda: deque(maxlen=256))  # (prediction, reference) per request
    _rng: random.Random | None = None

    def next_fault(self) -> str | None:
        if self.script:
            kind = self.script.popleft()
            return None if kind == "ok" else kind
        if self._rng is None:
            self._rng = random.Random(self.seed)
        if self.fault_rate and self._rng.random() < self.fault_rate:
            return self._rng.choice(self.fault_kinds)
        return None

    def configure(self, **values: object) -> None:
        for name, value in values.items():
            if name == "script":
                value = deque(value)  # type: ignore[arg-type]
            elif name == "fault_kinds":
                value = tuple(value)  # type: ignore[arg-type]
            setattr(self, name, value)
        self._rng = None

    def snapshot(self) -> dict:
        return {"requests": self.requests, "outcomes": dict(self.outcomes), "max_in_flight": self.max_in_flight}


def _quoted(user: str) -> tuple[str, str, str]:
    nonce = re.search(r"NONCE = (\w+)", user).group(1)
    block = lambda tag: re.search(rf"<{tag}-{nonce}>\n(.*?)\n</{tag}-{nonce}>", user, re.DOTALL).group(1)  # noqa: E731
    return nonce, block("prediction"), block("reference")


def _completion(model: str, content: str, prompt_chars: int, finish: str = "stop") -> dict:
    usage = {"prompt_tokens": prompt_chars // 4, "completion_tokens": max(1, len(content) // 4)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        "usage": usage,
    }


def make_app(ctl: ServerControl) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        ctl.requests += 1
        ctl.in_flight += 1
        ctl.max_in_flight = max(ctl.max_in_flight, ctl.in_flight)
        try:
            body = await request.json()
            if ctl.expected_key is not None and request.headers.get("authorization") != f"Bearer {ctl.expected_key}":
                ctl.outcomes["401"] += 1
                return JSONResponse({"error": {"message": "invalid api key", "type": "auth"}}, status_code=401)
            fault = ctl.next_fault()
            if ctl.latency_s:
                await asyncio.sleep(ctl.latency_s)
            ctl.outcomes[fault or "ok"] += 1
            user = body["messages"][-1]["content"]
            prompt_chars = sum(len(m["content"]) for m in body["messages"])
            nonce, prediction, reference = _quoted(user)
            ctl.seen.append((prediction, reference))
            if fault == "429":
                return JSONResponse({"error": {"message": "rate limited", "type": "rate_limit"}}, status_code=429,
                                    headers={"retry-after": str(ctl.retry_after_s)})
            if fault in ("500", "401"):
                return JSONResponse({"error": {"message": "injected", "type": "server"}}, status_code=int(fault))
            if fault == "timeout":
                await asyncio.sleep(ctl.timeout_sleep_s)
            if fault == "malformed":
                return Response(b"<html>502 upstream hiccup</html>", media_type="application/json")
            content = json.dumps({"format": PROMPT_VERSION, "nonce": nonce, **expected_scores(prediction, reference)})
            if fault == "partial":
                return JSONResponse(_completion(body["model"], content[: len(content) // 2], prompt_chars, "length"))
            if fault == "bad_format":
                content = "Scores: " + ", ".join(f"{a} 4" for a in ASPECTS)
            if fault == "echo":
                content = prediction
            return JSONResponse(_completion(body["model"], content, prompt_chars))
        finally:
            ctl.in_flight -= 1

    @app.post("/admin/control")
    async def control(request: Request) -> dict:
        ctl.configure(**(await request.json()))
        return ctl.snapshot()

    @app.get("/admin/stats")
    async def stats() -> dict:
        return ctl.snapshot()

    return app


class JudgeServer:
    """The app served by uvicorn in a daemon thread on a free 127.0.0.1 port."""

    def __init__(self, control: ServerControl | None = None, app_factory=None):
        self.control = control or ServerControl()
        app_factory = app_factory or make_app  # tests/caption_server.py serves caption replies on the same machinery
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(app_factory(self.control), log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "JudgeServer":
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test judge server did not start within 20 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


@pytest.fixture
def judge_server():
    """A fresh fake judge server per test; `judge_server.control` sets faults and holds the counters."""
    server = JudgeServer().start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every reply")
    args = parser.parse_args(argv)
    server = JudgeServer(ServerControl(latency_s=args.latency)).start()
    print(f"PORT {server.port}", flush=True)
    try:
        while server._thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
