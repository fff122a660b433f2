"""Video frames for the model: sample a video file with decord or load a frame list, under a frame/pixel budget.

Both sources end as a `Clip`: uint8 frames (T, H, W, 3) with T even (Qwen's temporal patch is 2 frames), the
sampling rate the frames represent (the model's temporal positions are derived from it, so the HF processor and
vLLM must both be given this same rate) and each frame's time in seconds from the clip start. Failures (missing,
empty, corrupt or truncated file, a decode that hangs) raise `VideoDecodeError` naming the video and the record,
with the cause as a reason code and the file at fault set here, where each failure is detected (decode_errors.py).
"""
from __future__ import annotations

import math
import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from medgrpo_ray.data import decode_errors as why
from medgrpo_ray.data.decode_errors import VideoDecodeError  # defined beside its reason codes; imported from here

RC_BOX_COLOR = (0, 255, 0)  # the reference pipeline's region-caption box: green, 8 px wide
RC_BOX_WIDTH = 8


@dataclass(frozen=True)
class FrameBudget:
    """Limits on what one sample's video may cost: frame count and pixels per frame (after resizing)."""

    max_frames: int = 16
    min_pixels: int = 4 * 28 * 28
    max_pixels: int = 16 * 28 * 28
    factor: int = 28  # patch size x spatial merge size of the vision tower (28 for Qwen2.5-VL, 32 for Qwen3-VL)

    def __post_init__(self) -> None:
        if self.max_frames < 2 or self.max_frames % 2:
            raise ValueError(f"FrameBudget.max_frames={self.max_frames} must be an even number >= 2 (temporal patch of 2)")
        if self.min_pixels > self.max_pixels:
            raise ValueError("FrameBudget.min_pixels must not exceed max_pixels")


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8, T even
    fps: float  # sampling rate of `frames`: what the model's temporal positions use
    timestamps: tuple[float, ...]  # (T,) seconds of each frame from the clip start
    source: str  # the video file or the first frame path
    source_hw: tuple[int, int] = (0, 0)  # frame size before resizing (boxes in records use this pixel space)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def sample_times(start_s: float, end_s: float, fps: float, max_frames: int) -> tuple[list[float], float]:
    """Times (seconds, absolute) to sample in [start_s, end_s) at `fps`, capped at `max_frames`.

    When the cap binds, the rate is lowered so the frames still span the range evenly; the rate actually used is
    returned with the times. Example: 0-10 s at 2 fps with max 8 frames -> 0.8 fps, times 0, 1.25, ..., 8.75.
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    span = max(end_s - start_s, 0.0)
    count = max(1, math.ceil(span * fps - 1e-9))
    if count > max_frames:
        count, fps = max_frames, max_frames / span
    return [start_s + k / fps for k in range(count)], fps


def resize_frames(frames: np.ndarray, budget: FrameBudget) -> np.ndarray:
    """Resize every frame to the budget's smart-resized size (multiples of `factor`, pixels within bounds)."""
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    h, w = frames.shape[1:3]
    nh, nw = smart_resize(h, w, factor=budget.factor, min_pixels=budget.min_pixels, max_pixels=budget.max_pixels)
    if (nh, nw) == (h, w):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((nw, nh), Image.BICUBIC)) for f in frames])


def pad_even(frames: np.ndarray, times: list[float], fps: float) -> tuple[np.ndarray, list[float]]:
    """Repeat the last frame when the count is odd (Qwen groups frames in temporal pairs)."""
    if frames.shape[0] % 2 == 0:
        return frames, times
    return np.concatenate([frames, frames[-1:]]), times + [times[-1] + 1.0 / fps]


