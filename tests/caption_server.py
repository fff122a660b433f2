"""An OpenAI-compatible chat server standing in for a caption provider (the judge server's machinery: uvicorn in a
thread on 127.0.0.1, `ServerControl` faults and counters), answering caption prompts instead of judge prompts.

The reply content is `control.reply(user_text)`: by default `grounded_reply`, a caption (VS/RC `{"caption"}`, DVC
`{"segments"}`) naming every required fact the prompt lists. `control.behaviour(user_text)`, when set, picks a
scripted behaviour per request instead (`scripted(plan)`: by the prompt's task and source): agree, omit (leaves out
the first required fact), invent (adds an unsupported vocabulary term), malformed (truncated JSON), alt (grounded,
other wording: low lexical agreement), *_then_agree (that behaviour until the prompt is a regeneration), or a fault.
Faults as in tests/judge_server.py (script or fault_rate): 429 with Retry-After, 500 (its body echoes the request's
Authorization header, like a careless proxy, so tests can check the key is scrubbed), timeout (sleeps
`timeout_sleep_s` before answering), malformed (an HTML body). Every request waits `latency_s` first.
The user message may be OpenAI content parts (text and `image_url` frames): the behaviours read its text parts
joined by newlines, `control.images` holds the image parts per recent request.
`control.users` holds the user message's text of recent requests, `control.digests` counts every request's user message
by sha256, `control.ok` counts the replies sent with status 200, `control.max_in_flight` the most at once.

Run standalone: python tests/caption_server.py [--port 8101] [--latency 0.1] -> prints "PORT <n>" and serves.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import socket
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run standalone from the checkout
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from judge_server import JudgeServer, ServerControl, _completion  # noqa: E402
from medgrpo_ray.curation.providers import images_of, text_of  # noqa: E402

REGENERATION = "Your previous caption omitted"
FAULTS = ("429", "500", "timeout", "malformed_body")


def required_terms(user: str) -> list[str]:
    line = next((ln for ln in user.splitlines() if ln.startswith("Required facts: ")), "")
    return re.findall(r"'([^']*)'", line)


def segment_terms(user: str) -> dict[int, list[str]]:
    """DVC: segment id -> its required terms (from "label 'x' (segment 0); ...")."""
    line = next((ln for ln in user.splitlines() if ln.startswith("Required facts: ")), "")
    out: dict[int, list[str]] = {int(m): [] for m in re.findall(r"^  id (\d+):", user, re.M)}
    for term, seg in re.findall(r"'([^']*)' \(segment (\d+)\)", line):
        out.setdefault(int(seg), []).append(term)
    return out


def task_source(user: str) -> tuple[str, str]:
    m = re.match(r"Task: (\w+)\. Source: ([^.]+)\.", user)
    return (m.group(1), m.group(2)) if m else ("", "")


def caption_text(terms: list[str]) -> str:
    facts = " and ".join(terms)
    return (f"The surgeon works steadily through the operation, and the view shows {facts} while the instruments "
            "move carefully across the operative field with controlled, deliberate motions, keeping the tissue "
            "under gentle tension throughout the whole sequence")


def alt_text(terms: list[str]) -> str:
    return (f"In this sequence the operator completes {' and '.join(terms)} with a calm and methodical rhythm, pausing "
            "briefly between movements, then continues at an even pace until the whole exercise reaches its natural "
            "conclusion without any visible complication or hesitation at all")


def dvc_text(terms: list[str]) -> str:
    return f"During this step the team performs {' and '.join(terms)} with steady controlled movements of the instruments."


def grounded_reply(user: str, drop: int = 0, add: str = "", text=caption_text) -> str:
    """A caption naming the required facts but the first `drop`, plus `add`."""
    if task_source(user)[0] == "dense_captioning":
        segs = segment_terms(user)
        first = min(segs) if segs else 0
        return json.dumps({"segments": [{"id": i, "caption": dvc_text(t[drop:] if i == first else t)
                                         + (f" The {add} is used." if add and i == first else "")}
                                        for i, t in sorted(segs.items())]})
    terms = required_terms(user)[drop:]
    return json.dumps({"caption": text(terms) + (f" with the {add}" if add else "")})


def unsupported_term(user: str) -> str:
    """A vocabulary term the frames never mention (nor the ambient anatomy): naming it is an invention."""
    vocab = next((ln for ln in user.splitlines() if ln.startswith("Allowed vocabulary: ")), "")[20:].split(", ")
    frames = user.split("Required facts:")[0].lower()
    return next(t for t in vocab if t and t not in frames and t not in ("gallbladder", "liver", "needle", "suture",
                                                                        "tissue", "bench-top model"))


BEHAVIOURS: dict[str, Callable[[str], str]] = {
    "agree": grounded_reply,
    "omit": lambda u: grounded_reply(u, drop=1),
    "invent": lambda u: grounded_reply(u, add=unsupported_term(u)),
    "malformed": lambda u: grounded_reply(u)[:-7],
    "alt": lambda u: grounded_reply(u, text=alt_text),
}


def scripted(plan: dict[tuple[str, str], str], default: str = "agree") -> Callable[[str], str]:
    """behaviour(user) from a plan {(task, source): behaviour}; "<b>_then_agree" means b until the regeneration."""
    def behaviour(user: str) -> str:
        b = plan.get(task_source(user), default)
        if b.endswith("_then_agree"):
            return "agree" if REGENERATION in user else b[: -len("_then_agree")]
        return b
    return behaviour


@dataclass
class CaptionControl(ServerControl):
    reply: Callable[[str], str] = grounded_reply
    behaviour: Optional[Callable[[str], str]] = None
    users: deque = field(default_factory=lambda: deque(maxlen=256))
    digests: Counter = field(default_factory=Counter)
    images: deque = field(default_factory=lambda: deque(maxlen=256))  # image parts per recent request
    ok: int = 0


def make_caption_app(ctl: CaptionControl) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        ctl.requests += 1
        ctl.in_flight += 1
        ctl.max_in_flight = max(ctl.max_in_flight, ctl.in_flight)
        try:
            response = await answer(request)
        finally:
            ctl.in_flight -= 1
        if response.status_code == 200:
            ctl.ok += 1
        return response

    async def answer(request: Request) -> Response:
        body = await request.json()
        if ctl.latency_s:
            await asyncio.sleep(ctl.latency_s)
        auth = request.headers.get("authorization", "")
        if ctl.expected_key is not None and auth != f"Bearer {ctl.expected_key}":
            ctl.outcomes["401"] += 1
            return JSONResponse({"error": {"message": "invalid api key", "type": "auth"}}, status_code=401)
        content = body["messages"][-1]["content"]
        user = text_of(content)  # the text parts joined: what the scripted behaviours read
        ctl.images.append(len(images_of(content)))
        ctl.users.append(user)
        ctl.digests[hashlib.sha256(user.encode()).hexdigest()] += 1
        behaviour = ctl.behaviour(user) if ctl.behaviour else None
        fault = behaviour if behaviour in FAULTS else ctl.next_fault()
        ctl.outcomes[fault or "ok"] += 1
        if fault == "429":
            return JSONResponse({"error": {"message": "rate limited", "type": "rate_limit"}}, status_code=429,
                                headers={"retry-after": str(ctl.retry_after_s)})
        if fault == "500":
            return JSONResponse({"error": {"message": f"upstream failed for {auth}", "type": "server"}}, status_code=500)
        if fault == "timeout":
            await asyncio.sleep(ctl.timeout_sleep_s)
        if fault in ("malformed", "malformed_body"):
            return Response(b"<html>502 upstream hiccup</html>", media_type="application/json")
        content = BEHAVIOURS[behaviour](user) if behaviour else ctl.reply(user)
        return JSONResponse(_completion(body["model"], content,
                                        sum(len(text_of(m["content"])) for m in body["messages"])))

    @app.post("/admin/control")
    async def control(request: Request) -> dict:
        ctl.configure(**(await request.json()))
        return {**ctl.snapshot(), "ok": ctl.ok}

    @app.get("/admin/stats")
    async def stats() -> dict:
        return {**ctl.snapshot(), "ok": ctl.ok}

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a scripted caption provider on 127.0.0.1 (tests, benchmark, demo)")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every reply")
    args = parser.parse_args(argv)
    server = JudgeServer(CaptionControl(latency_s=args.latency), app_factory=make_caption_app)
    if args.port:  # a fixed port (the demo preset names it): rebind before starting
        server._sock.close()
        server._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server._sock.bind(("127.0.0.1", args.port))
        server.port = args.port
        server._thread = threading.Thread(target=server._server.run, kwargs={"sockets": [server._sock]}, daemon=True)
    server.start()
    print(f"PORT {server.port}", flush=True)
    try:
        while server._thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
