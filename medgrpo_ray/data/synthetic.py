"""Synthetic MedVidBench: real small H.264 videos of procedural scenes with records for all 8 tasks.

    python -m medgrpo_ray.data.synthetic --out DIR --seed 0 --train 240 --test 60 [--sources ...] [--tasks ...]
        [--difficulty SOURCE=D ...]

Writes DIR/videos/*.mp4, DIR/frames/... (JPEG frame lists for about 20 % of the records), {train,test}.json and
.parquet in the published record format, and manifest.json (counts and the pixel code of each source). Paths in
records are relative to DIR. Each video serves several records (clips of 4-28 s), one per task of its source.
Every answer is computed from the same scene that drew the pixels (synthetic_scene.py), so each task is
learnable from the frames. Train and test use disjoint videos. Design: docs/data.md.
"""
from __future__ import annotations

import argparse
import logging
import math
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from medgrpo_ray.data.records import VideoRecord
from medgrpo_ray.data.records_io import write_json, write_parquet
from medgrpo_ray.data.synthetic_scene import (COLOUR_NAMES, SOURCES, STORED_FPS, Scene, Segment, SourceSpec,
                                              appearance, make_scene, with_difficulty, write_jpegs, write_mp4)
from medgrpo_ray.io.atomic import atomic_write_json

log = logging.getLogger(__name__)

FPS_CHOICES, FPS_WEIGHTS = ("0.5", "1.0", "2.0"), (0.5, 0.35, 0.15)  # the benchmark's mix, roughly
MAX_CLIP_FRAMES = 16  # clips fit the default frame budget, so sampled frames land on the GT times
SKILL_ASPECTS = ("Respect for tissue", "Suture/needle handling", "Time and motion", "Flow of operation",
                 "Overall performance", "Quality of final product")
_CVS_WORDS = ("not exposed", "partially exposed", "clearly exposed")
_MOVES = {"left": "to the left", "right": "to the right", "up": "upward", "down": "downward"}


@dataclass(frozen=True)
class Item:
    """What a task builder decides: the clip (seconds in the video) and the QA; times in it are clip-relative."""

    start: int
    end: int
    question: str
    answer: str
    struc_info: list
    rc: tuple[float, tuple[int, int, int, int]] | None = None  # (time, box) of a region caption


def _num(x: float) -> str:
    return f"{x:g}"