def draw_box(frame: np.ndarray, box_xyxy: Sequence[float], width: int = RC_BOX_WIDTH, color=RC_BOX_COLOR) -> np.ndarray:
    """A copy of `frame` with an axis-aligned rectangle outline, clipped to the frame."""
    out = frame.copy()
    h, w = out.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box_xyxy)
    x1, x2 = sorted((max(0, min(w - 1, x1)), max(0, min(w - 1, x2))))
    y1, y2 = sorted((max(0, min(h - 1, y1)), max(0, min(h - 1, y2))))
    for y_lo, y_hi, x_lo, x_hi in (
        (y1, y1 + width, x1, x2 + 1), (y2 - width + 1, y2 + 1, x1, x2 + 1),
        (y1, y2 + 1, x1, x1 + width), (y1, y2 + 1, x2 - width + 1, x2 + 1),
    ):
        out[max(0, y_lo):max(0, y_hi), max(0, x_lo):max(0, x_hi)] = color
    return out


def _run_with_timeout(fn, timeout_s: float, what: str, path: str | None = None):
    """Run `fn` in a daemon thread; raise VideoDecodeError (reason timeout, file `path`) if it does not finish in
    time.

    decord can hang inside native code (dmlc/decord#269); such a thread cannot be killed, so it is abandoned as a
    daemon and the record fails instead of the run.
    """
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = err

    t = threading.Thread(target=target, daemon=True, name="medgrpo-decode")
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise VideoDecodeError(f"{what}: decoding did not finish within {timeout_s:.0f} s (data.decode_timeout_s)",
                               reason=why.TIMEOUT, path=path)
    if "error" in box:
        raise box["error"]
    return box["value"]


def map_daemon(fn, items: Sequence, threads: int) -> list:
    """`[fn(x) for x in items]` on up to `threads` daemon threads; on failure, the error of the first failing item
    in order (as `ThreadPoolExecutor.map` raises).

    Daemon threads on purpose: a read blocked for good (a FIFO, a stalled network filesystem) must not hold its
    process at exit. A ThreadPoolExecutor's workers are not daemons and are joined when the interpreter exits
    (concurrent.futures registers that join with threading._register_atexit): that join is what kept a rollout
    worker alive after its Ray cluster was gone (docs/decisions.md, "Nothing left behind").
    """
    items = list(items)
    out: list = [None] * len(items)
    errors: dict[int, BaseException] = {}
    todo = iter(range(len(items)))
    lock = threading.Lock()

    def run() -> None:
        while not errors:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            try:
                out[i] = fn(items[i])
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                errors[i] = err

    workers = [threading.Thread(target=run, daemon=True, name="medgrpo-frames")
               for _ in range(max(1, min(threads, len(items))))]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if errors:
        raise errors[min(errors)]
    return out


def _check_file(path: str, who: str) -> None:
    if not os.path.exists(path):
        raise VideoDecodeError(f"{who}: video file {path} does not exist (check data.video_root and the record's `video`)",
                               reason=why.MISSING_FILE, path=path)
    # Only a regular file can be "empty"; a pipe or device is opened (and may block: the decode timeout applies).
    if stat.S_ISREG(os.stat(path).st_mode) and os.path.getsize(path) == 0:
        raise VideoDecodeError(f"{who}: video file {path} is empty (0 bytes)", reason=why.EMPTY_FILE, path=path)


