"""The frames sent to the caption providers: the box drawn where the fixture's normalized box puts it (pixel check
on the decoded JPEG), N image parts in the request body next to their frame lines, the cache key following the
frames."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from caption_server import caption_servers  # noqa: F401 - fixture
from medgrpo_ray.config.curation import ProviderConfig
from medgrpo_ray.curation.caption_frames import (TARGET_COLOR, FrameSettings, attach, frame_job, pick, render_job)
from medgrpo_ray.curation.caption_units import build_unit
from medgrpo_ray.curation.providers import CaptionProvider, images_of, input_hash, messages_for, text_of
from medgrpo_ray.curation.schema import Box, Segment, SourceVideo
from medgrpo_ray.curation.tasks import TaskSettings

GREY = (128, 128, 128)
W, H = 640, 480
# CholecTrack20-style normalized tlwh (0.25, 0.5, 0.25, 0.25) of a 640 x 480 frame -> x1 160, y1 240, x2 320, y2 360
BOX = (0.25 * W, 0.5 * H, 0.5 * W, 0.75 * H)


def frame_dump(root, seconds: int = 20) -> SourceVideo:
    """A 1 fps frame dump of uniform grey 640 x 480 PNGs, one tracked grasper box on every frame."""
    (root / "frames").mkdir(parents=True)
    paths = {}
    for i in range(seconds):
        p = f"frames/{i:06d}.png"
        Image.new("RGB", (W, H), GREY).save(root / p)
        paths[i] = p
    boxes = {float(t): [Box("grasper", *BOX, track_id="7")] for t in range(seconds)}
    return SourceVideo("CholecT50", "VID01", 1.0, frame_size=(W, H), duration_s=float(seconds), frame_paths=paths,
                       segments=[Segment(0.0, float(seconds), "Preparation", "phase")], boxes=boxes,
                       procedure="laparoscopic cholecystectomy")


def rc_unit(root):
    s = TaskSettings(seed=0, min_len=16.0, max_len=16.0, fps_prior={"1.0": 1.0})
    return build_unit("region_caption", frame_dump(root), s, 0)


def test_pick_spreads_the_frames_evenly():
    assert pick(5, 8) == [0, 1, 2, 3, 4]
    assert pick(16, 4) == [0, 5, 10, 15]
    assert pick(9, 3) == [0, 4, 8] and pick(7, 1) == [0]


def test_the_box_is_drawn_where_the_normalized_box_says(tmp_path):
    unit = rc_unit(tmp_path)
    fs = FrameSettings(max_frames=4, size=320)  # 640 x 480 -> 320 x 240: every coordinate halves
    idx, jpegs = render_job(frame_job(unit, fs), tmp_path, fs)
    assert len(idx) == len(jpegs) == 4
    img = np.asarray(Image.open(io.BytesIO(jpegs[0])).convert("RGB")).astype(int)
    assert img.shape[1] == 320 and img.shape[0] > 240  # the caption strip is added below the frame
    x1, y1, x2, y2 = (round(v / 2) for v in BOX)  # 80, 120, 160, 180
    near = lambda y, x, c: np.abs(img[y, x] - np.array(c)).max() <= 40  # noqa: E731 - JPEG tolerance
    for y, x in ((y2 - 1, (x1 + x2) // 2), ((y1 + y2) // 2, x1 + 1), ((y1 + y2) // 2, x2 - 1)):
        assert near(y, x, TARGET_COLOR), (y, x, img[y, x])  # the RC target's outline: green
    assert near((y1 + y2) // 2, (x1 + x2) // 2, GREY)      # inside: untouched
    assert near(y1 - 40, x2 + 40, GREY) and near(y2 + 20, x2 + 40, GREY)  # outside, away from the name tag
    strip = img[242:, :, :]
    assert (strip.max(axis=2) > 200).any() and np.median(strip) < 40  # white text on the black strip


def test_request_body_holds_n_image_parts_next_to_their_frame_lines(tmp_path, caption_servers):  # noqa: F811
    unit = rc_unit(tmp_path)
    fs = FrameSettings(max_frames=5, size=160)
    attach(unit, render_job(frame_job(unit, fs), tmp_path, fs))
    user = messages_for(unit)[1]["content"]
    assert [p["type"] for p in user].count("image_url") == 5 == len(unit.images)
    for i, p in enumerate(user[:-1]):
        if user[i + 1]["type"] == "image_url":  # each image follows the text part ending with its frame line
            n = unit.image_frames[sum(q["type"] == "image_url" for q in user[:i + 1])]
            assert p["text"].splitlines()[-1].startswith(f"<Frame {n}> t=")
    assert images_of(user)[0].startswith("data:image/jpeg;base64,")
    assert base64.b64decode(images_of(user)[0].split(",", 1)[1]) == unit.images[0]
    listed = ", ".join(map(str, pick(len(unit.frame_lines), 5)))
    assert text_of(user) == unit.input_text() and f"Images: frames {listed} follow" in text_of(user)
    server = caption_servers[0]
    cfg = ProviderConfig(name="gpt", base_url=server.base_url, model="m", api_key_env="", requests_per_minute=0,
                         max_retries=0, cache_dir=None)
    with CaptionProvider(cfg) as provider:
        reply = provider.caption([unit])[0]
    assert json.loads(reply)["caption"] and list(server.control.images) == [5]


def test_the_cache_key_changes_with_the_frames(tmp_path):
    unit = rc_unit(tmp_path)
    a = FrameSettings(max_frames=3, size=160)
    attach(unit, render_job(frame_job(unit, a), tmp_path, a))
    key_a, text_a = input_hash(messages_for(unit)), text_of(messages_for(unit)[1]["content"])
    assert input_hash(messages_for(unit)) == key_a  # deterministic
    unit.images = [unit.images[0], unit.images[0], unit.images[2]]  # other frames, the same text
    assert text_of(messages_for(unit)[1]["content"]) == text_a and input_hash(messages_for(unit)) != key_a
    b = FrameSettings(max_frames=3, size=200)
    attach(unit, render_job(frame_job(unit, b), tmp_path, b))
    assert input_hash(messages_for(unit)) not in (key_a,)
    unit.images, unit.image_frames = [], []
    assert input_hash(messages_for(unit)) != key_a  # text only: a key of its own


def test_an_unreadable_frame_is_named(tmp_path):
    from medgrpo_ray.curation.caption_frames import render_safe

    unit = rc_unit(tmp_path)
    (tmp_path / unit.video[0]).unlink()
    err = render_safe(frame_job(unit, FrameSettings(max_frames=2, size=64)), tmp_path, FrameSettings(2, 64))
    assert isinstance(err, str) and "VideoDecodeError" in err and unit.unit in err


@pytest.mark.slow
def test_frames_render_on_ray_tasks_as_in_process(tmp_path):
    from medgrpo_ray.workflows.curation_frames import FrameRenderer

    fs = FrameSettings(max_frames=2, size=96)
    here, there = [rc_unit(tmp_path)], []
    (tmp_path / "b").mkdir()
    there = [rc_unit(tmp_path / "b")]
    there[0].video = ["b/" + p for p in there[0].video]
    FrameRenderer(tmp_path, fs)(here)
    ray_renderer = FrameRenderer(tmp_path, fs, use_ray=True)
    try:
        assert ray_renderer(there) == [None]
    finally:
        ray_renderer.close()
    assert there[0].images == here[0].images and len(here[0].images) == 2


def test_jpeg_frame_lists_from_a_frame_dump(tmp_path):
    """frames=jpeg on a frame-dump source: the record's stored PNGs re-encoded as OUT/frames/.../<native>.jpg."""
    from medgrpo_ray.curation.frame_lists import to_frame_lists
    from medgrpo_ray.curation.tasks import build

    v = frame_dump(tmp_path)
    rec = build("tal", v, TaskSettings(seed=0, min_len=20.0, max_len=20.0, fps_prior={"1.0": 1.0}), 0)
    start, end = rec["curation"]["clip"]
    stats = to_frame_lists([rec], {(v.source, v.video_id): v}, tmp_path)
    assert rec["video"] == [f"frames/CholecT50/VID01/{int(start) + k:06d}.jpg" for k in range(int(end - start))]
    assert stats.written == stats.files == len(rec["video"])
    img = np.asarray(Image.open(tmp_path / rec["video"][0]))
    assert img.shape == (H, W, 3) and np.abs(img.astype(int) - GREY).max() <= 4


def test_two_providers_on_one_model_keep_their_own_cache_keys():
    from medgrpo_ray.curation.providers import cache_key

    assert cache_key("local-vlm", "v", "d", "local_a") != cache_key("local-vlm", "v", "d", "local_b")
