"""From a record to the model's frames: pick the loader, apply the budget and the region-caption box, cache.

Rollout workers and learners both call `clip_for_record`, so the two see identical pixels for a record.
"""
from __future__ import annotations

import dataclasses
import os

from medgrpo_ray.data.records import VideoRecord
from medgrpo_ray.data.video import Clip, ClipCache, FrameBudget, decode_video, draw_box, load_frame_list


def _resolve(path: str, video_root: str) -> str:
    return path if not video_root or os.path.isabs(path) else os.path.join(video_root, path)


def with_rc_box(clip: Clip, record: VideoRecord) -> Clip:
    """Draw the record's region-caption box (green, 8 px, as the reference pipeline) on the sampled frame
    nearest to the box's time. Box coordinates are in the source frame's pixels and are scaled to the resized
    frame (the reference draws them as-is on frames it already resized: the same thing when the stored box is
    in resized space, which is what frame-list records of the published data appear to use)."""
    box, when = record.rc_box, record.rc_time
    if box is None or when is None:
        return clip
    idx = min(range(clip.num_frames), key=lambda i: abs(clip.timestamps[i] - when))
    sh, sw = clip.source_hw
    h, w = clip.frames.shape[1:3]
    sx, sy = (w / sw, h / sh) if sh and sw else (1.0, 1.0)
    scaled = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    frames = clip.frames.copy()
    frames[idx] = draw_box(frames[idx], scaled)
    return dataclasses.replace(clip, frames=frames)


def clip_for_record(record: VideoRecord, budget: FrameBudget, *, cache: ClipCache | None = None, video_root: str = "",
                    timeout_s: float = 60.0, threads: int = 4) -> Clip:
    """Frames of `record` under `budget` (VideoDecodeError names the record on failure)."""
    who = f"record {record.uid} ({record.source}#{record.index})"

    def load() -> Clip:
        if record.is_video_file:
            clip = decode_video(_resolve(record.video_path, video_root), record.fps, record.start_s, record.end_s,
                                budget, timeout_s=timeout_s, who=who)
        else:
            paths = [_resolve(p, video_root) for p in record.frame_paths]
            clip, _ = load_frame_list(paths, record.fps, budget, threads=threads, timeout_s=timeout_s, who=who)
        return with_rc_box(clip, record)

    if cache is None:
        return load()
    key = (str(record.video), record.fps, record.start_s, record.end_s, budget, record.rc_box, record.rc_time)
    return cache.get_or_load(key, load)
