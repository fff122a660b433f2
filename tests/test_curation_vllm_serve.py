"""A real `vllm serve` (vLLM's OpenAI server, CPU) of the project's tiny model on 127.0.0.1 as both caption
providers: frames in as image parts, text out over the OpenAI wire format (HTTP 200, no retries), and the tiny
model's random-weight text judged by the rule: never kept, every unit dropped or sent to review, with its reject
reasons counted. One server for the module, started in a process group of its own and killed in `finally`."""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import replace

import pytest

from medgrpo_ray.config.curation import ProviderConfig
from medgrpo_ray.curation.caption_frames import FrameSettings, attach, frame_job, render_job
from medgrpo_ray.curation.caption_run import LexicalEmbedder, run_units
from medgrpo_ray.curation.caption_units import build_unit
from medgrpo_ray.curation.providers import CaptionProvider
from medgrpo_ray.curation.schema import Box, Segment, SourceVideo, Triplet
from medgrpo_ray.curation.tasks import TaskSettings
from medgrpo_ray.curation.validate import ProviderError, count_decisions

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")]

IMAGES = 2          # frames per unit: --limit-mm-per-prompt image=2
SERVED = "tiny-vlm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tiny_vlm_dir, tmp_path_factory):
    """`python -m vllm.entrypoints.openai.api_server` on the tiny model (CPU settings as rollout/vllm_engine.py:
    no V1 engine subprocess, 1 GiB KV cache, eager); yields its base URL once /health answers."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1",
           "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", tiny_vlm_dir,
           "--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
           "--max-model-len", "4096", "--max-num-seqs", "8", "--seed", "0", "--enforce-eager",
           "--limit-mm-per-prompt", json.dumps({"image": IMAGES, "video": 0}), "--uvicorn-log-level", "warning"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve not healthy within 240 s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def clip_frames(root) -> SourceVideo:
    """A 1 fps frame dump (40 s of PNGs) with phases, actions, tracked boxes and triplets."""
    from PIL import Image

    (root / "frames").mkdir()
    paths = {}
    for i in range(40):
        Image.new("RGB", (160, 120), (90 + i, 60, 60)).save(root / f"frames/{i:04d}.png")
        paths[i] = f"frames/{i:04d}.png"
    boxes = {float(t): [Box("grasper", 20, 30, 70, 90, track_id="1"), Box("hook", 90, 40, 140, 100, track_id="2")]
             for t in range(40)}
    trips = {float(t): [Triplet("hook", "dissect", "cystic duct")] for t in range(40)}
    segs = [Segment(0.0, 20.0, "CalotTriangleDissection", "phase"), Segment(20.0, 40.0, "ClippingCutting", "phase")]
    return SourceVideo("CholecT50", "VID90", 1.0, frame_size=(160, 120), duration_s=40.0, frame_paths=paths,
                       segments=segs, boxes=boxes, triplets=trips, procedure="laparoscopic cholecystectomy")


def test_vllm_serve_captions_images_in_text_out_judged_by_the_rule(vllm_server, tmp_path):
    v = clip_frames(tmp_path)
    s = TaskSettings(seed=0, min_len=20.0, max_len=30.0, fps_prior={"1.0": 1.0})
    fs = FrameSettings(max_frames=IMAGES, size=112)
    units = [build_unit(task, v, s, 0) for task in ("dense_captioning", "video_summary", "region_caption")]
    for u in units:
        attach(u, render_job(frame_job(u, fs), tmp_path, fs))
        assert len(u.images) == IMAGES
    cfgs = [ProviderConfig(name=name, base_url=vllm_server, model=SERVED, api_key_env="", requests_per_minute=0,
                           max_in_flight=4, timeout_s=60, max_retries=0, max_tokens=48, temperature=0.7,
                           cache_dir=None) for name in ("local_a", "local_b")]
    with CaptionProvider(cfgs[0]) as a, CaptionProvider(cfgs[1]) as b:
        raw = a.caption(units[:1])[0]
        assert not isinstance(raw, ProviderError), raw       # HTTP 200 with a chat completion
        assert isinstance(raw, str) and raw.strip()           # text back
        outcomes = run_units(units, a, b, LexicalEmbedder(), max_in_flight=4)
        stats = [p.stats() for p in (a, b)]
    # the images are parsed as images: one more than --limit-mm-per-prompt allows is refused (HTTP 400)
    over = copy.copy(units[1])
    attach(over, render_job(frame_job(over, FrameSettings(max_frames=IMAGES + 1, size=112)), tmp_path, fs))
    with CaptionProvider(replace(cfgs[0], name="local_c")) as c:
        refused = c.caption([over])[0]
    assert isinstance(refused, ProviderError) and "http_400" in refused, refused
    for st in stats:  # every request answered (no retry, no failed attempt)
        assert st.retries == 0 and not st.attempt_errors and st.completion_tokens > 0
    assert stats[0].calls >= 1 + len(units) and stats[1].calls >= len(units)
    kinds = Counter(o.decision.kind for o in outcomes)
    reasons = Counter(r for o in outcomes for r in o.reasons)
    print(f"vllm serve captions: decisions {count_decisions(o.decision for o in outcomes)}, rejects {dict(reasons)}")
    assert set(kinds) <= {"drop", "review"} and sum(kinds.values()) == len(units)  # noise is never kept
    assert all(o.reasons and not o.records for o in outcomes)
    assert all(r.startswith(("local_a: ", "local_b: ", "disagree", "still failing")) for r in reasons)
