"""JIGSAWS -> SourceVideo: gesture segments and skill ratings of the three bench-top tasks.

Native layout (shared/reference/curation.md §2.4, every public loader agrees), under `root/<Task>/` for the tasks
Suturing, Knot_Tying, Needle_Passing:
- `video/<trial>_capture1.avi`, `video/<trial>_capture2.avi`: the two camera views, **30 Hz**;
- `transcriptions/<trial>.txt`: lines `start_frame end_frame Gxx`, 30 Hz frame indices, the end frame included;
- `meta_file_<Task>.txt`: whitespace-separated `filename skill(N/I/E) GRS s1..s6`, the six scores 1-5 in the order
  of SKILL_ASPECTS (the names MedVidBench writes; the level is the self-proclaimed one).

One SourceVideo per trial (`video_id` the trial name, e.g. "Suturing_B001"); times are frame / 30 s, a segment's
end (end_frame + 1) / 30 s. A trial is any name in the meta file, the transcriptions or the videos: one in the
meta file without a video is kept, skill only (`video_path` None, `extra["no_video"]`), since SA needs the
skill; one with neither skill nor gestures (a video only) is a counted skip. Malformed lines are counted skips
naming file and line.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Optional

from medgrpo_ray.curation.schema import ConversionReport, Segment, Skill, SourceVideo

SOURCE = "JIGSAWS"
FPS = 30.0
TASKS = ("Suturing", "Knot_Tying", "Needle_Passing")
SKILL_LEVELS = ("N", "I", "E")
# The order of the six score columns in meta_file_<Task>.txt; the same strings as data.synthetic.SKILL_ASPECTS
# (kept here so the tier-1 curation package does not import the data package; a test checks they agree).
SKILL_ASPECTS = ("Respect for tissue", "Suture/needle handling", "Time and motion", "Flow of operation",
                 "Overall performance", "Quality of final product")
# The gesture vocabulary of Gao et al. 2014, "JHU-ISI Gesture and Skill Assessment Working Set (JIGSAWS)", table of
# gesture definitions; the same strings appear in several independent public JIGSAWS loaders.
GESTURE_NAMES = {
    "G1": "Reaching for needle with right hand",
    "G2": "Positioning needle",
    "G3": "Pushing needle through tissue",
    "G4": "Transferring needle from left to right",
    "G5": "Moving to center with needle in grip",
    "G6": "Pulling suture with left hand",
    "G7": "Pulling suture with right hand",
    "G8": "Orienting needle",
    "G9": "Using right hand to help tighten suture",
    "G10": "Loosening more suture",
    "G11": "Dropping suture at end and moving to end points",
    "G12": "Reaching for needle with left hand",
    "G13": "Making C loop around right hand",
    "G14": "Reaching for suture with right hand",
    "G15": "Pulling suture with both hands",
}
_GESTURE = re.compile(r"G[1-9][0-9]*")
_CAPTURES = ("capture1", "capture2")


class LineError(ValueError):
    """One malformed native line; the message names what is wrong (the caller adds file and line)."""


def frame_to_s(frame: int) -> float:
    """A 30 Hz frame index -> seconds from the video start."""
    return frame / FPS


def parse_transcription_line(line: str) -> Optional[Segment]:
    """`start_frame end_frame Gxx` -> a gesture Segment [start/30, (end+1)/30) s; None for a blank line.
    e.g. "0 89 G1" -> Segment(0.0, 3.0, "G1")."""
    fields = line.split()
    if not fields:
        return None
    if len(fields) != 3:
        raise LineError(f"expected 'start_frame end_frame Gxx', got {len(fields)} fields {line.strip()!r}")
    try:
        start, end = int(fields[0]), int(fields[1])
    except ValueError:
        raise LineError(f"frames not integers: {fields[0]!r} {fields[1]!r}") from None
    if not 0 <= start <= end:
        raise LineError(f"frames need 0 <= start <= end, got {start} {end}")
    if not _GESTURE.fullmatch(fields[2]):
        raise LineError(f"gesture id {fields[2]!r} is not G<n>")
    return Segment(frame_to_s(start), frame_to_s(end + 1), fields[2], level="gesture")


def parse_meta_line(line: str) -> Optional[tuple[str, Skill]]:
    """`filename level GRS s1..s6` -> (trial, Skill); None for a blank line.
    e.g. "Suturing_B001 N 13 2 2 2 2 3 2" -> ("Suturing_B001", Skill("N", {"Respect for tissue": 2, ...}, 13))."""
    fields = line.split()
    if not fields:
        return None
    if len(fields) != 3 + len(SKILL_ASPECTS):
        raise LineError(f"expected {3 + len(SKILL_ASPECTS)} columns, got {len(fields)}")
    trial, level = fields[0], fields[1]
    if level not in SKILL_LEVELS:
        raise LineError(f"skill level {level!r} not one of {'/'.join(SKILL_LEVELS)}")
    try:
        grs = int(fields[2])
        scores = [int(x) for x in fields[3:]]
    except ValueError:
        raise LineError(f"GRS and scores must be integers, got {' '.join(fields[2:])!r}") from None
    for aspect, score in zip(SKILL_ASPECTS, scores):
        if not 1 <= score <= 5:
            raise LineError(f"{aspect} score {score} outside 1..5")
    return trial, Skill(level=level, scores=dict(zip(SKILL_ASPECTS, scores)), grs=grs)


def read_transcription(path: Path, report: ConversionReport, rel: str) -> list[Segment]:
    """A transcription file -> its gesture segments sorted by (start, end); a bad line is a counted skip."""
    segments = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            seg = parse_transcription_line(line)
        except LineError as err:
            report.skip("jigsaws_bad_transcription_line", f"{rel} line {n}: {err}")
            continue
        if seg is not None:
            segments.append(seg)
    return sorted(segments, key=lambda s: (s.start, s.end))


def read_meta(path: Path, report: ConversionReport, rel: str) -> dict[str, Skill]:
    """A meta file -> trial -> Skill; a bad or repeated line is a counted skip (the first line of a trial wins)."""
    out: dict[str, Skill] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            parsed = parse_meta_line(line)
        except LineError as err:
            report.skip("jigsaws_bad_meta_line", f"{rel} line {n}: {err}")
            continue
        if parsed is None:
            continue
        trial, skill = parsed
        if trial in out:
            report.skip("jigsaws_duplicate_meta_trial", f"{rel} line {n}: trial {trial!r} listed again")
            continue
        out[trial] = skill
    return out


def _videos(task_dir: Path) -> dict[str, dict[str, Path]]:
    """trial -> {"capture1"|"capture2": file} from `<Task>/video/`."""
    out: dict[str, dict[str, Path]] = {}
    video_dir = task_dir / "video"
    if not video_dir.is_dir():
        return out
    for path in sorted(video_dir.glob("*.avi")):
        for cap in _CAPTURES:
            if path.stem.endswith("_" + cap):
                out.setdefault(path.stem[: -len(cap) - 1], {})[cap] = path
    return out


def _task_videos(root: Path, task: str, report: ConversionReport) -> Iterator[SourceVideo]:
    task_dir = root / task
    meta_path = task_dir / f"meta_file_{task}.txt"
    skills = read_meta(meta_path, report, meta_path.relative_to(root).as_posix()) if meta_path.is_file() else {}
    trans_dir = task_dir / "transcriptions"
    transcriptions = {p.stem: p for p in sorted(trans_dir.glob("*.txt"))} if trans_dir.is_dir() else {}
    videos = _videos(task_dir)
    for trial in sorted(set(skills) | set(transcriptions) | set(videos)):
        segments = []
        if trial in transcriptions:
            path = transcriptions[trial]
            segments = read_transcription(path, report, path.relative_to(root).as_posix())
        skill = skills.get(trial)
        if skill is None and not segments:
            report.skip("jigsaws_trial_without_labels",
                        f"{task}/{trial}: no meta_file_{task}.txt line and no gesture in transcriptions/{trial}.txt")
            continue
        caps = {cap: p.relative_to(root).as_posix() for cap, p in videos.get(trial, {}).items()}
        extra: dict = {"task": task, "captures": caps}
        if not caps:
            extra["no_video"] = True
        if segments:
            extra["gesture_names"] = {s.label: GESTURE_NAMES[s.label] for s in segments if s.label in GESTURE_NAMES}
        yield SourceVideo(source=SOURCE, video_id=trial, native_fps=FPS,
                          video_path=caps.get("capture1") or caps.get("capture2"), segments=segments, skill=skill,
                          procedure=task.replace("_", " "), extra=extra)


def load(root: Path | str, report: ConversionReport) -> Iterator[SourceVideo]:
    """Every trial of every task folder present under `root` (a task folder that is absent is a counted skip)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"JIGSAWS root {root} is not a directory")
    found = False
    for task in TASKS:
        if not (root / task).is_dir():
            report.skip("jigsaws_task_folder_missing", f"{root / task}: no folder for task {task}")
            continue
        found = True
        for video in _task_videos(root, task, report):
            report.videos += 1
            yield video
    if not found:
        raise FileNotFoundError(f"JIGSAWS root {root} has none of the task folders {', '.join(TASKS)}")
