"""The frames the caption providers see, as the published pipeline figure shows them: each caption unit's sampled
frames with the labels and boxes its facts hold drawn on them, JPEG-encoded (pure CPU work, no Ray here: the
workflows tier runs `render_job` on Ray CPU workers or in process, workflows/curation_frames.py).

Per unit at most `max_frames` of its sampled frames are sent, evenly spaced over the clip (`pick`); each is decoded
with the project's decord-based decoding (data/video.py: `decode_video` for a video file, `load_frame_list` for a
frame dump), scaled so its longest side is at most `size` (never enlarged), and drawn on (`draw_frame`): every box
of that frame as a rectangle outline with its tool name and track id above it (the RC target in the reference
pipeline's green, RC_BOX_COLOR, other tracks in fixed colours by track), and below the frame a caption strip with
the clip time (seconds and 0-1) and the phase and actions. The images go into the request next to their per-frame
text lines (providers.messages_for); the reply cache key covers their digest (providers.input_hash).
"""
from __future__ import annotations

import hashlib
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    from medgrpo_ray.curation.caption_units import CaptionUnit

TARGET_COLOR = (0, 255, 0)  # = data.video.RC_BOX_COLOR (the region-caption box of the reference pipeline)
TRACK_COLORS = ((255, 255, 0), (0, 255, 255), (255, 0, 255), (255, 140, 0), (140, 140, 255), (255, 255, 255))
STRIP_BG, STRIP_FG = (0, 0, 0), (255, 255, 255)


@dataclass(frozen=True)
class FrameSettings:
    """captions.send_frames / max_frames / frame_size of the curation config, and the JPEG quality."""

    max_frames: int = 8
    size: int = 448      # longest side in pixels (frames are never enlarged)
    quality: int = 85

    def __post_init__(self) -> None:
        if self.max_frames < 1 or self.size < 32 or not 1 <= self.quality <= 95:
            raise ValueError(f"frame settings {self}: captions.max_frames must be >= 1, captions.frame_size >= 32, "
                             "quality in 1..95")


def pick(n: int, m: int) -> list[int]:
    """`m` of the indices 0..n-1, evenly spaced with both ends (all of them when n <= m)."""
    if n <= m:
        return list(range(n))
    if m == 1:
        return [0]
    return sorted({int(round(i * (n - 1) / (m - 1))) for i in range(m)})


def frame_job(unit: "CaptionUnit", fs: FrameSettings) -> dict:
    """What rendering one unit needs (JSON-able, small: it travels to a Ray worker): the video or frame paths
    (relative to the render root), the clip, the picked frames' facts and the source frame size."""
    idx = pick(len(unit.frame_facts), fs.max_frames)
    return {"unit": unit.unit, "video": unit.video, "start": unit.clip.start, "end": unit.clip.end,
            "fps": unit.clip.fps, "n": len(unit.frame_facts), "frames": idx,
            "facts": [unit.frame_facts[i] for i in idx],
            "frame_size": list(unit.frame_size) if unit.frame_size else None}


def _even(n: int) -> int:
    return max(2, n + (n % 2))


def decode_picked(job: dict, root: Path, fs: FrameSettings) -> tuple[list[np.ndarray], tuple[int, int]]:
    """The picked frames (RGB uint8, at most about `size` on the longest side) and the source (width, height)."""
    from medgrpo_ray.data.video import FrameBudget, decode_video, load_frame_list

    who = f"caption unit {job['unit']}"
    pixels = max(fs.size * fs.size, 4)
    video = job["video"]
    if isinstance(video, list):
        paths = [str(root / video[min(i, len(video) - 1)]) for i in job["frames"]]
        budget = FrameBudget(max_frames=_even(len(paths)), min_pixels=4, max_pixels=pixels, factor=2)
        clip, _ = load_frame_list(paths, job["fps"], budget, threads=1, who=who)
        frames = list(clip.frames[:len(paths)])
    else:
        budget = FrameBudget(max_frames=_even(job["n"] + 1), min_pixels=4, max_pixels=pixels, factor=2)
        clip = decode_video(str(root / video), job["fps"], job["start"], job["end"], budget, who=who)
        frames = [clip.frames[min(i, clip.num_frames - 1)] for i in job["frames"]]  # a video cut short: its last
    h, w = clip.source_hw
    src = tuple(job["frame_size"]) if job.get("frame_size") else (w, h)
    return frames, (int(src[0]), int(src[1]))


