"""The one schema every source converter produces (curation/sources/<source>.py), whatever the native format.

A `SourceVideo` is one video of a source dataset with the label tracks that source has, all in the same units:
**times in seconds from the start of the video**, **boxes as x1, y1, x2, y2 in source pixels** (the frame size is
recorded), labels as the source's own vocabulary strings. Converters do the unit work (normalized tlwh boxes,
native frame numbers, min:s times, 30 Hz frame indices); everything after them (clips, template tasks, caption
units) reads only this. JSON-able both ways, so a converted source can be cached and inspected.

Pure data: no I/O, no Ray. `ConversionReport` counts what a converter skipped and why (a malformed annotation is a
counted, logged skip, never a crash of the conversion).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

SEGMENT_LEVELS = ("phase", "action", "gesture", "motion", "step")


@dataclass(frozen=True)
class Segment:
    """A labelled time span; `level` says what kind of label (phase, action, gesture, motion, step)."""

    start: float
    end: float
    label: str
    level: str = "action"

    def __post_init__(self) -> None:
        if self.level not in SEGMENT_LEVELS:
            raise ValueError(f"segment level {self.level!r}: expected one of {SEGMENT_LEVELS}")
        if not self.end >= self.start >= 0:
            raise ValueError(f"segment {self.label!r} [{self.start}, {self.end}]: needs 0 <= start <= end")


@dataclass(frozen=True)
class Box:
    """One object instance on one frame: label, optional track id, x1 y1 x2 y2 in source pixels, extra fields
    the source carries (operator/hand, visibility flags, scores)."""

    label: str
    x1: float
    y1: float
    x2: float
    y2: float
    track_id: Optional[str] = None
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not (self.x2 >= self.x1 and self.y2 >= self.y1):
            raise ValueError(f"box {self.label!r} ({self.x1}, {self.y1}, {self.x2}, {self.y2}): needs x1<=x2, y1<=y2")

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


@dataclass(frozen=True)
class Triplet:
    """A CholecT50-style action triplet on one frame (instrument, verb, target)."""

    instrument: str
    verb: str
    target: str


@dataclass(frozen=True)
class CvsInterval:
    """A time span with the three critical-view-of-safety criteria scored 0-2."""

    start: float
    end: float
    two_structures: int
    cystic_plate: int
    hepatocystic_triangle: int

    def scores(self) -> dict[str, int]:
        return {"two_structures": self.two_structures, "cystic_plate": self.cystic_plate,
                "hepatocystic_triangle": self.hepatocystic_triangle}


@dataclass(frozen=True)
class Skill:
    """A trial's skill rating: the self-proclaimed level (N/I/E), the global rating score and the aspect scores
    (aspect name as MedVidBench writes it -> 1..5)."""

    level: Optional[str]
    scores: dict[str, int]
    grs: Optional[int] = None


@dataclass
class SourceVideo:
    """One video of a source dataset in the common schema (see the module docstring for units)."""

    source: str                                   # canonical dataset name (medvidbench.tasks.DATASETS)
    video_id: str                                 # the published id convention of the source (VID01, Suturing_B001, ...)
    native_fps: float
    frame_size: Optional[tuple[int, int]] = None  # (width, height) of the source frames
    duration_s: Optional[float] = None
    video_path: Optional[str] = None              # a video file, relative to the source root
    frame_paths: dict[int, str] = field(default_factory=dict)  # native frame index -> image file (frame dumps)
    segments: list[Segment] = field(default_factory=list)
    boxes: dict[float, list[Box]] = field(default_factory=dict)        # time (s) -> boxes on that frame
    triplets: dict[float, list[Triplet]] = field(default_factory=dict)  # time (s) -> triplets on that frame
    cvs: list[CvsInterval] = field(default_factory=list)
    skill: Optional[Skill] = None
    procedure: Optional[str] = None
    split: Optional[str] = None                   # the source's official split (train / val / test), if any
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["boxes"] = {repr(t): [asdict(b) for b in bs] for t, bs in sorted(self.boxes.items())}
        d["triplets"] = {repr(t): [asdict(x) for x in xs] for t, xs in sorted(self.triplets.items())}
        d["frame_paths"] = {str(k): v for k, v in sorted(self.frame_paths.items())}
        d["frame_size"] = list(self.frame_size) if self.frame_size else None
        return d

    @classmethod
    def from_json(cls, d: dict) -> SourceVideo:
        return cls(
            source=d["source"], video_id=d["video_id"], native_fps=float(d["native_fps"]),
            frame_size=tuple(d["frame_size"]) if d.get("frame_size") else None,
            duration_s=d.get("duration_s"), video_path=d.get("video_path"),
            frame_paths={int(k): v for k, v in (d.get("frame_paths") or {}).items()},
            segments=[Segment(**s) for s in d.get("segments") or []],
            boxes={float(t): [Box(**b) for b in bs] for t, bs in (d.get("boxes") or {}).items()},
            triplets={float(t): [Triplet(**x) for x in xs] for t, xs in (d.get("triplets") or {}).items()},
            cvs=[CvsInterval(**c) for c in d.get("cvs") or []],
            skill=Skill(**d["skill"]) if d.get("skill") else None,
            procedure=d.get("procedure"), split=d.get("split"), extra=dict(d.get("extra") or {}))

    def tracks(self) -> dict[str, list[tuple[float, Box]]]:
        """track id -> [(time, box)] in time order, for boxes that carry a track id."""
        out: dict[str, list[tuple[float, Box]]] = {}
        for t in sorted(self.boxes):
            for b in self.boxes[t]:
                if b.track_id is not None:
                    out.setdefault(b.track_id, []).append((t, b))
        return out


@dataclass
class ConversionReport:
    """What a converter read and what it skipped, with reasons (a skip is counted, never silent)."""

    source: str
    videos: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    examples: dict[str, str] = field(default_factory=dict)  # reason -> first message (file, field, value)

    def skip(self, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, message)

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "videos": self.videos, "skipped": dict(self.skipped),
                "examples": dict(self.examples)}
