"""NurViD -> SourceVideo: nursing procedure videos with their action-step segments.

Native format (shared/reference/curation.md §2.5; minghu0830/NurViD-benchmark @ 9375809e): one JSON,
`root/annotations/NurViD_annotations.json`, `{youtube_id: {"operationID": int, "annotations": [{"actionID": int,
"segment": [start_s, end_s]}, ...], "duration": s, "resolution": "WxH", "fps": int, "subset": ..., "url": ...}}`.
Times are **seconds**; segments can repeat an action, are not sorted and may overlap. In the published file
`duration` is whole seconds and `fps` an integer (29 for 29.97 video), and some segments end up to a second past
`duration` (e.g. duration 9, segment [0.33, 9.53]) [I: read from the file].

Names live in `annotations/Procedure&Action_ID.xlsx`; openpyxl is not a dependency, so the converter reads a CSV
export of its two tables (our layout, UTF-8, a header row, columns beyond these ignored):
- `annotations/procedures.csv`: `id,name` (operationID -> procedure name);
- `annotations/actions.csv`: `id,name` (actionID -> action name; the ids are global: one action id, e.g. 4,
  occurs under several operationIDs in the JSON).
With the .xlsx present and a CSV missing, `load` stops with an error saying what to export. With neither, names
fall back to "procedure <id>" / "action <id>", a counted warning.

Decisions (ours): segments sorted by (start, end), overlaps kept (they are real); a segment with end <= start,
start < 0 or start >= duration is a counted skip; an end past duration by at most END_SLACK_S (the whole-second
rounding of `duration`) is clamped to duration (counted); further past, a counted skip. `subset` training /
validation / testing -> train / val / test (others kept, null -> None). Segments have level "action" (NurViD's
action steps); their action ids are in `extra["action_ids"]`, in segment order.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator, Optional

from medgrpo_ray.curation.schema import ConversionReport, Segment, SourceVideo

SOURCE = "NurViD"
ANNOTATIONS = "annotations/NurViD_annotations.json"
PROCEDURES_CSV = "annotations/procedures.csv"
ACTIONS_CSV = "annotations/actions.csv"
XLSX = "annotations/Procedure&Action_ID.xlsx"
END_SLACK_S = 1.0
_SPLITS = {"training": "train", "train": "train", "validation": "val", "val": "val", "testing": "test",
           "test": "test"}


class EntryError(ValueError):
    """One malformed native entry; the message names the field and value (the caller adds the video id)."""


def parse_resolution(value: Any) -> tuple[int, int]:
    """"854x480" -> (854, 480), width first."""
    parts = str(value).lower().split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise EntryError(f"resolution {value!r} is not 'WxH'") from None
    if w <= 0 or h <= 0:
        raise EntryError(f"resolution {value!r} is not positive")
    return w, h


def normalize_split(subset: Any) -> Optional[str]:
    """NurViD's `subset` -> train / val / test (an unknown string kept as is, null -> None)."""
    if subset is None or subset == "":
        return None
    return _SPLITS.get(str(subset).strip().lower(), str(subset))


def parse_segment(entry: Any, duration: Optional[float]) -> tuple[int, float, float, bool]:
    """One `{"actionID", "segment": [s, e]}` -> (action id, start, end, clamped); raises EntryError when unusable.
    e.g. ({"actionID": 4, "segment": [3.0, 7.5]}, 60) -> (4, 3.0, 7.5, False); [30, 25] -> error (end <= start)."""
    if not isinstance(entry, dict):
        raise EntryError(f"annotation {entry!r} is not an object")
    action = entry.get("actionID")
    if isinstance(action, bool) or not isinstance(action, int):
        raise EntryError(f"actionID {action!r} is not an integer")
    seg = entry.get("segment")
    if (not isinstance(seg, (list, tuple)) or len(seg) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in seg)):
        raise EntryError(f"segment {seg!r} is not [start_s, end_s]")
    start, end = float(seg[0]), float(seg[1])
    if not end > start:
        raise EntryError(f"segment {list(seg)} has end <= start")
    if start < 0:
        raise EntryError(f"segment {list(seg)} starts before 0")
    clamped = False
    if duration is not None:
        if start >= duration:
            raise EntryError(f"segment {list(seg)} starts at or after duration {duration}")
        if end > duration + END_SLACK_S:
            raise EntryError(f"segment {list(seg)} ends more than {END_SLACK_S} s past duration {duration}")
        if end > duration:
            end, clamped = duration, True
    return action, start, end, clamped


