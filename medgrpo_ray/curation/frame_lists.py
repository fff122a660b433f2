"""JPEG frame lists for the curated records (`frames: jpeg`): the released MedVidBench layout, where a record's
`video` is the list of its clip's frame images.

Each record's sampled frames (clip start + k / fps for k < floor(length x fps), the times the record was built on)
are written as OUT/frames/<source>/<video id>/<native frame>.jpg, the native frame being round(t x the source's
native fps); the record's `video` becomes those paths relative to OUT and `start_time` / `end_time` leave its
metadata (a frame list is the clip). A frame is written once, atomically (io/atomic.py), and shared by every
record that samples it: files already there are reused, so a rerun with the same --out decodes only what is
missing. Not fsynced one by one (thousands of files): a killed process never leaves a partial frame, a machine
crash may, and a rerun does not re-check the bytes of frames that exist. Video files are decoded with data/video.py's decord path at native resolution; frame dumps (CholecT50's
PNGs) are re-encoded. JPEG quality 95, 4:2:0 as usual for video frames.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from medgrpo_ray.curation.clips import Clip
from medgrpo_ray.curation.schema import SourceVideo

QUALITY = 95
FRAMES_DIR = "frames"


@dataclass
class FrameListStats:
    records: int = 0
    written: int = 0    # frames decoded and written by this call
    reused: int = 0     # frames already on disk
    files: int = 0      # distinct frame files the records point at

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name)) or "_"


def frame_file(source: str, video_id: str, native_frame: int) -> str:
    """The frame's path relative to OUT."""
    return f"{FRAMES_DIR}/{_safe(source)}/{_safe(video_id)}/{native_frame:06d}.jpg"


def record_clip(record: Mapping) -> Clip:
    start, end = record["curation"]["clip"]
    return Clip(float(start), float(end), float(record["metadata"]["fps"]))


def _write_jpeg(path: Path, frame: np.ndarray) -> None:
    import io

    from PIL import Image

    from medgrpo_ray.io.atomic import atomic_write_bytes

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buf, "JPEG", quality=QUALITY)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue(), fsync=False)


def _decode(record: Mapping, v: SourceVideo, out: Path, clip: Clip, n: int) -> list[np.ndarray]:
    """The record's n frames at native resolution, from its video file or its stored frame list (paths relative
    to OUT, as the records hold them)."""
    from medgrpo_ray.data.video import FrameBudget, decode_video, load_frame_list

    who = f"record {record['curation'].get('unit', v.video_id)}"
    budget = FrameBudget(max_frames=max(2, n + 2 - n % 2), min_pixels=1, max_pixels=1 << 40, factor=1)
    video = record["video"]
    if isinstance(video, list):
        frames, _ = load_frame_list([str(out / p) for p in video[:n]], clip.fps, budget, threads=2, who=who)
    else:
        frames = decode_video(str(out / video), clip.fps, clip.start, clip.end, budget, who=who)
    return [frames.frames[min(i, frames.num_frames - 1)] for i in range(n)]


def to_frame_lists(records: Iterable[dict], videos: Mapping[tuple[str, str], SourceVideo], out: Path) -> FrameListStats:
    """Point every record (changed in place; the same dict may come twice) at its JPEG frames under OUT/frames,
    writing the missing ones. Raises ValueError naming the record whose video is unknown."""
    out = Path(out)
    stats, seen, files = FrameListStats(), set(), set()
    for rec in records:
        if id(rec) in seen:
            continue
        seen.add(id(rec))
        key = (rec["data_source"], rec["metadata"]["video_id"])
        v = videos.get(key)
        if v is None:
            raise ValueError(f"record {rec['curation'].get('unit')}: no converted video {key} for its JPEG frames")
        clip = record_clip(rec)
        times = clip.times()
        names = [frame_file(v.source, v.video_id, int(round(t * v.native_fps))) for t in times]
        missing = [i for i, name in enumerate(names) if not (out / name).is_file()]
        if missing:
            frames = _decode(rec, v, out, clip, len(times))
            for i in missing:
                if not (out / names[i]).is_file():  # another record's frame, written meanwhile
                    _write_jpeg(out / names[i], frames[i])
                    stats.written += 1
        stats.reused += len(names) - len(missing)
        files.update(names)
        rec["video"] = names
        for k in ("start_time", "end_time"):
            rec["metadata"].pop(k, None)
        stats.records += 1
    stats.files = len(files)
    return stats


def remove_stale_temp(out: Path) -> None:
    """Temp files a killed run left under OUT/frames (io/atomic's temp_name)."""
    from medgrpo_ray.io.atomic import TMP_PREFIX

    root = Path(out) / FRAMES_DIR
    if root.is_dir():
        for p in root.rglob(f"{TMP_PREFIX}*"):
            try:
                os.unlink(p)
            except OSError:
                pass
