"""The template tasks (TAG, STG, NAP, SA, CVS) from a SourceVideo: a clip that makes the question answerable, a
question from the template pools, and the answer in exactly the strings this project's evaluator parses.

Each builder returns a record dict in the published format (conversations, video, metadata, qa_type, data_source,
struc_info) plus `curation` provenance (template picks and version, seed, unit, clip), or raises `Unanswerable`
with the reason (no segment with a different next step, a track with fewer than two boxes, ...): the caller counts
it. Every record is then scored by the evaluator against itself (curation/selfcheck.py) before it is kept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import numpy as np

from medgrpo_ray.curation.clips import (DEFAULT_FPS_PRIOR, DEFAULT_FRAME_CAP, Clip, choose_fps, fps_text,
                                        window_around, window_ending_in)
from medgrpo_ray.curation.schema import SourceVideo
from medgrpo_ray.curation.templates import render
from medgrpo_ray.medvidbench.nap_classes import FIXED, NURVID_PROCEDURES

SKILL_ASPECTS = ("Respect for tissue", "Suture/needle handling", "Time and motion", "Flow of operation",
                 "Overall performance", "Quality of final product")
STG_MAX_BOXES = 6


class Unanswerable(ValueError):
    """This video cannot give a record of this task (the reason is counted)."""


@dataclass(frozen=True)
class TaskSettings:
    seed: int = 0
    min_len: float = 8.0              # seconds
    max_len: float = 120.0
    frame_cap: int = DEFAULT_FRAME_CAP
    fps_prior: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FPS_PRIOR))


def _duration(v: SourceVideo) -> float:
    ends = [s.end for s in v.segments] + [c.end for c in v.cvs] + [t + 1.0 / v.native_fps for t in v.boxes]
    d = v.duration_s or (max(ends) if ends else 0.0)
    if d <= 0:
        raise Unanswerable("no duration: the source gives neither a duration nor any timed label")
    return float(d)


def _clip(v: SourceVideo, rng: np.random.Generator, start: float, end: float, s: TaskSettings) -> Clip:
    max_fps = v.native_fps if not v.video_path and v.frame_paths else None  # frame dumps: no faster than stored
    fps = choose_fps(rng, end - start, s.fps_prior, s.frame_cap)
    if max_fps and fps > max_fps:
        fps = float(max_fps)
    return Clip(float(start), float(end), fps)


def _video_fields(v: SourceVideo, clip: Clip) -> tuple[object, dict]:
    """(`video`, metadata) in the published keys: a video file with start/end times, or the JPEG/PNG frame list."""
    meta = {"fps": fps_text(clip.fps), "video_id": v.video_id,
            "input_video_start_frame": str(int(round(clip.start * v.native_fps))),
            "input_video_end_frame": str(int(round(clip.end * v.native_fps)))}
    if v.frame_size:
        meta["frame_size"] = list(v.frame_size)
    if v.video_path:
        meta.update(start_time=clip.start, end_time=clip.end)
        return v.video_path, meta
    if v.frame_paths:
        keys = sorted(v.frame_paths)
        frames = []
        for idx in clip.native_frames(v.native_fps):
            nearest = min(keys, key=lambda k: (abs(k - idx), k))
            frames.append(v.frame_paths[nearest])
        return frames, meta
    raise Unanswerable("no video file and no frames")


def _record(v: SourceVideo, task: str, clip: Clip, question: str, picks: dict, answer: str, struc_info: list,
            s: TaskSettings, unit: str) -> dict:
    video, meta = _video_fields(v, clip)
    return {"conversations": [{"from": "human", "value": "<video>\n" + question}, {"from": "gpt", "value": answer}],
            "video": video, "metadata": meta, "qa_type": task, "data_source": v.source, "struc_info": struc_info,
            "curation": {**picks, "seed": s.seed, "unit": unit, "clip": [clip.start, clip.end]}}


def _levelled(v: SourceVideo, levels: tuple[str, ...]) -> list:
    for level in levels:
        segs = sorted((x for x in v.segments if x.level == level), key=lambda x: (x.start, x.end))
        if segs:
            return segs
    return []


def build_tal(v: SourceVideo, rng: np.random.Generator, s: TaskSettings, unit: str) -> dict:
    segs = [x for x in _levelled(v, ("action", "step", "gesture", "motion", "phase")) if x.end - x.start >= 1.0]
    if not segs:
        raise Unanswerable("no segment of at least 1 s")
    target = segs[int(rng.integers(len(segs)))]
    win = window_around(rng, target.start, target.end, _duration(v), s.min_len, s.max_len)
    if win is None:
        raise Unanswerable(f"segment longer than {s.max_len} s")
    clip = _clip(v, rng, *win, s)
    spans = [(round(max(x.start, clip.start) - clip.start, 1), round(min(x.end, clip.end) - clip.start, 1))
             for x in segs if x.label == target.label and min(x.end, clip.end) > max(x.start, clip.start)]
    actions = sorted({x.label for x in segs})
    question, picks = render("tal", v.source, rng, procedure=v.procedure or "surgical", actions=", ".join(actions),
                             action=target.label)
    answer = ", ".join(f"{a:.1f}-{b:.1f}" for a, b in spans) + " seconds."
    info = [{"procedure": v.procedure, "action_list": actions, "action": target.label,
             "spans": [{"start": a, "end": b} for a, b in spans]}]
    return _record(v, "tal", clip, question, picks, answer, info, s, unit)


def _num(x: float) -> str:
    return f"{x:g}"


def build_stg(v: SourceVideo, rng: np.random.Generator, s: TaskSettings, unit: str) -> dict:
    tracks = {k: pts for k, pts in v.tracks().items() if len(pts) >= 2}
    if not tracks:
        raise Unanswerable("no track with two or more boxes")
    key = sorted(tracks)[int(rng.integers(len(tracks)))]
    pts = tracks[key]
    stride = int(rng.choice([1, 2])) if len(pts) >= 2 * STG_MAX_BOXES else 1
    i = int(rng.integers(0, max(1, len(pts) - STG_MAX_BOXES * stride + 1)))
    run = [p for p in pts[i::stride]][:STG_MAX_BOXES]
    start = float(math.floor(run[0][0]))
    end = min(float(math.ceil(run[-1][0] + 1e-9)) + 1.0, start + s.max_len)
    run = [(t, b) for t, b in run if t < end]
    if len(run) < 2:
        raise Unanswerable("track too sparse for a clip of max_len")
    clip = _clip(v, rng, start, end, s)
    keys = [f"{t - start:.1f}" for t, _ in run]
    if len(set(keys)) < len(keys):
        raise Unanswerable("box times collide at 0.1 s resolution")
    boxes = {k: [round(c, 2) for c in b.xyxy] for k, (_, b) in zip(keys, run)}
    step = float(keys[1]) - float(keys[0])
    obj = run[0][1].label
    question, picks = render("stg", v.source, rng, object=obj, stride=_num(step), start=keys[0], end=keys[-1])
    answer = " ".join(f"{k} seconds: [{', '.join(map(str, b))}]" for k, b in boxes.items())
    info = [{"object": obj, "start": float(keys[0]), "end": float(keys[-1]), "stride": step, "bbox_dict": boxes,
             "track_id": key}]
    return _record(v, "stg", clip, question, picks, answer, info, s, unit)


def _steps(v: SourceVideo, segs: list) -> list[str]:
    if v.source in FIXED:
        return list(FIXED[v.source])
    if v.source == "NurViD" and v.procedure in NURVID_PROCEDURES:
        return list(NURVID_PROCEDURES[v.procedure])
    return list(dict.fromkeys(x.label for x in segs))


def build_next_action(v: SourceVideo, rng: np.random.Generator, s: TaskSettings, unit: str) -> dict:
    segs = _levelled(v, ("action", "step", "motion", "phase", "gesture"))
    js = [j for j in range(len(segs) - 1) if segs[j + 1].label != segs[j].label and segs[j + 1].start >= segs[j].start
          and segs[j].end - segs[j].start >= 2.0]
    if not js:
        raise Unanswerable("no step followed by a different one")
    j = js[int(rng.integers(len(js)))]
    win = window_ending_in(rng, segs[j].start, segs[j].end, min(s.min_len, 4.0), s.max_len)
    if win is None:
        raise Unanswerable("current step too short for a clip")
    clip = _clip(v, rng, *win, s)
    question, picks = render("next_action", v.source, rng, procedure=v.procedure or "surgical",
                             steps=repr(_steps(v, segs)))
    return _record(v, "next_action", clip, question, picks, segs[j + 1].label, [], s, unit)


def build_skill_assessment(v: SourceVideo, rng: np.random.Generator, s: TaskSettings, unit: str) -> dict:
    if v.skill is None or not v.skill.scores:
        raise Unanswerable("no skill rating")
    missing = [a for a in SKILL_ASPECTS if a not in v.skill.scores]
    if missing:
        raise Unanswerable(f"skill rating lacks {missing}")
    clip = _clip(v, rng, 0.0, _duration(v), s)  # the whole trial
    question, picks = render("skill_assessment", v.source, rng, procedure=v.procedure or "surgical",
                             aspects=", ".join(SKILL_ASPECTS))
    answer = ", ".join(f"{a}: {v.skill.scores[a]}/5" for a in SKILL_ASPECTS)
    info = [{"skill_level": v.skill.level, "skill_scores": {a: v.skill.scores[a] for a in SKILL_ASPECTS}}]
    return _record(v, "skill_assessment", clip, question, picks, answer, info, s, unit)


def build_cvs_assessment(v: SourceVideo, rng: np.random.Generator, s: TaskSettings, unit: str) -> dict:
    ivs = [c for c in v.cvs if c.end - c.start >= 1.0]
    if not ivs:
        raise Unanswerable("no CVS interval of at least 1 s")
    iv = ivs[int(rng.integers(len(ivs)))]
    length = min(iv.end - iv.start, s.max_len, max(s.min_len, 1.0)) if iv.end - iv.start >= s.min_len else \
        iv.end - iv.start
    start = iv.start + float(rng.uniform(0.0, iv.end - iv.start - length))
    clip = _clip(v, rng, start, start + length, s)
    question, picks = render("cvs_assessment", v.source, rng)
    answer = (f"Two structures: {iv.two_structures}, Cystic plate: {iv.cystic_plate}, "
              f"Hepatocystic triangle: {iv.hepatocystic_triangle}")
    return _record(v, "cvs_assessment", clip, question, picks, answer, [{"cvs_scores": iv.scores()}], s, unit)


BUILDERS: dict[str, Callable[..., dict]] = {
    "tal": build_tal, "stg": build_stg, "next_action": build_next_action,
    "skill_assessment": build_skill_assessment, "cvs_assessment": build_cvs_assessment}


def build(task: str, v: SourceVideo, s: TaskSettings, k: int = 0, rng: Optional[np.random.Generator] = None) -> dict:
    """The k-th record of `task` from `v` (seeded by (seed, video, task, k)); raises Unanswerable."""
    from medgrpo_ray.curation.clips import rng_for

    if task not in BUILDERS:
        raise ValueError(f"no template builder for task {task!r}; known: {sorted(BUILDERS)}")
    return BUILDERS[task](v, rng or rng_for(s.seed, v.video_id, task, k), s, f"{v.source}/{v.video_id}/{task}/{k}")