def read_names(path: Path, report: ConversionReport, rel: str) -> dict[int, str]:
    """A names CSV (`id,name` header, more columns ignored) -> id -> name; a bad row is a counted skip."""
    out: dict[int, str] = {}
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        fields = [c.strip().lower() for c in reader.fieldnames or []]
        if "id" not in fields or "name" not in fields:
            raise ValueError(f"{rel}: header {reader.fieldnames!r} lacks the columns 'id' and 'name'")
        reader.fieldnames = fields
        for row in reader:
            line = reader.line_num
            try:
                key = int(str(row.get("id") or "").strip())
            except ValueError:
                report.skip("nurvid_bad_name_row", f"{rel} line {line}: id {row.get('id')!r} is not an integer")
                continue
            name = str(row.get("name") or "").strip()
            if not name:
                report.skip("nurvid_bad_name_row", f"{rel} line {line}: id {key} has an empty name")
                continue
            if key in out:
                report.skip("nurvid_duplicate_name_id", f"{rel} line {line}: id {key} listed again")
                continue
            out[key] = name
    return out


def _names(root: Path, report: ConversionReport) -> tuple[dict[int, str], dict[int, str]]:
    tables = []
    for rel in (PROCEDURES_CSV, ACTIONS_CSV):
        path = root / rel
        if path.is_file():
            tables.append(read_names(path, report, rel))
        elif (root / XLSX).is_file():
            raise FileNotFoundError(
                f"{root / rel} missing: openpyxl is not a dependency, so export the sheets of {root / XLSX} to "
                f"{PROCEDURES_CSV} (columns id,name: operationID -> procedure) and {ACTIONS_CSV} "
                f"(columns id,name: actionID -> action), UTF-8 with a header row")
        else:
            report.skip("nurvid_names_missing", f"{rel} absent (and no {XLSX}): ids named '<kind> <id>'")
            tables.append({})
    return tables[0], tables[1]


def _name(table: dict[int, str], key: int, kind: str, vid: str, report: ConversionReport) -> str:
    if key in table:
        return table[key]
    if table:  # a table was read but lacks this id (an absent table is counted once, in _names)
        report.skip(f"nurvid_unknown_{kind}_id", f"{vid}: {kind} id {key} not in the {kind} names")
    return f"{kind} {key}"


def convert_entry(vid: str, entry: Any, procedures: dict[int, str], actions: dict[int, str],
                  report: ConversionReport, video_path: Optional[str] = None) -> Optional[SourceVideo]:
    """One JSON entry -> SourceVideo, or None (a counted skip) when the entry itself is unusable."""
    where = f"{ANNOTATIONS} [{vid!r}]"
    if not isinstance(entry, dict):
        report.skip("nurvid_bad_video_entry", f"{where}: {type(entry).__name__}, not an object")
        return None
    op = entry.get("operationID")
    if isinstance(op, bool) or not isinstance(op, int):
        report.skip("nurvid_bad_video_entry", f"{where}.operationID: {op!r} is not an integer")
        return None
    fps = entry.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0:
        report.skip("nurvid_bad_video_entry", f"{where}.fps: {fps!r} is not a positive number")
        return None
    duration = entry.get("duration")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                 or duration <= 0):
        report.skip("nurvid_bad_duration", f"{where}.duration: {duration!r} is not a positive number; not checked")
        duration = None
    frame_size = None
    if entry.get("resolution") is not None:
        try:
            frame_size = parse_resolution(entry["resolution"])
        except EntryError as err:
            report.skip("nurvid_bad_resolution", f"{where}.resolution: {err}")
    raw = entry.get("annotations")
    if not isinstance(raw, list):
        report.skip("nurvid_bad_video_entry", f"{where}.annotations: {raw!r} is not a list")
        return None
    kept = []
    for i, ann in enumerate(raw):
        try:
            action, start, end, clamped = parse_segment(ann, None if duration is None else float(duration))
        except EntryError as err:
            report.skip("nurvid_bad_segment", f"{where}.annotations[{i}]: {err}")
            continue
        if clamped:
            report.skip("nurvid_segment_end_clamped", f"{where}.annotations[{i}]: end clamped to {duration}")
        kept.append((start, end, action))
    kept.sort()
    segments = [Segment(s, e, _name(actions, a, "action", vid, report), level="action") for s, e, a in kept]
    extra = {"operation_id": op, "action_ids": [a for _, _, a in kept], "url": entry.get("url")}
    return SourceVideo(source=SOURCE, video_id=vid, native_fps=float(fps), frame_size=frame_size,
                       duration_s=None if duration is None else float(duration), video_path=video_path,
                       segments=segments, procedure=_name(procedures, op, "procedure", vid, report),
                       split=normalize_split(entry.get("subset")), extra=extra)


def load(root: Path | str, report: ConversionReport) -> Iterator[SourceVideo]:
    """Every video of `root/annotations/NurViD_annotations.json`, in id order; `video_path` is
    `videos/<youtube_id>.mp4` where that file exists."""
    root = Path(root)
    path = root / ANNOTATIONS
    if not path.is_file():
        raise FileNotFoundError(f"NurViD annotations not found: {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object youtube_id -> entry, got {type(data).__name__}")
    procedures, actions = _names(root, report)
    for vid in sorted(data):
        rel = f"videos/{vid}.mp4"
        video = convert_entry(vid, data[vid], procedures, actions, report,
                              video_path=rel if (root / rel).is_file() else None)
        if video is not None:
            report.videos += 1
            yield video