def track_color(track: str, target: bool) -> tuple[int, int, int]:
    return TARGET_COLOR if target else TRACK_COLORS[zlib.crc32(str(track).encode()) % len(TRACK_COLORS)]


def _font(px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def draw_frame(frame: np.ndarray, facts: dict, source_wh: Sequence[int], size: int) -> np.ndarray:
    """`frame` scaled to longest side <= `size`, the facts' boxes (x1, y1, x2, y2 in source pixels of
    `source_wh`) drawn with their names, and a caption strip (time, phase, actions) added below it."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(frame))
    scale = min(1.0, size / max(img.size))
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    if (w, h) != img.size:
        img = img.resize((w, h), Image.BICUBIC)
    sx, sy = w / float(source_wh[0]), h / float(source_wh[1])
    line = max(3, round(max(w, h) / 120))
    font = _font(max(10, round(max(w, h) / 40)))
    strip_h = max(14, round(max(w, h) / 20))
    canvas = Image.new("RGB", (w, h + strip_h), STRIP_BG)
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for label, track, x1, y1, x2, y2, target in facts.get("boxes", []):
        color = track_color(track, target)
        box = [round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy)]
        box = [min(max(v, 0), lim - 1) for v, lim in zip(box, (w, h, w, h))]
        draw.rectangle(box, outline=color, width=line)
        name = f"{label} #{track}" if track else str(label)
        tw, th = draw.textbbox((0, 0), name, font=font)[2:]
        ty = box[1] - th - 2 if box[1] - th - 2 >= 0 else box[1] + line
        draw.rectangle([box[0], ty, box[0] + tw + 2, ty + th + 1], fill=color)
        draw.text((box[0] + 1, ty), name, fill=(0, 0, 0), font=font)
    strip = f"t={facts['t']:.1f} s ({facts['norm']:.2f})  phase: {facts.get('phase') or 'none'}"
    if facts.get("actions"):
        strip += f"  actions: {facts['actions']}"
    draw.text((3, h + 2), strip, fill=STRIP_FG, font=font)
    return np.asarray(canvas)


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=quality, subsampling=0)  # 4:4:4 keeps thin colour lines
    return buf.getvalue()


def render_job(job: dict, root: str | Path, fs: FrameSettings) -> tuple[list[int], list[bytes]]:
    """(picked frame indices, JPEG bytes per picked frame) of one unit; raises VideoDecodeError naming the unit."""
    frames, src = decode_picked(job, Path(root), fs)
    return list(job["frames"]), [encode_jpeg(draw_frame(f, facts, src, fs.size), fs.quality)
                                 for f, facts in zip(frames, job["facts"])]


def render_safe(job: dict, root: str | Path, fs: FrameSettings) -> tuple[list[int], list[bytes]] | str:
    """render_job, or the error text (a unit whose frames cannot be read is a counted reject, not a crash)."""
    try:
        return render_job(job, root, fs)
    except Exception as err:  # noqa: BLE001 - any decode or draw failure ends this unit, named
        return f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"


def attach(unit: "CaptionUnit", result: tuple[list[int], list[bytes]]) -> None:
    unit.image_frames, unit.images = list(result[0]), list(result[1])


def frames_digest(images: Sequence[bytes]) -> Optional[str]:
    """sha256 over the unit's JPEG frames (None without frames)."""
    if not images:
        return None
    h = hashlib.sha256()
    for im in images:
        h.update(hashlib.sha256(im).digest())
    return h.hexdigest()
