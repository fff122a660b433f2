"""CholecTrack20 -> SourceVideo.

Native format (CAMMA-public/cholectrack20 README.md @ 1c0bc526ab9cc9650f12760620c83227a2706dc3; field names from the
public HF mirror WinterPan/FileTransfer `CholecTrack20/Training/VID31/VID31.json`; docs/curation.md §2.2):
- one JSON per video, `<Training|Validation|Testing>/VIDxx/VIDxx.json`, raw video at 25 fps, labels at 1 fps;
- `info` {..., "bbox format": "tlwh = [top_left_x, top_left_y, box_width, box_height]"} (normalized by the frame
  width/height); `annotations` {"<native 25 fps frame number>": [instance, ...]}; keys step by 25 (4326, 4351),
  so time = frame / 25 s;
- instance: `instrument`, `phase`, `operator`, `tool_bbox`, `intraoperative_track`, `intracorporeal_track`,
  `visibility_track`, flags (`visibility`, `visible`, `occluded`, `crowded`, `bleeding`, `smoke`, `blurred`,
  `undercoverage`, `reflection`, `stainedlens`), `verb`, `target`, `triplet`, `score`, `area`, `iscrowd`.

Assumed beyond those facts (the field names come from a mirror): `instrument`/`phase`/`operator` are ids mapped
through the file's `categories` table when it has one, else through TOOLS / PHASES / OPERATORS below (0-based, the
order of the README's class list and Cholec80's phases; a third-party audit reports 0 = grasper ... 6 = specimen
bag and operators 0 null, 1 MSLH, 2 ASRH, 3 MSRH); a non-numeric value is taken as the name itself. Some sampled
seconds are absent (key gaps > 25): a gap ends a phase run. Frames are the released 854x480 unless `frame_size`
says otherwise. verb/target/triplet (present in 8 videos only) are not converted. The video: `<VIDxx>.mp4` beside
the JSON where that file exists (ours: the release's video placement is not documented), as `video_path` relative
to the root given to `load`; else `video_path` stays None.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Optional

from medgrpo_ray.curation.schema import Box, ConversionReport, SourceVideo
from medgrpo_ray.curation.sources._common import as_int, frame_entries, id_table, runs_to_segments, tlwh_to_xyxy

SOURCE = "CholecTrack20"
NATIVE_FPS = 25.0
LABEL_STEP_S = 1.0  # labels at 1 fps: keys step by 25 native frames
FRAME_SIZE = (854, 480)
SPLITS = {"Training": "train", "Validation": "val", "Testing": "test"}
TOOLS = ("grasper", "bipolar", "hook", "scissors", "clipper", "irrigator", "specimen bag")
PHASES = ("Preparation", "CalotTriangleDissection", "ClippingCutting", "GallbladderDissection",
          "GallbladderPackaging", "CleaningCoagulation", "GallbladderRetraction")
OPERATORS = ("NULL", "MSLH", "ASRH", "MSRH")
EXTRA_FIELDS = ("intracorporeal_track", "visibility_track", "visibility", "visible", "occluded", "crowded",
                "bleeding", "smoke", "blurred", "undercoverage", "reflection", "stainedlens", "score")


def label_of(value: Any, table: dict[int, str], field: str) -> Optional[str]:
    """An id (int or digit string) -> its name in `table`; a non-numeric string -> itself; None/-1 -> None.
    ValueError naming the field for an id not in the table."""
    if value is None:
        return None
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        return value.strip() or None
    i = as_int(value)
    if i == -1:
        return None
    if i not in table:
        raise ValueError(f"{field}: unknown id {i}")
    return table[i]


def tables_for(data: dict) -> dict[str, dict[int, str]]:
    """The id -> name tables for instrument, phase, operator: the file's `categories` where present, else the
    module constants."""
    defaults = {"instrument": TOOLS, "phase": PHASES, "operator": OPERATORS}
    cats = data.get("categories") or {}
    tables = {}
    for field, names in defaults.items():
        native = cats.get(field) if isinstance(cats, dict) else None
        tables[field] = id_table(native) if native is not None else dict(enumerate(names))
    return tables


def parse_instance(inst: Any, tables: dict[str, dict[int, str]], frame_size: tuple[int, int],
                   ) -> tuple[Optional[Box], Optional[str]]:
    """One instance dict -> (pixel Box or None when it has no `tool_bbox`, phase name or None). ValueError naming
    the field and value for anything malformed."""
    if not isinstance(inst, dict):
        raise ValueError(f"expected an instance object, got {inst!r:.80}")
    phase = label_of(inst.get("phase"), tables["phase"], "phase")
    bbox = inst.get("tool_bbox")
    if bbox is None:
        return None, phase
    tool = label_of(inst.get("instrument"), tables["instrument"], "instrument")
    if tool is None:
        raise ValueError(f"instrument: missing or null ({inst.get('instrument')!r}) on a box")
    try:
        xyxy = tlwh_to_xyxy(bbox, frame_size)
    except ValueError as err:
        raise ValueError(f"tool_bbox: {err}") from None
    track = inst.get("intraoperative_track")
    extra = {k: inst[k] for k in EXTRA_FIELDS if k in inst}
    extra["operator"] = label_of(inst.get("operator"), tables["operator"], "operator")
    return Box(tool, *xyxy, track_id=None if track is None else str(track), extra=extra), phase


def split_of(path: Path, root: Path) -> Optional[str]:
    """train/val/test from the nearest parent directory named Training/Validation/Testing, root included."""
    for parent in path.parents:
        if parent.name in SPLITS:
            return SPLITS[parent.name]
        if parent == root:
            break
    return None


def video_beside(path: Path, root: Optional[Path]) -> Optional[str]:
    """`<stem>.mp4` next to the label file, relative to `root` (absolute without one); None when absent."""
    video = path.with_suffix(".mp4")
    if not video.is_file():
        return None
    return video.relative_to(root).as_posix() if root is not None else str(video)


def load_video_file(path: Path, report: ConversionReport, frame_size: tuple[int, int] = FRAME_SIZE,
                    split: Optional[str] = None, root: Optional[Path] = None) -> Optional[SourceVideo]:
    """One per-video JSON -> SourceVideo; None (a counted skip) if the file is unreadable."""
    try:
        data = json.loads(path.read_text())
        annotations = data["annotations"]
        if not isinstance(annotations, dict):
            raise ValueError(f"annotations: expected {{frame: [instance, ...]}}, got {type(annotations).__name__}")
        tables = tables_for(data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        report.skip("unreadable label file", f"{path}: {type(err).__name__}: {err}")
        return None
    video_id = path.stem.upper() if path.stem.lower().startswith("vid") else path.stem
    video = SourceVideo(source=SOURCE, video_id=video_id, native_fps=NATIVE_FPS, frame_size=frame_size,
                        video_path=video_beside(path, root), split=split, extra={"label_file": str(path)})
    phases: list[tuple[float, Optional[str]]] = []
    for frame, instances in frame_entries(annotations, path, report):
        t = frame / NATIVE_FPS
        frame_phase = None
        for k, inst in enumerate(instances):
            try:
                box, phase = parse_instance(inst, tables, frame_size)
            except ValueError as err:
                report.skip("malformed instance", f"{path}: frame {frame}: instance {k}: {err}")
                continue
            if box is not None:
                video.boxes.setdefault(t, []).append(box)
            if phase is not None and frame_phase is None:
                frame_phase = phase
            elif phase is not None and phase != frame_phase:
                report.skip("conflicting phase", f"{path}: frame {frame}: phase {phase!r} after {frame_phase!r} "
                            "(kept the first)")
        phases.append((t, frame_phase))
    video.segments = runs_to_segments(phases, LABEL_STEP_S, "phase")
    return video


def load(root: Path | str, report: ConversionReport, frame_size: tuple[int, int] = FRAME_SIZE,
         ) -> Iterator[SourceVideo]:
    """Every `VID*.json` (any case) under `root`, in path order; `video_path` is `<VIDxx>.mp4` beside it, relative
    to `root`, where that file exists."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"CholecTrack20: no directory at {root}")
    paths = sorted(p for p in root.rglob("*.json") if p.stem.lower().startswith("vid"))
    if not paths:
        raise FileNotFoundError(f"CholecTrack20: no VID*.json under {root}")
    for path in paths:
        video = load_video_file(path, report, frame_size, split_of(path, root), root)
        if video is not None:
            report.videos += 1
            yield video
