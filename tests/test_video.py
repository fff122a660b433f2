"""Frames from real H.264 files and JPEG lists: sampling times, budgets, the RC box, failures, caching."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from medgrpo_ray.data.clips import clip_for_record
from medgrpo_ray.data.records import VideoRecord
from medgrpo_ray.data.video import (ClipCache, FrameBudget, VideoDecodeError, _run_with_timeout, decode_video,
                                    load_frame_list, map_daemon, sample_times)

BUDGET = FrameBudget(max_frames=8, min_pixels=3136, max_pixels=12544, factor=28)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from medgrpo_ray.data.synthetic import generate

    out = tmp_path_factory.mktemp("syn_video")
    generate(out, seed=4, n_train=60, n_test=4)
    recs = [VideoRecord.from_dict(d, source=str(out / "train.json"), index=i)
            for i, d in enumerate(json.loads((out / "train.json").read_text()))]
    return out, recs


def test_sample_times_worked_example():
    """0-10 s at 2 fps is 20 frames; capped at 8 the rate drops to 8 / 10 = 0.8 fps: 0, 1.25, ..., 8.75 s."""
    times, fps = sample_times(0.0, 10.0, 2.0, 8)
    assert fps == pytest.approx(0.8)
    assert times == pytest.approx([0, 1.25, 2.5, 3.75, 5.0, 6.25, 7.5, 8.75])
    times, fps = sample_times(1.0, 4.0, 2.0, 16)  # not capped: 1.0, 1.5, ..., 3.5
    assert fps == 2.0 and times == pytest.approx([1.0 + 0.5 * k for k in range(6)])


def test_decode_video_respects_fps_range_and_budget(demo_video):
    clip = decode_video(demo_video, fps=2.0, start_s=1.0, end_s=3.0, budget=BUDGET)
    assert clip.fps == 2.0 and clip.num_frames == 4
    assert clip.timestamps == pytest.approx((0.0, 0.5, 1.0, 1.5))  # from the clip start
    h, w = clip.frames.shape[1:3]
    assert h % 28 == 0 and w % 28 == 0 and BUDGET.min_pixels <= h * w <= BUDGET.max_pixels
    assert clip.source_hw == (160, 224) and clip.frames.dtype == np.uint8
    many = decode_video(demo_video, fps=8.0, start_s=None, end_s=None, budget=BUDGET)
    assert many.num_frames == 8 and many.fps == pytest.approx(2.0)  # 32 frames capped at 8 over 4 s
    odd = decode_video(demo_video, fps=1.0, start_s=0.0, end_s=3.0, budget=BUDGET)  # 3 frames -> padded to 4
    assert odd.num_frames == 4 and np.array_equal(odd.frames[2], odd.frames[3])


def test_sampled_frames_are_the_right_frames(demo_video):
    """The demo's green bar moves right linearly: its column at each sampled time matches the time."""
    clip = decode_video(demo_video, fps=2.0, start_s=0.0, end_s=4.0, budget=FrameBudget(8, 30000, 40000, 28))
    xs = []
    for f in clip.frames:
        green = (f[..., 1] > 150) & (f[..., 0] < 100)
        xs.append(np.nonzero(green.any(axis=0))[0].mean())
    assert all(b > a for a, b in zip(xs, xs[1:]))


def test_frame_list_budget_and_rc_box(synthetic):
    out, recs = synthetic
    rec = next(r for r in recs if not r.is_video_file and r.rc_box is not None)
    clip = clip_for_record(rec, BUDGET, video_root=str(out))
    assert clip.fps == rec.fps and clip.num_frames % 2 == 0
    sh, sw = clip.source_hw
    h, w = clip.frames.shape[1:3]
    x1, y1, x2, y2 = rec.rc_box
    idx = rec.rc_frame_index
    # Left edge of the box, mid-height, in resized coordinates: pure green; the unboxed frame has no green there.
    px, py = int(round(x1 * w / sw)) + 2, int(round((y1 + y2) / 2 * h / sh))
    assert tuple(clip.frames[idx, py, px]) == (0, 255, 0)
    plain, _ = load_frame_list([str(out / p) for p in rec.frame_paths], rec.fps, BUDGET)
    assert tuple(plain.frames[idx, py, px]) != (0, 255, 0)


