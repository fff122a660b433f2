"""Clip windows and frame sampling for curated records (pure, seeded).

Published marginals copied as the default prior, not a published rule: MedVidBench's clips are sampled at 0.5 fps
(63.3 %), 1 fps (22.0 %), 2 fps (7.5 %) and lower rates for the rest (curation.md 1.2); the test set averages 16.6
frames per record. Here a rate is drawn from the prior, then lowered until the clip holds at most `frame_cap`
frames (default 64). Frame times are start + k / fps; the native frame of a time is round(t x native fps), which
gives the ragged native strides the released split shows (15, 16, 24 in one sample).

Every draw comes from a generator seeded by (seed, video id, task, k), so a rerun or a shard of the videos gives
the same clips.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np

DEFAULT_FPS_PRIOR: dict[str, float] = {"0.5": 0.633, "1.0": 0.220, "2.0": 0.075, "0.25": 0.072}
DEFAULT_FRAME_CAP = 64
LOWER_RATES = (3.0, 2.0, 1.0, 0.5, 0.25, 0.2, 0.1)


def rng_for(seed: int, video_id: str, task: str, k: int = 0) -> np.random.Generator:
    """The generator of one (video, task) unit's draws."""
    return np.random.default_rng([seed, zlib.crc32(video_id.encode()), zlib.crc32(task.encode()), k])


def fps_text(fps: float) -> str:
    """The published spelling of a rate: "0.5", "1.0", "2.0", "0.25"."""
    return f"{fps:.1f}" if float(fps).is_integer() or fps * 10 == int(fps * 10) else f"{fps:.4g}"


def n_frames(length_s: float, fps: float) -> int:
    return max(1, int(math.floor(length_s * fps + 1e-9)))


def choose_fps(rng: np.random.Generator, length_s: float, prior: Mapping[str, float] = DEFAULT_FPS_PRIOR,
               frame_cap: int = DEFAULT_FRAME_CAP) -> float:
    """A rate drawn from `prior`, lowered (through LOWER_RATES) until the clip holds at most `frame_cap` frames."""
    names = sorted(prior)
    weights = np.asarray([prior[n] for n in names], dtype=float)
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"fps prior {dict(prior)}: weights must be >= 0 with a positive sum")
    fps = float(names[int(rng.choice(len(names), p=weights / weights.sum()))])
    if n_frames(length_s, fps) <= frame_cap:
        return fps
    for lower in LOWER_RATES:
        if lower < fps and n_frames(length_s, lower) <= frame_cap:
            return lower
    return 1.0 / math.ceil(length_s / frame_cap)  # longer than frame_cap / 0.1 s: one frame every n seconds


@dataclass(frozen=True)
class Clip:
    """A window [start, end) of a source video in seconds, sampled at `fps`."""

    start: float
    end: float
    fps: float

    @property
    def length(self) -> float:
        return self.end - self.start

    def times(self) -> list[float]:
        """Sampled frame times (seconds in the video)."""
        return [self.start + k / self.fps for k in range(n_frames(self.length, self.fps))]

    def native_frames(self, native_fps: float) -> list[int]:
        return [int(round(t * native_fps)) for t in self.times()]


def window_around(rng: np.random.Generator, start: float, end: float, duration: float, min_len: float,
                  max_len: float) -> Optional[tuple[float, float]]:
    """A window of whole seconds containing [start, end), of length in [min_len, max_len] where the video allows,
    placed uniformly among the positions that contain the span; None when the span is longer than max_len."""
    span = end - start
    if span > max_len:
        return None
    lo = max(min_len, math.ceil(span))
    hi = max(lo, min(max_len, math.floor(duration)))
    length = float(rng.integers(lo, hi + 1)) if hi > lo else float(lo)
    first = max(0.0, math.ceil(end - length))
    last = min(math.floor(start), math.floor(duration - length)) if duration >= length else 0.0
    if last < first:
        return (max(0.0, math.floor(start)), min(duration, math.floor(start) + length))
    s = float(rng.integers(int(first), int(last) + 1))
    return s, s + length


def window_ending_in(rng: np.random.Generator, seg_start: float, seg_end: float, min_len: float,
                     max_len: float) -> Optional[tuple[float, float]]:
    """A window that ends inside [seg_start + 1, seg_end] (the current step is under way) of min..max length."""
    ends = [t for t in range(int(math.ceil(seg_start + 1)), int(math.floor(seg_end)) + 1) if t >= min_len]
    if not ends:
        return None
    end = float(ends[int(rng.integers(len(ends)))])
    length = float(rng.integers(int(min_len), int(max(min_len, min(max_len, end))) + 1))
    return max(0.0, end - length), end
