"""Cholec80-CVS -> SourceVideo (one per Cholec80 video, with its CVS intervals).

Native format (ManuelRios18/CHOLEC80-CVS-PUBLIC data_preprocessing/annotations_2_labels.py @
d88ddef75b25b1330f6ccdfcda6d6d01156e35f8; docs/curation.md §2.3): one workbook, `surgeons_annotations.xlsx`, one row
per interval with `video`, `initial_minute`, `initial_second`, `final_minute`, `final_second` and the three criteria
`two_structures`, `cystic_plate`, `hepatocystic_triangle`, each scored 0-2 (a third-party audit adds `Total` and
`critical_view`, and finds 3 rows with final < initial). Times are minutes:seconds of the Cholec80 video (25 fps):
time = minute * 60 + second.

openpyxl is not a dependency: the workbook must be exported to CSV (same header row) first. Assumed beyond the
documented facts: `video` holds the Cholec80 number (1, "1", "1.0") or an id like "video01", written as the
Cholec80 convention `video01`; headers match case- and space-insensitively; fully blank rows (an export's tail)
are ignored; Total/critical_view are not checked. The video: with a directory as root, `videos/<videoNN>.mp4` under
it (Cholec80's own layout) where that file exists, as `video_path` relative to the root; else None.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Iterator

from medgrpo_ray.curation.schema import ConversionReport, CvsInterval, SourceVideo
from medgrpo_ray.curation.sources._common import as_float, as_int

SOURCE = "Cholec80-CVS"
NATIVE_FPS = 25.0
TIME_COLUMNS = ("initial_minute", "initial_second", "final_minute", "final_second")
SCORE_COLUMNS = ("two_structures", "cystic_plate", "hepatocystic_triangle")
REQUIRED = ("video",) + TIME_COLUMNS + SCORE_COLUMNS


class RowError(ValueError):
    """A row that cannot become an interval; `reason` is the report's skip reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def video_id(value: str) -> str:
    """The Cholec80 id of a `video` cell: 1, "1.0", "video1", "Video01" -> "video01". ValueError otherwise."""
    text = str(value).strip()
    m = re.fullmatch(r"(?:video)?(\d+)(?:\.0+)?", text, flags=re.IGNORECASE)
    if not m:
        raise ValueError(f"video: not a Cholec80 video number or id: {value!r}")
    return f"video{int(m.group(1)):02d}"


def parse_row(row: dict[str, str]) -> tuple[str, CvsInterval]:
    """One CSV row (lower-case headers) -> (video id, interval). RowError with a skip reason otherwise:
    "1", "5", "2", "10" as initial/final minute/second -> 65.0 .. 130.0 s."""
    try:
        vid = video_id(row.get("video") or "")
        m0, s0, m1, s1 = (as_float(row.get(c)) for c in TIME_COLUMNS)
    except ValueError as err:
        raise RowError("non-numeric field", str(err)) from None
    start, end = m0 * 60 + s0, m1 * 60 + s1
    if start < 0:
        raise RowError("negative time", f"initial time {m0:g}:{s0:g} is negative")
    if end < start:
        raise RowError("final before initial", f"final {m1:g}:{s1:g} ({end:g} s) before initial {m0:g}:{s0:g} "
                       f"({start:g} s)")
    scores = []
    for c in SCORE_COLUMNS:
        try:
            score = as_int(row.get(c))
        except ValueError as err:
            raise RowError("non-numeric field", f"{c}: {err}") from None
        if not 0 <= score <= 2:
            raise RowError("score out of range", f"{c}: {score} not in 0..2")
        scores.append(score)
    return vid, CvsInterval(start, end, *scores)


def read_csv(path: Path, report: ConversionReport) -> dict[str, list[CvsInterval]]:
    """One exported CSV -> {video id: intervals}; bad rows are counted skips naming the file, row and value."""
    out: dict[str, list[CvsInterval]] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = {(h or "").strip().lower(): h for h in reader.fieldnames or []}
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header is {reader.fieldnames}")
        for n, raw in enumerate(reader, start=2):  # line 1 is the header
            row = {c: (raw.get(h) or "").strip() for c, h in header.items()}
            if not any(row.values()):
                continue
            try:
                vid, interval = parse_row(row)
            except RowError as err:
                report.skip(err.reason, f"{path}: row {n}: {err}")
                continue
            out.setdefault(vid, []).append(interval)
    return out


def find_csvs(root: Path) -> list[Path]:
    """The CSV export(s) at `root` (a file or a directory searched recursively). FileNotFoundError saying to
    export the workbook when only an .xlsx is there."""
    if root.is_file():
        paths = [root]
    elif root.is_dir():
        paths = sorted(root.rglob("*.csv"))
    else:
        raise FileNotFoundError(f"Cholec80-CVS: no file or directory at {root}")
    if paths and all(p.suffix.lower() == ".csv" for p in paths):
        return paths
    workbooks = [root] if root.is_file() else sorted(root.rglob("*.xlsx"))
    if workbooks:
        raise FileNotFoundError(f"Cholec80-CVS: {workbooks[0]} is an Excel workbook; openpyxl is not a dependency: "
                                "export its sheet to CSV (same header row) next to it")
    raise FileNotFoundError(f"Cholec80-CVS: no *.csv under {root}")


def load(root: Path | str, report: ConversionReport) -> Iterator[SourceVideo]:
    """One SourceVideo per video over every CSV found, in video order, with sorted intervals; `video_path` is
    `videos/<videoNN>.mp4` where a directory root holds that file."""
    root = Path(root)
    by_video: dict[str, list[CvsInterval]] = {}
    sources: dict[str, set[str]] = {}
    for path in find_csvs(root):
        for vid, intervals in read_csv(path, report).items():
            by_video.setdefault(vid, []).extend(intervals)
            sources.setdefault(vid, set()).add(str(path))
    for vid in sorted(by_video):
        cvs = sorted(by_video[vid], key=lambda c: (c.start, c.end))
        rel = f"videos/{vid}.mp4"
        report.videos += 1
        yield SourceVideo(source=SOURCE, video_id=vid, native_fps=NATIVE_FPS, cvs=cvs,
                          video_path=rel if root.is_dir() and (root / rel).is_file() else None,
                          extra={"annotation_files": sorted(sources[vid])})