def test_rc_box_on_video_file_record(synthetic):
    out, recs = synthetic
    rec = next(r for r in recs if r.is_video_file and r.rc_box is not None)
    clip = clip_for_record(rec, BUDGET, video_root=str(out))
    idx = min(range(clip.num_frames), key=lambda i: abs(clip.timestamps[i] - rec.rc_time))
    green = np.all(clip.frames[idx] == (0, 255, 0), axis=-1)
    assert green.sum() > 20 and not np.all(clip.frames[idx - 1 if idx else idx + 1] == (0, 255, 0), axis=-1).any()


@pytest.mark.parametrize("kind", ["corrupt", "empty", "missing"])
def test_bad_video_files_name_the_record(tmp_path, kind):
    path = tmp_path / f"{kind}.mp4"
    if kind == "corrupt":
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(0).bytes(4000))
    elif kind == "empty":
        path.write_bytes(b"")
    rec = VideoRecord.from_dict({"conversations": [{"from": "human", "value": "<video>\nWhat next?"}],
                                 "video": str(path), "metadata": {"fps": "1.0", "video_id": kind},
                                 "qa_type": "next_action", "data_source": "AVOS"}, source="bad.json", index=7)
    with pytest.raises(VideoDecodeError) as e:
        clip_for_record(rec, BUDGET)
    msg = str(e.value)
    assert rec.uid in msg and "bad.json#7" in msg and str(path) in msg
    assert {"corrupt": "cannot open", "empty": "empty", "missing": "does not exist"}[kind] in msg


def test_truncated_video_is_a_clear_error(tmp_path, demo_video):
    data = open(demo_video, "rb").read()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoDecodeError, match="cut.mp4"):
        decode_video(str(cut), fps=2.0, start_s=0.0, end_s=4.0, budget=BUDGET, who="record X")


def test_a_hanging_decode_times_out():
    t0 = time.perf_counter()
    with pytest.raises(VideoDecodeError, match="did not finish within"):
        _run_with_timeout(lambda: time.sleep(10), 0.3, "record Y: slow.mp4")
    assert time.perf_counter() - t0 < 2.0


@pytest.mark.parametrize("kind", ["missing", "empty", "corrupt", "truncated"])
def test_video_failures_carry_the_decoders_reason(tmp_path, demo_video, kind):
    """The cause is a reason code set where the decoder detects it (the data check counts by it, never by reading
    the message), with the file at fault; the message stays the one people read."""
    path = tmp_path / f"{kind}.mp4"
    data = open(demo_video, "rb").read()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "corrupt":  # random bytes: no MP4 box structure at all
        path.write_bytes(np.random.default_rng(1).bytes(40_000))
    elif kind == "truncated":  # a real MP4 cut off mid-box, as a partial download or copy leaves it
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError) as e:
        decode_video(str(path), fps=2.0, start_s=0.0, end_s=4.0, budget=BUDGET, who="record Z")
    expected = {"missing": "missing file", "empty": "empty file", "corrupt": "corrupt", "truncated": "truncated"}
    assert (e.value.reason, e.value.path) == (expected[kind], str(path))
    assert str(e.value).startswith("record Z: ") and str(path) in str(e.value)


def test_clip_outside_the_video_carries_its_reason(demo_video):
    with pytest.raises(VideoDecodeError) as e:  # 8-9 s of a 4 s video
        decode_video(demo_video, fps=2.0, start_s=8.0, end_s=9.0, budget=BUDGET)
    assert (e.value.reason, e.value.path) == ("clip outside video", demo_video) and "empty time range" in str(e.value)


