"""An OpenAI-compatible chat server standing in for a caption provider (the judge server's machinery: uvicorn in a
thread on 127.0.0.1, `ServerControl` faults and counters), answering caption prompts instead of judge prompts.

The reply content is `control.reply(user_text)`: by default `grounded_reply`, a VS/RC caption naming every required
fact the prompt lists. Faults as in tests/judge_server.py (script or fault_rate): 429 with Retry-After, 500 (its
body echoes the request's Authorization header, like a careless proxy, so tests can check the key is scrubbed),
timeout (sleeps `timeout_sleep_s` before answering), malformed (an HTML body). `control.users` holds the user
message of every request served.
"""
from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from judge_server import JudgeServer, ServerControl, _completion


def required_terms(user: str) -> list[str]:
    line = next((ln for ln in user.splitlines() if ln.startswith("Required facts: ")), "")
    return re.findall(r"'([^']*)'", line)


def caption_text(terms: list[str]) -> str:
    facts = " and ".join(terms)
    return (f"The surgeon works steadily through the operation, and the view shows {facts} while the instruments "
            "move carefully across the operative field with controlled, deliberate motions, keeping the tissue "
            "under gentle tension throughout the whole sequence")


def grounded_reply(user: str) -> str:
    return json.dumps({"caption": caption_text(required_terms(user))})


@dataclass
class CaptionControl(ServerControl):
    reply: Callable[[str], str] = grounded_reply
    users: deque = field(default_factory=lambda: deque(maxlen=256))


def make_caption_app(ctl: CaptionControl) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        ctl.requests += 1
        body = await request.json()
        auth = request.headers.get("authorization", "")
        if ctl.expected_key is not None and auth != f"Bearer {ctl.expected_key}":
            ctl.outcomes["401"] += 1
            return JSONResponse({"error": {"message": "invalid api key", "type": "auth"}}, status_code=401)
        fault = ctl.next_fault()
        ctl.outcomes[fault or "ok"] += 1
        user = body["messages"][-1]["content"]
        ctl.users.append(user)
        if fault == "429":
            return JSONResponse({"error": {"message": "rate limited", "type": "rate_limit"}}, status_code=429,
                                headers={"retry-after": str(ctl.retry_after_s)})
        if fault == "500":
            return JSONResponse({"error": {"message": f"upstream failed for {auth}", "type": "server"}}, status_code=500)
        if fault == "timeout":
            await asyncio.sleep(ctl.timeout_sleep_s)
        if fault == "malformed":
            return Response(b"<html>502 upstream hiccup</html>", media_type="application/json")
        content = ctl.reply(user)
        return JSONResponse(_completion(body["model"], content, sum(len(m["content"]) for m in body["messages"])))

    return app


def start_caption_server(**control: object) -> JudgeServer:
    ctl = CaptionControl()
    ctl.configure(**control)
    return JudgeServer(ctl, app_factory=make_caption_app).start()


@pytest.fixture
def caption_servers():
    """Two caption servers (provider a and b), fresh per test."""
    servers = [start_caption_server(), start_caption_server()]
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()
