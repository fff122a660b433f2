"""CholecT50 -> SourceVideo.

Native format (CAMMA-public/cholect50 docs/README-Format.md @ d0aa1b1d5df249098b29f57c84c8faf651e2d326 and
dataloader_pth.py @ 0a27b3c0be6fece2198a2d8d9c1164dc175a942e; docs/curation.md §2.1):
- `videos/VIDxx/NNNNNN.png`: frames extracted at 1 fps, 854x480; the file number is the frame index.
- `labels/VIDxx.json`: `video` (int), `fps` (usually 1), `num_frames`, `categories` {triplet, instrument, verb,
  target, phase: id -> name}, `annotations` {frame_id: [instance, ...]}.
- instance = 15 numbers: [0] triplet id; [1:7] instrument (id, score, x, y, w, h); [7] verb id; [8:14] target
  (id, score, x, y, w, h); [14] phase id. Boxes are top-left x, y, width, height as fractions of the image
  width/height. -1 = null. Release 2.0 reportedly has every box slot at -1 (then no boxes, not an error).

Out: time = frame_id / fps; phase segments from per-frame phase ids; one Triplet per instance with a triplet id
(names from the verb/target/instrument tables); instrument boxes in pixels of the frame size.

Assumed beyond the documented facts: the video id is the label file's stem (`VID01`); the named "null" triplets
(instrument with null_verb/null_target) are kept as the source names them, only triplet id -1 means none; target
boxes are not converted (instrument boxes only); a frame's phase is its instances' phase id (a disagreement is a
counted skip, the first instance wins).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from medgrpo_ray.curation.schema import Box, ConversionReport, SourceVideo, Triplet
from medgrpo_ray.curation.sources._common import (as_float, as_int, frame_entries, id_table, runs_to_segments,
                                                  tlwh_to_xyxy)

SOURCE = "CholecT50"
FRAME_SIZE = (854, 480)  # (width, height) of the released frames
DEFAULT_FPS = 1.0
INSTANCE_LEN = 15
CATEGORY_KEYS = ("triplet", "instrument", "verb", "target", "phase")


@dataclass(frozen=True)
class Instance:
    """One parsed 15-number instance; None where the slot is -1 (null)."""

    triplet: Optional[Triplet]
    box: Optional[Box]
    phase: Optional[str]


def parse_instance(values: Any, tables: dict[str, dict[int, str]], frame_size: tuple[int, int]) -> Instance:
    """Slice one 15-number instance per the official loader. ValueError (naming the slot and value) for a wrong
    length, a non-numeric slot, an unknown category id or a partly-null box."""
    if not isinstance(values, (list, tuple)) or len(values) != INSTANCE_LEN:
        raise ValueError(f"expected {INSTANCE_LEN} numbers, got {values!r}")
    nums = [as_float(v) for v in values]

    def name(kind: str, slot: int) -> Optional[str]:
        i = as_int(nums[slot])
        if i == -1:
            return None
        if i not in tables[kind]:
            raise ValueError(f"unknown {kind} id {i} at [{slot}]")
        return tables[kind][i]

    triplet_name = name("triplet", 0)
    instrument, verb, target = name("instrument", 1), name("verb", 7), name("target", 8)
    triplet = None
    if triplet_name is not None:
        parts = [p.strip() for p in triplet_name.split(",")]
        if None in (instrument, verb, target) and len(parts) == 3:  # a null component slot: the triplet's own name
            instrument, verb, target = (c if c is not None else p for c, p in zip((instrument, verb, target), parts))
        if None in (instrument, verb, target):
            raise ValueError(f"triplet {triplet_name!r} with a null instrument/verb/target slot")
        triplet = Triplet(instrument, verb, target)
    box = None
    xywh = nums[3:7]
    if any(v != -1 for v in xywh):
        if instrument is None:
            raise ValueError(f"instrument box {xywh} without an instrument id")
        if -1 in xywh:
            raise ValueError(f"partly null instrument box {xywh}")
        box = Box(instrument, *tlwh_to_xyxy(xywh, frame_size), extra={"score": nums[2]})
    return Instance(triplet, box, name("phase", 14))


def load_label_file(path: Path, report: ConversionReport, frame_size: tuple[int, int] = FRAME_SIZE,
                    ) -> Optional[SourceVideo]:
    """One `labels/VIDxx.json` -> SourceVideo without frame paths; None (a counted skip) if unreadable."""
    try:
        data = json.loads(path.read_text())
        fps = as_float(data.get("fps", DEFAULT_FPS)) or DEFAULT_FPS
        tables = {k: id_table(data["categories"][k]) for k in CATEGORY_KEYS}
        annotations = data["annotations"]
        if not isinstance(annotations, dict):
            raise ValueError(f"annotations: expected {{frame_id: [instance, ...]}}, got {type(annotations).__name__}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        report.skip("unreadable label file", f"{path}: {type(err).__name__}: {err}")
        return None
    video = SourceVideo(source=SOURCE, video_id=path.stem, native_fps=fps, frame_size=frame_size)
    phases: list[tuple[float, Optional[str]]] = []
    last_t = -1.0
    for frame, instances in frame_entries(annotations, path, report):
        t = frame / fps
        last_t = max(last_t, t)
        frame_phase: Optional[str] = None
        for k, values in enumerate(instances):
            try:
                inst = parse_instance(values, tables, frame_size)
            except ValueError as err:
                report.skip("malformed instance", f"{path}: frame {frame}: instance {k}: {err}")
                continue
            if inst.triplet is not None:
                video.triplets.setdefault(t, []).append(inst.triplet)
            if inst.box is not None:
                video.boxes.setdefault(t, []).append(inst.box)
            if inst.phase is not None:
                if frame_phase is None:
                    frame_phase = inst.phase
                elif inst.phase != frame_phase:
                    report.skip("conflicting phase", f"{path}: frame {frame}: phase {inst.phase!r} after "
                                f"{frame_phase!r} (kept the first)")
        if frame_phase is not None:
            phases.append((t, frame_phase))
    video.segments = runs_to_segments(phases, 1.0 / fps, "phase")
    num_frames = data.get("num_frames")
    if isinstance(num_frames, (int, float)) and not isinstance(num_frames, bool) and num_frames > 0:
        video.duration_s = num_frames / fps
    elif last_t >= 0:
        video.duration_s = last_t + 1.0 / fps
    video.extra = {"label_file": str(path), "video": data.get("video")}
    return video


def frame_files(video_dir: Path) -> dict[int, str]:
    """`NNNNNN.png` files of one video directory -> {frame index: file name}; {} when the directory is absent."""
    if not video_dir.is_dir():
        return {}
    return {int(p.stem): p.name for p in video_dir.iterdir() if p.suffix == ".png" and p.stem.isdigit()}


def image_size(path: Path) -> Optional[tuple[int, int]]:
    """(width, height) of an image if Pillow is installed and reads it, else None."""
    try:
        from PIL import Image
        with Image.open(path) as im:
            return (int(im.width), int(im.height))
    except Exception:  # Pillow missing or the file unreadable: the documented size stands
        return None


def load(root: Path | str, report: ConversionReport) -> Iterator[SourceVideo]:
    """Every `labels/VID*.json` under `root`, in name order, with frame paths from `videos/<stem>/`."""
    root = Path(root)
    labels = root / "labels"
    if not labels.is_dir():
        raise FileNotFoundError(f"CholecT50: no labels directory at {labels} (expected labels/VIDxx.json)")
    frame_size: Optional[tuple[int, int]] = None
    for path in sorted(labels.glob("*.json")):
        files = frame_files(root / "videos" / path.stem)
        if frame_size is None and files:
            frame_size = image_size(root / "videos" / path.stem / files[min(files)]) or FRAME_SIZE
        video = load_label_file(path, report, frame_size or FRAME_SIZE)
        if video is None:
            continue
        video.frame_paths = {i: f"videos/{path.stem}/{name}" for i, name in sorted(files.items())}
        report.videos += 1
        yield video
