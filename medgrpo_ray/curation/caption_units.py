"""Caption units (DVC, VS, RC): what the two caption providers are asked, built from a SourceVideo (pure, seeded).

One `CaptionUnit` per (video, task, k), drawn by the generator of (seed, video id, task, k) (clips.rng_for):
- DVC (`dense_captioning`): a clip with the labelled segments inside it (consecutive segments of one level, at most
  `DVC_MAX_SEGMENTS`, each covering at least two frame intervals of the clip's rate inside the clip, so each holds
  at least two sampled frames (`dvc_min_segment`); a segment overlapping an earlier one is left out so the answer's
  spans do not overlap);
- VS (`video_summary`): a clip of `min_len`..`max_len` seconds;
- RC (`region_caption`): one box of one track at time t0, described over [t0, t1].

Each unit carries the facts its caption must be grounded in (`required`: the segment's / clip's labels, the RC
track's tool, verb and target of the most frequent triplet where the source has triplets), the terms the clip's
annotations support (`supported`: every tool, verb and target seen in the clip, the labels, the source's ambient
anatomy), the source's closed vocabulary (`vocabulary`: instrument and anatomy terms from the video's own boxes and
triplets plus `caption_text.SOURCE_VOCABULARY`) and the structured input: one text line per sampled frame (time in
clip seconds and normalized 0-1 as the published pipeline figure shows, phase, tools with boxes, actions, triplets),
the task rules and a strict JSON output spec. The words (vocabulary, synonyms, rules, question pools,
`PROMPT_VERSION`) are in caption_text.py.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from medgrpo_ray.curation.caption_text import (NULL_LABELS, OPERATOR_NAMES, OUTPUT_SPECS, PROMPT_VERSION,
                                               SOURCE_VOCABULARY, TASK_RULES, label_name, question)
from medgrpo_ray.curation.clips import Clip, rng_for
from medgrpo_ray.curation.schema import Segment, SourceVideo
from medgrpo_ray.curation.tasks import TaskSettings, Unanswerable, _clip, _duration, _levelled, _video_fields

__all__ = ["CAPTION_TASKS", "PROMPT_VERSION", "CaptionUnit", "Fact", "UnitSegment", "build_unit", "question"]

CAPTION_TASKS = ("dense_captioning", "video_summary", "region_caption")
DVC_MAX_SEGMENTS = 8
DVC_MIN_FRAME_INTERVALS = 2  # a DVC segment spans at least this many frame intervals of the clip's rate


@dataclass(frozen=True)
class Fact:
    """One fact a caption must mention: kind (label, instrument, verb, target) and the term; `segment` is the DVC
    segment id it belongs to (None for the whole unit)."""

    kind: str
    term: str
    segment: Optional[int] = None

    def describe(self) -> str:
        return f"{self.kind} '{self.term}'" + (f" (segment {self.segment})" if self.segment is not None else "")


@dataclass(frozen=True)
class UnitSegment:
    id: int
    start: float   # clip seconds, one decimal
    end: float
    label: str     # the source label
    name: str      # its readable lower-case form (the DVC line's label)


@dataclass
class CaptionUnit:
    task: str
    source: str
    video_id: str
    unit: str                       # "<source>/<video>/<task>/<k>"
    seed: int
    clip: Clip
    video: object                   # `video` field of the records (file or frame list)
    metadata: dict
    procedure: Optional[str]
    segments: list[UnitSegment] = field(default_factory=list)   # DVC
    required: list[Fact] = field(default_factory=list)
    supported: set[str] = field(default_factory=set)            # terms (lower-case) the annotations support
    vocabulary: set[str] = field(default_factory=set)           # the closed vocabulary (lower-case)
    region: Optional[dict] = None                                # RC: track_id, object, t0, t1 (clip s), box
    frame_lines: list[str] = field(default_factory=list)
    frame_times: list[float] = field(default_factory=list)      # clip seconds of the sampled frames
    frame_facts: list[dict] = field(default_factory=list)       # per sampled frame: what caption_frames draws
    frame_size: Optional[tuple[int, int]] = None                # (width, height) of the boxes' pixel space
    image_frames: list[int] = field(default_factory=list)       # frames sent as images (caption_frames.attach)
    images: list[bytes] = field(default_factory=list)           # their JPEG bytes (not part of the unit's key)

    def input_text(self, missing: Optional[list[str]] = None) -> str:
        """The structured text both providers get (plus, on a regeneration, the facts the last captions missed)."""
        parts = [f"Task: {self.task}. Source: {self.source}. Procedure: {self.procedure or 'surgical procedure'}.",
                 f"Clip: {self.clip.length:.1f} s sampled at {self.clip.fps:g} fps ({len(self.frame_lines)} frames).",
                 "Frames:", *self.frame_lines]
        if self.image_frames:
            parts.append(f"Images: frames {', '.join(map(str, self.image_frames))} follow their lines above, with "
                         "the tools' boxes and names and the time and phase drawn on them.")
        if self.segments:
            parts.append("Segments to caption:")
            parts += [f"  id {s.id}: {s.start:.1f}-{s.end:.1f} s: {s.name}" for s in self.segments]
        if self.region:
            r = self.region
            parts.append(f"Target object: the {r['object']} (track {r['track_id']}) in box {r['box']} at "
                         f"{r['t0']:.1f} s, described over {r['t0']:.1f}-{r['t1']:.1f} s.")
        parts.append("Required facts: " + "; ".join(f.describe() for f in self.required))
        parts.append("Allowed vocabulary: " + ", ".join(sorted(self.vocabulary)))
        parts.append("Rules:")
        parts += [f"- {r}" for r in TASK_RULES]
        if missing:
            parts.append("Your previous caption omitted or contradicted: " + "; ".join(missing)
                         + ". Include these facts.")
        parts.append(OUTPUT_SPECS[self.task])
        return "\n".join(parts)


# --- helpers ---------------------------------------------------------------------------------------------------
def _box_list(b) -> list[float]:
    return [round(c, 1) for c in b.xyxy]


def _near(keys: list[float], t: float, tol: float) -> Optional[float]:
    if not keys:
        return None
    k = min(keys, key=lambda x: (abs(x - t), x))
    return k if abs(k - t) <= tol else None


def _is_null(term: str) -> bool:
    return term.strip().lower() in NULL_LABELS


def _top_triplet(v: SourceVideo, start: float, end: float, instrument: Optional[str] = None):
    c: Counter = Counter()
    for t, xs in v.triplets.items():
        if start <= t < end:
            for x in xs:
                if not _is_null(x.verb) and (instrument is None or x.instrument == instrument):
                    c[(x.instrument, x.verb, x.target)] += 1
    return min(c, key=lambda k: (-c[k], k)) if c else None


def _triplet_facts(trip, segment: Optional[int], with_instrument: bool = True) -> list[Fact]:
    if trip is None:
        return []
    inst, verb, target = trip
    out = [Fact("instrument", inst.lower(), segment)] if with_instrument and not _is_null(inst) else []
    out.append(Fact("verb", verb.lower(), segment))
    if not _is_null(target):
        out.append(Fact("target", target.lower(), segment))
    return out


def _vocabulary(v: SourceVideo) -> tuple[set[str], set[str]]:
    table = SOURCE_VOCABULARY.get(v.source, {})
    vocab = {t.lower() for k in ("instrument", "anatomy") for t in table.get(k, ())}
    for bs in v.boxes.values():
        vocab |= {b.label.lower() for b in bs if not _is_null(b.label)}
    for xs in v.triplets.values():
        for x in xs:
            vocab |= {w.lower() for w in (x.instrument, x.target) if not _is_null(w)}
    return vocab, {t.lower() for t in table.get("ambient", ())}


def _supported(v: SourceVideo, clip: Clip, ambient: set[str]) -> set[str]:
    out = set(ambient)
    for t, bs in v.boxes.items():
        if clip.start <= t < clip.end:
            out |= {b.label.lower() for b in bs}
    for t, xs in v.triplets.items():
        if clip.start <= t < clip.end:
            for x in xs:
                out |= {w.lower() for w in (x.instrument, x.verb, x.target) if not _is_null(w)}
    return out


def _frame_lines(v: SourceVideo, clip: Clip, target_track: Optional[str] = None):
    """(text line, clip time, drawn facts) per sampled frame: facts {t, norm, phase, actions, boxes: [[label,
    track, x1, y1, x2, y2, is_target]]} in source pixels."""
    box_keys, trip_keys = sorted(v.boxes), sorted(v.triplets)
    tol = 0.5 / clip.fps
    lines, times, facts = [], [], []
    for i, t in enumerate(clip.times()):
        rel = t - clip.start
        phases = [label_name(s.label) for s in v.segments if s.level == "phase" and s.start <= t < s.end]
        actions = [label_name(s.label) for s in v.segments if s.level != "phase" and s.start <= t < s.end]
        fields = [f"Phase: {', '.join(phases) or 'none'}"]
        kb = _near(box_keys, t, tol)
        tools, drawn = [], []
        for b in v.boxes.get(kb, []) if kb is not None else []:
            drawn.append([label_name(b.label), b.track_id or "", *_box_list(b),
                          target_track is not None and b.track_id == target_track])
            who = OPERATOR_NAMES.get(str(b.extra.get("operator")), "")
            mark = " <target>" if target_track is not None and b.track_id == target_track else ""
            tools.append(f"{b.label} {_box_list(b)}" + (f" track {b.track_id}" if b.track_id else "")
                         + (f" held by {who}" if who else "") + mark)
        fields.append(f"Tools: {', '.join(tools) or 'none'}")
        fields.append(f"Actions: {', '.join(actions) or 'none'}")
        kt = _near(trip_keys, t, tol)
        if kt is not None:
            trips = [f"{x.instrument} {x.verb} {x.target}" for x in v.triplets[kt] if not _is_null(x.verb)]
            if trips:
                fields.append(f"Triplets: {'; '.join(trips)}")
        lines.append(f"<Frame {i}> t={rel:.1f} s ({rel / clip.length:.2f}): " + "; ".join(fields))
        times.append(round(rel, 3))
        facts.append({"t": round(rel, 3), "norm": round(rel / clip.length, 3), "phase": ", ".join(phases),
                      "actions": ", ".join(actions), "boxes": drawn})
    return lines, times, facts


def _new_unit(v: SourceVideo, task: str, k: int, clip: Clip, s: TaskSettings, target_track=None) -> CaptionUnit:
    video, meta = _video_fields(v, clip)
    vocab, ambient = _vocabulary(v)
    lines, times, facts = _frame_lines(v, clip, target_track)
    return CaptionUnit(task, v.source, v.video_id, f"{v.source}/{v.video_id}/{task}/{k}", s.seed, clip, video, meta,
                       v.procedure, supported=_supported(v, clip, ambient), vocabulary=vocab, frame_lines=lines,
                       frame_times=times, frame_facts=facts,
                       frame_size=tuple(v.frame_size) if v.frame_size else None)


def dvc_min_segment(fps: float) -> float:
    """Shortest DVC segment (seconds inside the clip) at sampling rate `fps`: DVC_MIN_FRAME_INTERVALS frame
    intervals, so it holds at least that many sampled frames (0.5 fps: 4 s; 1 fps: 2 s; 2 fps: 1 s)."""
    return DVC_MIN_FRAME_INTERVALS / float(fps)


# --- builders --------------------------------------------------------------------------------------------------
def build_dvc_unit(v: SourceVideo, rng: np.random.Generator, s: TaskSettings, k: int) -> CaptionUnit:
    from medgrpo_ray.curation.clips import window_around

    shortest = dvc_min_segment(max(float(r) for r, w in s.fps_prior.items() if w > 0))  # at the fastest rate
    segs = [x for x in _levelled(v, ("action", "step", "gesture", "motion", "phase")) if x.end - x.start >= shortest
            and not _is_null(x.label)]
    if not segs:
        raise Unanswerable(f"no labelled segment of at least {shortest:g} s")
    j = int(rng.integers(len(segs)))
    run: list[Segment] = [segs[j]]
    for x in segs[j + 1:j + DVC_MAX_SEGMENTS]:
        if x.end - run[0].start > s.max_len:
            break
        run.append(x)
    win = window_around(rng, run[0].start, max(x.end for x in run), _duration(v), s.min_len, s.max_len)
    if win is None:
        raise Unanswerable(f"segment longer than {s.max_len} s")
    clip = _clip(v, rng, *win, s)
    unit = _new_unit(v, "dense_captioning", k, clip, s)
    last_end, need = -1.0, dvc_min_segment(clip.fps)
    for x in segs:
        a, b = round(max(x.start, clip.start) - clip.start, 1), round(min(x.end, clip.end) - clip.start, 1)
        if b - a < need - 1e-9 or a < last_end or len(unit.segments) >= DVC_MAX_SEGMENTS:
            continue
        seg = UnitSegment(len(unit.segments), a, b, x.label, label_name(x.label))
        unit.segments.append(seg)
        last_end = b
        unit.required.append(Fact("label", seg.name, seg.id))
        unit.required += _triplet_facts(_top_triplet(v, x.start, x.end), seg.id)
    if not unit.segments:
        raise Unanswerable(f"no segment of at least {need:g} s ({DVC_MIN_FRAME_INTERVALS} frame intervals at "
                           f"{clip.fps:g} fps) inside the clip")
    unit.supported |= {sg.name for sg in unit.segments}
    return unit


def build_vs_unit(v: SourceVideo, rng: np.random.Generator, s: TaskSettings, k: int) -> CaptionUnit:
    duration = _duration(v)
    if duration < s.min_len:
        raise Unanswerable(f"video shorter than {s.min_len} s")
    length = float(rng.integers(int(math.ceil(s.min_len)), int(min(s.max_len, math.floor(duration))) + 1))
    start = float(rng.integers(0, int(math.floor(duration - length)) + 1))
    clip = _clip(v, rng, start, start + length, s)
    cover: Counter = Counter()
    for x in v.segments:
        if not _is_null(x.label):
            cover[label_name(x.label)] += max(0.0, min(x.end, clip.end) - max(x.start, clip.start))
    labels = [lab for lab in sorted(cover, key=lambda n: (-cover[n], n)) if cover[lab] >= 1.0][:3]
    trip = _top_triplet(v, clip.start, clip.end)
    if not labels and trip is None:
        raise Unanswerable("no label or triplet inside the clip to ground a summary")
    unit = _new_unit(v, "video_summary", k, clip, s)
    unit.required = [Fact("label", lab) for lab in labels] + _triplet_facts(trip, None)
    unit.supported |= set(labels)
    return unit


def build_rc_unit(v: SourceVideo, rng: np.random.Generator, s: TaskSettings, k: int) -> CaptionUnit:
    tracks = {key: pts for key, pts in v.tracks().items() if not _is_null(pts[0][1].label)}
    if not tracks:
        raise Unanswerable("no box with a track id")
    key = sorted(tracks)[int(rng.integers(len(tracks)))]
    pts = tracks[key]
    t0, box = pts[int(rng.integers(len(pts)))]
    start = float(math.floor(t0))
    seen_until = max(t for t, _ in pts if t >= t0)
    length = float(rng.integers(int(math.ceil(s.min_len)), int(s.max_len) + 1))
    end = min(max(start + length, math.ceil(seen_until + 1e-9)), start + s.max_len, math.ceil(_duration(v)))
    if end - start < 1.0:
        raise Unanswerable("track seen too close to the end of the video")
    clip = _clip(v, rng, start, float(end), s)
    unit = _new_unit(v, "region_caption", k, clip, s, target_track=key)
    obj = box.label.lower()
    unit.region = {"track_id": key, "object": obj, "t0": round(t0 - start, 1), "t1": round(clip.end - start, 1),
                   "box": [round(c, 2) for c in box.xyxy]}
    unit.required = [Fact("instrument", obj)] + _triplet_facts(_top_triplet(v, clip.start, clip.end, box.label),
                                                                None, with_instrument=False)
    unit.supported.add(obj)
    return unit


UNIT_BUILDERS = {"dense_captioning": build_dvc_unit, "video_summary": build_vs_unit, "region_caption": build_rc_unit}


def build_unit(task: str, v: SourceVideo, s: TaskSettings, k: int = 0) -> CaptionUnit:
    """The k-th caption unit of `task` from `v` (seeded by (seed, video, task, k)); raises Unanswerable."""
    if task not in UNIT_BUILDERS:
        raise ValueError(f"no caption unit builder for task {task!r}; known: {sorted(UNIT_BUILDERS)}")
    return UNIT_BUILDERS[task](v, rng_for(s.seed, v.video_id, task, k), s, k)