def _clip(scene: Scene, fps: float, rng: np.random.Generator, lo: int = 8, within: tuple[int, int] | None = None,
          showing: Segment | None = None, ends_at: int | None = None) -> tuple[int, int]:
    """An even-second clip [start, end) of `lo` s up to MAX_CLIP_FRAMES / fps, inside `within` (default: the
    video), showing at least 4 s of `showing` if given, or ending at `ends_at`."""
    a, b = within or (0, scene.duration)
    top = min(b - a, int(MAX_CLIP_FRAMES / fps) // 2 * 2)
    length = int(rng.choice(range(min(lo, top), top + 1, 2)))
    if ends_at is not None:
        return max(a, ends_at - length), ends_at
    starts = [t for t in range(a, b - length + 1, 2)
              if showing is None or min(showing.end, t + length) - max(showing.start, t) >= 4]
    start = starts[int(rng.integers(len(starts)))]
    return start, start + length


def _visible(scene: Scene, cs: int, ce: int) -> list[tuple[Segment, int, int]]:
    """(segment, start, end) of every segment overlapping the clip, clipped to it (seconds in the video)."""
    return [(s, max(s.start, cs), min(s.end, ce)) for s in scene.segments if min(s.end, ce) > max(s.start, cs)]


def _where(scene: Scene, seg: Segment, t0: float, t1: float, fps: float) -> tuple[str, str]:
    """(region, motion) of the segment's instrument over [t0, t1) as the frames sampled at `fps` show it: the
    quadrant of its centre midway between the first and last sampled frame, and its dominant direction."""
    W, H = scene.size
    last = t0 + math.floor((t1 - t0) * fps - 1e-9) / fps
    x1, y1, x2, y2 = seg.track.box((t0 + last) / 2)
    region = ("upper " if (y1 + y2) / 2 < H / 2 else "lower ") + ("left" if (x1 + x2) / 2 < W / 2 else "right")
    if last == t0:
        return region, "seen in a single frame"
    a, b = seg.track.box(t0), seg.track.box(last)
    dx, dy = b[0] - a[0], b[1] - a[1]
    if max(abs(dx), abs(dy)) < 3:
        return region, "staying in place"
    way = ("right" if dx > 0 else "left") if abs(dx) >= abs(dy) else ("down" if dy > 0 else "up")
    return region, "moving " + _MOVES[way]


def _intro(scene: Scene, fps: str, cs: int, ce: int) -> str:
    W, H = scene.size
    return f"<video>\nThis clip is sampled at {fps} fps and lasts {ce - cs:.1f} seconds; frames are {W}x{H} pixels. "


def build_tal(scene: Scene, fps: str, rng: np.random.Generator, variant: str) -> Item:
    cs, ce = _clip(scene, float(fps), rng)
    label = int(rng.choice(sorted({s.label for s, _, _ in _visible(scene, cs, ce)})))
    spans = [(a - cs, b - cs) for s, a, b in _visible(scene, cs, ce) if s.label == label]
    name, labels = scene.spec.labels[label], ", ".join(scene.spec.labels)
    q = (f"In this {scene.spec.procedure} procedure video, possible actions are: {labels}. "
         f"Find the segment(s) where {name} happens.")
    answer = ", ".join(f"{a:.1f}-{b:.1f}" for a, b in spans) + " seconds."
    return Item(cs, ce, q, answer, [{"spans": [{"start": float(a), "end": float(b)} for a, b in spans]}])


def build_stg(scene: Scene, fps: str, rng: np.random.Generator, variant: str) -> Item:
    seg = scene.segments[int(rng.integers(len(scene.segments)))]
    cs, ce = _clip(scene, float(fps), rng, showing=seg)
    step = 2.0 if float(fps) < 1 else 1.0  # sampled frames fall on multiples of 1 / fps
    a = math.ceil((max(seg.start, cs) - cs) / step) * step
    b = min(seg.end, ce) - cs
    stride = step * int(rng.choice([1, 2])) if (b - a) / step > 3 else step
    times = [a + k * stride for k in range(6) if a + k * stride < b]
    boxes = {f"{t:.1f}": list(seg.track.box(cs + t)) for t in times}
    obj = scene.spec.instruments[seg.label]
    q = (f"What are the bounding boxes of the {obj} sampled every {_num(stride)} seconds from {_num(times[0])} to "
         f"{_num(times[-1])} seconds? Give each as [x1, y1, x2, y2] in pixels.")
    answer = " ".join(f"{k} seconds: [{', '.join(map(str, v))}]" for k, v in boxes.items())
    info = {"object": obj, "start": times[0], "end": times[-1], "stride": stride, "bbox_dict": boxes}
    return Item(cs, ce, q, answer, [info])


def build_next_action(scene: Scene, fps: str, rng: np.random.Generator, variant: str) -> Item:
    j = int(rng.integers(len(scene.segments) - 1))
    seg = scene.segments[j]
    ends = [t for t in range(seg.start + 2, seg.end + 1, 2) if t >= 4]
    cs, ce = _clip(scene, float(fps), rng, lo=4, ends_at=int(rng.choice(ends)))
    # the procedure is named: the evaluator picks a NurViD record's class list by the procedure in its question
    q = (f"In this {scene.spec.procedure} video, the procedure includes the following step list: "
         f"{list(scene.spec.labels)!r}. What comes next after the current video?")
    return Item(cs, ce, q, scene.spec.labels[scene.segments[j + 1].label], [])


def _caption(scene: Scene, seg: Segment, t0: float, t1: float, fps: str, variant: str) -> str:
    label, tool = scene.spec.labels[seg.label], scene.spec.instruments[seg.label]
    region, motion = _where(scene, seg, t0, t1, float(fps))
    if variant == "gpt":
        return f"{label}: the {tool} works in the {region} of the field, {motion}."
    return f"The {tool} is used for {label} in the {region} region, {motion}."


def build_dense_captioning(scene: Scene, fps: str, rng: np.random.Generator, variant: str) -> Item:
    cs, ce = _clip(scene, float(fps), rng, lo=12)
    segs = [{"start": float(a - cs), "end": float(b - cs), "caption": _caption(scene, s, a, b, fps, variant)}
            for s, a, b in _visible(scene, cs, ce)]
    q = ("Identify each step in the video with its start and end time in seconds, one per line, "
         "as 'start-end seconds: description'.")
    answer = "\n".join(f"{s['start']:.1f}-{s['end']:.1f} seconds: {s['caption']}" for s in segs)
    # the three published struc_info shapes: NurViD's dc_segments, a nested list, a flat list
    info = [{"dc_segments": segs}] if scene.spec.name == "NurViD" else [segs] if scene.spec.name == "CoPESD" else segs
    return Item(cs, ce, q, answer, info)


def _summary(scene: Scene, cs: int, ce: int, variant: str) -> str:
    parts = [(scene.spec.labels[s.label], scene.spec.instruments[s.label]) for s, _, _ in _visible(scene, cs, ce)]
    if variant == "gpt":
        steps = ", then ".join(f"{label} with the {tool}" for label, tool in parts)
        text = f"The video shows {scene.spec.procedure}: {steps}."
    else:
        steps = "; next, ".join(f"the {tool} is used for {label}" for label, tool in parts)
        text = f"In this {scene.spec.procedure} clip, first {steps}."
    if scene.spec.distractors:
        text += f" {scene.spec.distractors} other object(s) stay in the field."
    if scene.cvs is not None:
        s = scene.cvs_at(cs)
        done = "achieved" if s == (2, 2, 2) else "not yet achieved"
        text += (f" The two structures are {_CVS_WORDS[s[0]]}, the cystic plate is {_CVS_WORDS[s[1]]} and the "
                 f"hepatocystic triangle is {_CVS_WORDS[s[2]]}; the critical view of safety is {done}.")
    if scene.skill is not None:
        level = _skill_level(scene.skill)
        article = "a" if level == "N" else "an"
        text += f" The surgeon appears to be {article} {_LEVEL_WORDS[level]} with {_STEADINESS[level]} movements."
    return text


def build_video_summary(scene: Scene, fps: str, rng: np.random.Generator, variant: str) -> Item:
    cs, ce = _clip(scene, float(fps), rng, within=_cvs_half(scene, rng) if scene.cvs is not None else None)
    return Item(cs, ce, "Summarize the procedure shown in this video.", _summary(scene, cs, ce, variant), [])


def build_region_caption(scene: Scene, fps: str, rng: np.random.Generator, variant: str) -> Item:
    seg = scene.segments[int(rng.integers(len(scene.segments)))]
    cs, ce = _clip(scene, float(fps), rng, showing=seg)
    lo, hi = max(seg.start, cs) - cs, min(seg.end, ce) - cs
    step = 2 if float(fps) < 1 else 1
    t0 = float(int(rng.choice(range(int(math.ceil(lo / step)) * step, hi - 2 + 1, step))))
    t1 = float(hi)
    q = (f"Describe the activity of the object inside the bounding box at {t0:.1f} seconds, over the interval from "
         f"{t0:.1f} to {t1:.1f} seconds.")
    return Item(cs, ce, q, _caption(scene, seg, cs + t0, cs + t1, fps, variant), [], rc=(t0, seg.track.box(cs + t0)))


_LEVEL_WORDS = {"N": "novice", "I": "intermediate", "E": "expert"}
_STEADINESS = {"N": "shaky, hesitant", "I": "mostly steady", "E": "smooth, economical"}


def _skill_level(scores) -> str:
    mean = sum(scores) / len(scores)  # the evaluator's thresholds: <= 2 novice, <= 3.5 intermediate
    return "N" if mean <= 2.0 else "I" if mean <= 3.5 else "E"


def build_skill_assessment(scene: Scene, fps: str, rng: np.random.Generator, variant: str) -> Item:
    cs, ce = _clip(scene, float(fps), rng)
    q = (f"Assess the surgeon's skill in this {scene.spec.procedure} video. Score each aspect from 1 to 5: "
         f"{', '.join(SKILL_ASPECTS)}.")
    scores = dict(zip(SKILL_ASPECTS, scene.skill))
    answer = ", ".join(f"{k}: {v}/5" for k, v in scores.items())
    return Item(cs, ce, q, answer, [{"skill_level": _skill_level(scene.skill), "skill_scores": scores}])


def _cvs_half(scene: Scene, rng: np.random.Generator) -> tuple[int, int]:
    """One half of a CVS video (its scores change at the middle), so a clip has one set of scores."""
    half = scene.duration // 2
    return (0, half) if rng.random() < 0.5 else (half, scene.duration)


def build_cvs_assessment(scene: Scene, fps: str, rng: np.random.Generator, variant: str) -> Item:
    cs, ce = _clip(scene, float(fps), rng, within=_cvs_half(scene, rng))
    s = scene.cvs_at(cs)
    q = ("Assess the critical view of safety in this clip: score two structures, cystic plate and hepatocystic "
         "triangle, each from 0 to 2.")
    answer = f"Two structures: {s[0]}, Cystic plate: {s[1]}, Hepatocystic triangle: {s[2]}"
    keys = ("two_structures", "cystic_plate", "hepatocystic_triangle")
    return Item(cs, ce, q, answer, [{"cvs_scores": dict(zip(keys, s))}])


BUILDERS = {"tal": build_tal, "stg": build_stg, "next_action": build_next_action,
            "dense_captioning": build_dense_captioning, "video_summary": build_video_summary,
            "region_caption": build_region_caption, "skill_assessment": build_skill_assessment,
            "cvs_assessment": build_cvs_assessment}
_VARIANTS = ("dense_captioning", "video_summary", "region_caption")


def build_record(scene: Scene, task: str, rng: np.random.Generator, out: Path, frame_list_fraction: float,
            written: set[str]) -> VideoRecord:
    """One record of `task` on `scene`; writes the clip's JPEG frames (once) when it uses the frame-list form."""
    fps = str(rng.choice(FPS_CHOICES, p=FPS_WEIGHTS))
    variant = str(rng.choice(["gpt", "gemini"]))
    item = BUILDERS[task](scene, fps, rng, variant)
    qa_type = f"{task}_{variant}" if task in _VARIANTS else task
    meta = {"fps": fps, "video_id": scene.video_id, "input_video_start_frame": str(item.start * STORED_FPS),
            "input_video_end_frame": str(item.end * STORED_FPS), "frame_size": list(scene.size)}
    if rng.random() < frame_list_fraction:
        folder = f"frames/{scene.video_id}/c{item.start}-{item.end}_f{fps}"
        times = [item.start + k / float(fps) for k in range(int(round((item.end - item.start) * float(fps))))]
        video: str | list[str] = [f"{folder}/{k:03d}.jpg" for k in range(len(times))]
        if folder not in written:
            write_jpegs(scene, times, [out / p for p in video])
            written.add(folder)
    else:
        video = f"videos/{scene.video_id}.mp4"
        meta.update(start_time=float(item.start), end_time=float(item.end))
    d = {"conversations": [{"from": "human", "value": _intro(scene, fps, item.start, item.end) + item.question},
                           {"from": "gpt", "value": item.answer}],
         "video": video, "metadata": meta, "qa_type": qa_type, "data_source": scene.spec.name,
         "struc_info": item.struc_info}
    if item.rc is not None:
        t0, box = item.rc
        where = {"start_frame": video[int(round(t0 * float(fps)))]} if isinstance(video, list) else {"start_time": t0}
        d.update(is_RC=True, RC_info={**where, "start_frame_bbox": list(box)})
    return VideoRecord.from_dict(d, source="synthetic")


def generate_split(out: Path, split: str, n: int, seed: int, frame_list_fraction: float = 0.2,
                   specs: Mapping[str, SourceSpec] | None = None, tasks: Sequence[str] | None = None
                   ) -> list[VideoRecord]:
    """`n` records of one split: batches of one video per source (`specs`, default all eight), records taken
    round-robin over the videos' task lists (only `tasks` if given) so that even a small split covers every
    source and task. The video of source i in batch b draws from seed [seed, split, b, i] (i: its index among
    all eight sources), so a subset of sources draws the same scenes as the full set."""
    specs = dict(SOURCES) if specs is None else dict(specs)
    plan = {name: [t for t in spec.tasks if tasks is None or t in tasks] for name, spec in specs.items()}
    plan = {name: ts for name, ts in plan.items() if ts}
    if not plan:
        raise ValueError(f"no source of {sorted(specs)} has any of the tasks {list(tasks or [])}")
    index = {name: i for i, name in enumerate(SOURCES)}
    records: list[VideoRecord] = []
    batch, written = 0, set()
    while len(records) < n:
        videos = []
        for name, ts in plan.items():
            rng = np.random.default_rng([seed, ("train", "test").index(split), batch, index.get(name, len(index))])
            videos.append((make_scene(specs[name], f"{name}_{split}_{batch * 8 + index.get(name, 0):03d}", rng), ts,
                           rng))
        for round_ in range(max(len(ts) for ts in plan.values())):
            for scene, ts, rng in videos:
                if len(records) == n or round_ >= len(ts):
                    continue
                if scene.video_id not in written:
                    write_mp4(scene, out / f"videos/{scene.video_id}.mp4")
                    written.add(scene.video_id)
                records.append(build_record(scene, ts[round_], rng, out, frame_list_fraction, written))
        batch += 1
    return records


def generate(out_dir: str | Path, seed: int = 0, n_train: int = 240, n_test: int = 60,
             frame_list_fraction: float = 0.2, sources: Sequence[str] | None = None,
             tasks: Sequence[str] | None = None, difficulty: Mapping[str, float] | None = None) -> dict:
    """Write the synthetic benchmark to `out_dir` (see the module doc); returns the manifest.

    `sources` / `tasks` restrict it to some sources and tasks (default: all); `difficulty` maps a source to a
    difficulty in [0, 1] (`synthetic_scene.with_difficulty`), the others keep their own settings.
    `out_dir` must be empty or hold an earlier synthetic set (a manifest.json), whose files are replaced.
    """
    unknown = sorted(set(sources or ()) - set(SOURCES)) + sorted(set(difficulty or {}) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown synthetic source(s) {unknown}; known: {sorted(SOURCES)}")
    bad_tasks = sorted(set(tasks or ()) - set(BUILDERS))
    if bad_tasks:
        raise ValueError(f"unknown task(s) {bad_tasks}; known: {sorted(BUILDERS)}")
    specs = {name: with_difficulty(SOURCES[name], float(difficulty[name])) if name in (difficulty or {})
             else SOURCES[name] for name in (sources or SOURCES)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "manifest.json").exists():
        for sub in ("videos", "frames"):
            shutil.rmtree(out / sub, ignore_errors=True)
    elif any(out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no synthetic manifest.json; choose an empty directory")
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        records = generate_split(out, split, n, seed, frame_list_fraction, specs, tasks)
        write_json(records, out / f"{split}.json")
        write_parquet(records, out / f"{split}.parquet")
        splits[split] = {"records": len(records), "videos": len({r.metadata["video_id"] for r in records}),
                         "frame_list_records": sum(not r.is_video_file for r in records),
                         "by_task": dict(sorted(Counter(r.task for r in records).items())),
                         "by_dataset": dict(sorted(Counter(r.dataset for r in records).items()))}
    codebook = {name: {label: {"instrument": spec.instruments[i], "colour": COLOUR_NAMES[i % 5],
                               "rgb": list(appearance(i)[0]), "shape": appearance(i)[1]}
                       for i, label in enumerate(spec.labels)} for name, spec in specs.items()}
    manifest = {"generator": "medgrpo_ray.data.synthetic", "seed": seed, "stored_fps": STORED_FPS,
                "video_root": ".", "splits": splits, "codebook": codebook}
    if difficulty:
        manifest["difficulty"] = {name: {"d": float(difficulty[name]), "box_frac": specs[name].box_frac,
                                         "speed": specs[name].speed, "noise": specs[name].noise,
                                         "distractors": specs[name].distractors,
                                         "phase_lengths": list(specs[name].phase_lengths)}
                                  for name in sorted(difficulty)}
    atomic_write_json(out / "manifest.json", manifest, indent=1)  # written last, whole: the set is complete
    return manifest


def ensure_generated(out_dir: str | Path, seed: int = 0, n_train: int = 240) -> Path:
    """`out_dir` holding the synthetic benchmark, generated first when it has no manifest: `n_train` training
    and max(8, n_train // 2) test records (what `data.synthetic_dir` / `data.synthetic_records` give a run)."""
    out = Path(out_dir).expanduser()
    if not (out / "manifest.json").is_file():
        log.info("generating the synthetic benchmark in %s", out)
        generate(out, seed=seed, n_train=n_train, n_test=max(8, n_train // 2))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medgrpo_ray.data.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=240, help="training records")
    parser.add_argument("--test", type=int, default=60, help="test records")
    parser.add_argument("--frame-list-fraction", type=float, default=0.2, help="records in the JPEG frame-list form")
    parser.add_argument("--sources", nargs="*", default=None, help="only these sources (default: all eight)")
    parser.add_argument("--tasks", nargs="*", default=None, help="only these tasks (default: all)")
    parser.add_argument("--difficulty", nargs="*", default=[], metavar="SOURCE=D",
                        help="difficulty in [0, 1] of a source (0: large still instruments, long phases; 1: small fast ones)")
    args = parser.parse_args(argv)
    try:
        difficulty = {k: float(v) for k, v in (item.split("=", 1) for item in args.difficulty)}
    except ValueError:
        parser.error(f"--difficulty takes SOURCE=D pairs, got {args.difficulty}")
    t0 = time.perf_counter()
    manifest = generate(args.out, args.seed, args.train, args.test, args.frame_list_fraction, args.sources,
                        args.tasks, difficulty or None)
    size = sum(p.stat().st_size for p in Path(args.out).rglob("*") if p.is_file())
    for split, info in manifest["splits"].items():
        print(f"{split}: {info['records']} records from {info['videos']} videos; {info['by_task']}")
    print(f"wrote {args.out} ({size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