def decode_threads() -> int:
    """Decoder threads: the process's OMP_NUM_THREADS, which an actor gets from its reserved CPUs
    (driver/cluster.py actor_options); 1 where it is unset."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ValueError:
        return 1


def decode_video(path: str, fps: float, start_s: float | None, end_s: float | None, budget: FrameBudget,
                 timeout_s: float = 60.0, who: str = "record") -> Clip:
    """Sample `path` with decord at `fps` between start_s and end_s (seconds; None = video bounds)."""
    _check_file(path, who)

    def work() -> Clip:
        import decord

        try:
            vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=decode_threads())
            n = len(vr)
            native = float(vr.get_avg_fps())
        except Exception as err:  # decord raises DECORDError / RuntimeError on corrupt containers
            raise VideoDecodeError(f"{who}: cannot open video {path}: {str(err).splitlines()[0][:200]}",
                                   reason=_unreadable(path), path=path) from None
        if n == 0 or not native > 0:
            raise VideoDecodeError(f"{who}: video {path} has no decodable frames", reason=_unreadable(path), path=path)
        duration = n / native
        lo = 0.0 if start_s is None else max(0.0, float(start_s))
        hi = duration if end_s is None else min(float(end_s), duration)
        if hi <= lo:
            raise VideoDecodeError(f"{who}: empty time range [{lo}, {hi}] s in {path} (duration {duration:.2f} s)",
                                   reason=why.CLIP_OUTSIDE_VIDEO, path=path)
        times, used_fps = sample_times(lo, hi, fps, budget.max_frames)
        idx = [min(n - 1, int(round(t * native))) for t in times]
        try:
            frames = vr.get_batch(idx).asnumpy()
        except Exception as err:
            raise VideoDecodeError(f"{who}: decoding frames {idx[0]}..{idx[-1]} of {path} failed (truncated?): "
                                   f"{str(err).splitlines()[0][:200]}", reason=why.TRUNCATED, path=path) from None
        rel = [t - lo for t in times]
        hw = (int(frames.shape[1]), int(frames.shape[2]))
        frames, rel = pad_even(resize_frames(frames, budget), rel, used_fps)
        return Clip(frames=frames, fps=used_fps, timestamps=tuple(rel), source=path, source_hw=hw)

    return _run_with_timeout(work, timeout_s, f"{who}: {path}", path=path)


def _unreadable(path: str) -> str:
    """The reason for a video decord cannot open or finds no frames in: truncated when it is an MP4/MOV cut off
    mid-box (a partial download or copy), else corrupt."""
    return why.TRUNCATED if why.iso_bmff_truncated(path) else why.CORRUPT


def _load_image(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"))
        return np.asarray(im.convert("RGB"))


def load_frame_list(paths: Sequence[str], fps: float, budget: FrameBudget, threads: int = 4,
                    timeout_s: float = 60.0, who: str = "record") -> tuple[Clip, list[int]]:
    """Load a published-format frame list (every frame, in order, at `fps`), subsampled evenly to the budget.

    Returns the clip and the indices into `paths` that were kept (to find the region-caption start frame).
    """
    if not paths:
        raise VideoDecodeError(f"{who}: the record's frame list is empty", reason=why.EMPTY_FRAME_LIST)
    keep = list(range(len(paths)))
    used_fps = fps
    if len(paths) > budget.max_frames:
        keep = [int(i) for i in np.linspace(0, len(paths) - 1, budget.max_frames).round()]
        used_fps = fps * (budget.max_frames - 1) / max(len(paths) - 1, 1)
    for i in keep:
        _check_file(paths[i], who)

    def load(path: str) -> np.ndarray:
        try:
            return _load_image(path)
        except Exception as err:
            raise VideoDecodeError(f"{who}: cannot read a frame image: {err}", reason=why.BAD_FRAME_IMAGE,
                                   path=path) from None

    def work() -> np.ndarray:
        imgs = map_daemon(load, [paths[i] for i in keep], threads)
        if len({im.shape for im in imgs}) != 1:
            raise VideoDecodeError(f"{who}: frames of {paths[0]} differ in size", reason=why.FRAME_SIZE_MISMATCH,
                                   path=paths[0])
        return np.stack(imgs)

    try:
        frames = _run_with_timeout(work, timeout_s, f"{who}: {paths[0]}", path=paths[0])
    except VideoDecodeError as err:
        if err.reason != why.TIMEOUT:
            raise
        # The message names the first frame; the one that hangs is usually not a regular file (a FIFO, a device).
        hung = why.first_irregular(paths[i] for i in keep) or paths[0]
        raise VideoDecodeError(str(err), reason=why.TIMEOUT, path=hung) from None
    rel = [i / fps for i in keep]
    hw = (int(frames.shape[1]), int(frames.shape[2]))
    frames, rel = pad_even(resize_frames(frames, budget), rel, used_fps)
    return Clip(frames=frames, fps=used_fps, timestamps=tuple(rel), source=paths[0], source_hw=hw), keep


class ClipCache:
    """A small thread-safe LRU of decoded clips keyed by (video, sampling parameters).

    The G samples of a prompt and repeated epochs then decode once per worker.
    """

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_load(self, key, loader):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
        value = loader()
        with self._lock:
            self.misses += 1
            self._data[key] = value
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
        return value
