"""Helpers the source converters share: label runs -> segments, normalized tlwh -> pixel boxes, id -> name tables.
Pure functions, no I/O."""
from __future__ import annotations

import math
from typing import Any, Iterable, Iterator, Mapping, Optional

from medgrpo_ray.curation.schema import ConversionReport, Segment


def runs_to_segments(labels: Iterable[tuple[float, Optional[str]]], step: float, level: str = "phase",
                     ) -> list[Segment]:
    """Merge per-frame labels sampled every `step` seconds into segments.

    `labels` is (time_s, label) per annotated frame (any order). A run continues while the label stays the same on
    the next sampled frame (time gap <= step); a missing frame or a None label ends it. Each segment ends one step
    after its last frame: frames 0,1,2 at 1 fps -> [0, 3)."""
    segments: list[Segment] = []
    run: Optional[tuple[float, float, str]] = None  # (start, last frame time, label)
    for t, label in sorted(labels, key=lambda x: x[0]):
        if run is not None and label == run[2] and t - run[1] <= step * (1 + 1e-6):
            run = (run[0], t, run[2])
            continue
        if run is not None:
            segments.append(Segment(run[0], run[1] + step, run[2], level))
        run = (t, t, label) if label is not None else None
    if run is not None:
        segments.append(Segment(run[0], run[1] + step, run[2], level))
    return segments


def tlwh_to_xyxy(tlwh: Any, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """Normalized [x, y, w, h] (top-left corner, fractions of width/height) -> x1, y1, x2, y2 in pixels of
    `size` = (width, height). ValueError for a value that is not 4 finite numbers with w, h >= 0."""
    if not isinstance(tlwh, (list, tuple)) or len(tlwh) != 4:
        raise ValueError(f"expected 4 numbers [x, y, w, h], got {tlwh!r}")
    x, y, w, h = (as_float(v) for v in tlwh)
    if w < 0 or h < 0:
        raise ValueError(f"negative width/height in {list(tlwh)!r}")
    W, H = size
    return (x * W, y * H, (x + w) * W, (y + h) * H)


def as_float(value: Any) -> float:
    """A finite number from a JSON/CSV value (bool rejected); ValueError naming the value otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"not a finite number: {value!r}")
    return out


def as_int(value: Any) -> int:
    """An integer from a JSON/CSV value ("3", 3, 3.0 -> 3); ValueError for "abc", 2.5, True."""
    out = as_float(value)
    if out != int(out):
        raise ValueError(f"not an integer: {value!r}")
    return int(out)


def id_table(categories: Any) -> dict[int, str]:
    """A category table as JSON writes it -> {id: name}: {"0": "grasper", ...} or a COCO-style list
    [{"id": 0, "name": "grasper"}, ...]. ValueError on anything else."""
    if isinstance(categories, Mapping):
        return {as_int(k): str(v) for k, v in categories.items()}
    if isinstance(categories, list):
        try:
            return {as_int(c["id"]): str(c["name"]) for c in categories}
        except (KeyError, TypeError):
            raise ValueError(f"category list entry without id/name in {categories!r:.200}") from None
    raise ValueError(f"category table: expected a dict or a list of {{id, name}}, got {type(categories).__name__}")


def frame_entries(annotations: Mapping, path: Any, report: ConversionReport) -> Iterator[tuple[int, list]]:
    """(native frame index, instances) of every well-formed per-frame entry of an annotation dict; a key that is
    not a frame index >= 0, or a value that is not a list, is a counted skip naming the file and frame."""
    for key, instances in annotations.items():
        try:
            frame = as_int(key)
            if frame < 0 or not isinstance(instances, list):
                raise ValueError(f"expected a frame index >= 0 with a list of instances, got {instances!r:.80}")
        except ValueError as err:
            report.skip("malformed frame", f"{path}: frame {key!r}: {err}")
            continue
        yield frame, instances