def test_frame_list_failures_carry_the_decoders_reason(tmp_path):
    from PIL import Image

    paths = []
    for k in range(4):
        paths.append(str(tmp_path / f"f{k}.jpg"))
        Image.new("RGB", (64, 48), (10 * k, 0, 0)).save(paths[-1])
    small = str(tmp_path / "small.jpg")
    Image.new("RGB", (32, 32)).save(small)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not a jpeg" * 10)
    fifo = tmp_path / "hang.jpg"
    os.mkfifo(fifo)
    cases = [([], "empty frame list", None),
             ([*paths[:2], str(tmp_path / "gone.jpg"), paths[3]], "missing file", str(tmp_path / "gone.jpg")),
             ([paths[0], str(garbage), *paths[2:]], "bad frame image", str(garbage)),
             ([*paths[:3], small], "frame size mismatch", paths[0]),
             ([paths[0], paths[1], str(fifo), paths[3]], "timeout", str(fifo))]  # open() blocks: no writer
    try:
        for frames, reason, where in cases:
            with pytest.raises(VideoDecodeError) as e:
                load_frame_list(frames, 1.0, BUDGET, timeout_s=0.5 if reason == "timeout" else 60.0, who="record F")
            assert (e.value.reason, e.value.path) == (reason, where), str(e.value)
    finally:  # open the writing end so the abandoned reader thread returns and the process can exit
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def test_map_daemon_keeps_order_and_raises_the_first_failure():
    assert map_daemon(lambda x: x * x, range(7), threads=3) == [0, 1, 4, 9, 16, 25, 36]

    def fail(x):
        if x in (2, 5):
            raise ValueError(f"item {x}")
        return x

    with pytest.raises(ValueError, match="item 2"):
        map_daemon(fail, range(7), threads=4)


def test_a_process_whose_frame_read_hangs_still_exits(tmp_path):
    """A frame whose open() blocks for good (a FIFO with no writer) times out the record, and the process then
    exits at once: no thread of the decode is one the interpreter joins at exit (the rollout worker that outlived
    its Ray cluster, docs/decisions.md "Nothing left behind")."""
    import subprocess
    import sys

    fifo = tmp_path / "hang.jpg"
    os.mkfifo(fifo)
    code = ("import sys\nfrom medgrpo_ray.data.video import FrameBudget, VideoDecodeError, load_frame_list\n"
            "try:\n    load_frame_list([sys.argv[1]], 1.0, FrameBudget(), timeout_s=0.3)\n"
            "except VideoDecodeError as err:\n    print(err.reason)\n")
    try:
        out = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60)
    finally:  # only if it hung: let the reader return so nothing is left behind
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert out.returncode == 0 and out.stdout.strip() == "timeout", out.stderr[-2000:]


def test_cache_decodes_once(synthetic):
    out, recs = synthetic
    cache = ClipCache(4)
    rec = next(r for r in recs if r.is_video_file)
    a = clip_for_record(rec, BUDGET, cache=cache, video_root=str(out))
    b = clip_for_record(rec, BUDGET, cache=cache, video_root=str(out))
    assert a is b and cache.misses == 1 and cache.hits == 1


def test_rollout_over_bad_records_counts_them_as_skipped(tmp_path, synthetic, tiny_vlm_dir):
    """The rollout path (HF backend here) over good and bad records: the bad ones come back as groups with an
    error naming the record, the good ones with G completions; nothing raises."""
    from medgrpo_ray.config import load_config
    from medgrpo_ray.rollout.core import RolloutCore
    from medgrpo_ray.rollout.types import RolloutItem

    out, recs = synthetic
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "corrupt.mp4").write_bytes(b"not a video at all" * 100)
    good = [r.to_dict() for r in recs[:2]]
    bad = []
    for name in ("empty.mp4", "corrupt.mp4", "missing.mp4"):
        d = dict(recs[0].to_dict())
        d["video"] = str(tmp_path / name)
        d["metadata"] = {"fps": "1.0", "video_id": name}
        bad.append(d)
    cfg = load_config(None, ["rollout.backend=hf", "algorithm.group_size=2", "rollout.max_new_tokens=4",
                             f"data.video_root={out}", "data.max_frames=4"])
    core = RolloutCore(cfg, tiny_vlm_dir)
    items = [RolloutItem(group_id=i, record=d, seed=i) for i, d in enumerate(good[:1] + bad + good[1:])]
    groups = core.rollout(items)
    assert [g.group_id for g in groups] == [0, 1, 2, 3, 4]
    errors = {g.group_id: g.error for g in groups if g.error}
    assert sorted(errors) == [1, 2, 3]
    assert "empty" in errors[1] and "cannot open" in errors[2] and "does not exist" in errors[3]
    for g in (groups[0], groups[4]):
        assert len(g.completions) == 2 and g.visual_tokens > 0
