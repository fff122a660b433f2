"""Video decode throughput of the project's sampling path (decord seek + ClipCache) against decoding every frame.

    .venv/bin/python benchmarks/bench_decode.py [--seconds 60] [--src-fps 30] [--repeats 3] [--group 8]
                                                [--out benchmarks/results/decode.json]

Builds one H.264 clip offline (default 60 s, 640x480, 30 fps: the synthetic benchmark's procedural surgical
scene from `synthetic_scene.render_frames`, encoded with PyAV/libx264 at the requested rate), then, for each
sampling rate (0.5, 1, 2 fps) and the clip cache off / on, requests the same record's clip G times through
`clip_for_record` as the rollout worker does for the G samples of one prompt (cache on: one ClipCache shared
by the G requests, so one decode and G-1 hits). The baseline is the naive approach: a decord VideoReader
reading every frame in order (`next()`), keeping the frames at the sampled indices. Every repeat measures the
baseline and all settings back to back; medians over the repeats are reported. Writes JSON with frames
delivered per wall second, wall seconds per G-sample prompt and the ratios against the baseline.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from medgrpo_ray.data.clips import clip_for_record
from medgrpo_ray.data.records import VideoRecord
from medgrpo_ray.data.synthetic_scene import SOURCES, make_scene, render_frames
from medgrpo_ray.data.video import ClipCache, FrameBudget, sample_times
from medgrpo_ray.io.atomic import atomic_path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_FPS = (0.5, 1.0, 2.0)


def _uptime_load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def build_clip(path: Path, seconds: int, src_fps: int, size: tuple[int, int], gop: int, crf: int, seed: int) -> dict:
    """Render the synthetic scene (tissue, drift, sensor noise, moving instruments) and encode it as H.264."""
    import av

    base = SOURCES["CholecT50"]  # laparoscopic palette and vocabulary; scaled to the benchmark's frame size
    scale = size[0] / base.size[0]
    spec = dataclasses.replace(base, name="BenchDecode", size=size, durations=(seconds,), speed=base.speed * scale,
                               drift=base.drift * scale, distractors=2)
    scene = make_scene(spec, "bench_decode", np.random.default_rng(seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with atomic_path(path, suffix=".mp4") as tmp, av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=src_fps,
                                      options={"crf": str(crf), "preset": "veryfast", "g": str(gop)})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        times = [i / src_fps for i in range(seconds * src_fps)]
        for i, frame in enumerate(render_frames(scene, times)):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, src_fps)
            container.mux(stream.encode(vf))
        container.mux(stream.encode())
    return {"path": str(path), "seconds": seconds, "src_fps": src_fps, "width": size[0], "height": size[1],
            "codec": "h264 (libx264, yuv420p, preset veryfast)", "crf": crf, "gop": gop,
            "bytes": path.stat().st_size, "build_s": round(time.perf_counter() - t0, 2)}


def naive_decode(path: str, keep: set[int]) -> tuple[float, int, dict[int, np.ndarray]]:
    """Decode every frame in order with one decord thread (as decode_video uses); keep the sampled indices."""
    import decord

    t0 = time.perf_counter()
    vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    n, kept = len(vr), {}
    for i in range(n):
        frame = vr.next().asnumpy()
        if i in keep:
            kept[i] = frame
    return time.perf_counter() - t0, n, kept


def record_for(video: str, fps: float) -> VideoRecord:
    return VideoRecord.from_dict({
        "conversations": [{"from": "human", "value": "<video>\nDescribe the procedure."}],
        "video": video, "metadata": {"fps": str(fps), "video_id": "bench_decode"}, "qa_type": "video_summary_gpt",
        "data_source": "CholecT50"}, source="bench_decode", index=0)


def run_group(rec: VideoRecord, budget: FrameBudget, group: int, cached: bool) -> dict:
    """G requests of one record's clip, as the rollout worker makes for the G samples of a prompt."""
    cache = ClipCache() if cached else None
    t0 = time.perf_counter()
    clips = [clip_for_record(rec, budget, cache=cache) for _ in range(group)]
    wall = time.perf_counter() - t0
    out = {"wall_s": wall, "frames_delivered": sum(c.num_frames for c in clips), "clip": clips[0],
           "hw": list(clips[0].frames.shape[1:3])}
    if cache is not None:
        out.update(hits=cache.hits, misses=cache.misses)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--src-fps", type=int, default=25, help="source frame rate (Cholec80 is 25 fps)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--gop", type=int, default=25,
                    help="keyframe interval in frames (25: 1 s, recorder-style; 250 is the x264 default, see notes)")
    ap.add_argument("--crf", type=int, default=20, help="x264 CRF; with the defaults the clip is ~2.3 Mbit/s")
    ap.add_argument("--group", type=int, default=8, help="G: samples per prompt, each requesting the clip")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-frames", type=int, default=120)
    ap.add_argument("--factor", type=int, default=32,
                    help="FrameBudget.factor; 32 (Qwen3-VL) keeps 640x480, 28 (Qwen2.5-VL) resizes to 476x644")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "medgrpo_ray_bench_decode"),
                    help="where the clip is built once and reused (the build is ~1 min for 60 s); '' = a fresh temp dir")
    ap.add_argument("--note", action="append", default=[], help="free-text note to add to the JSON (repeatable)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/decode.json"))
    a = ap.parse_args(argv)

    import decord
    import av
    import PIL

    t_start = time.perf_counter()
    load_before = _uptime_load()
    budget = FrameBudget(max_frames=a.max_frames, min_pixels=4 * a.factor ** 2,
                         max_pixels=max(a.width * a.height, 4 * a.factor ** 2), factor=a.factor)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(a.cache_dir) if a.cache_dir else Path(tmp)
        path = folder / f"bench_{a.seconds}s_{a.width}x{a.height}_{a.src_fps}fps_g{a.gop}_crf{a.crf}_s{a.seed}.mp4"
        if path.exists():
            video = {"path": str(path), "seconds": a.seconds, "src_fps": a.src_fps, "width": a.width,
                     "height": a.height, "codec": "h264 (libx264, yuv420p, preset veryfast)", "crf": a.crf,
                     "gop": a.gop, "bytes": path.stat().st_size, "build_s": None}
        else:
            video = build_clip(path, a.seconds, a.src_fps, (a.width, a.height), a.gop, a.crf, a.seed)
        video["reused_from_cache_dir"] = video["build_s"] is None
        video["mbit_per_s"] = round(video["bytes"] * 8 / a.seconds / 1e6, 2)
        probe = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        video.update(decord_frames=len(probe), decord_avg_fps=float(probe.get_avg_fps()),
                     keyframes=len(probe.get_key_indices()))
        del probe
        n_frames = a.seconds * a.src_fps
        records = {fps: record_for(str(path), fps) for fps in SAMPLE_FPS}
        indices = {}
        for fps in SAMPLE_FPS:
            times, used = sample_times(0.0, float(a.seconds), fps, budget.max_frames)
            indices[fps] = [min(n_frames - 1, int(round(t * a.src_fps))) for t in times]
        keep = set().union(*indices.values())

        # warm-up, untimed: the first clip_for_record imports transformers (smart_resize) and PIL
        clip_for_record(records[SAMPLE_FPS[0]], budget)
        raw = {"naive": [], **{(fps, c): [] for fps in SAMPLE_FPS for c in (False, True)}}
        checks = {}
        for rep in range(a.repeats):
            wall, n_decoded, kept = naive_decode(str(path), keep)
            raw["naive"].append(wall)
            for fps in SAMPLE_FPS:
                for cached in (False, True):
                    res = run_group(records[fps], budget, a.group, cached)
                    raw[(fps, cached)].append(res)
                    if rep == 0:
                        clip = res.pop("clip")
                        expect = np.stack([kept[i] for i in indices[fps]])
                        frames = clip.frames[:len(expect)]
                        checks[(fps, cached)] = {
                            "frames_per_request": clip.num_frames, "used_fps": clip.fps, "hw": res["hw"],
                            "source_hw": list(clip.source_hw),
                            "pixels_equal_naive": bool(frames.shape == expect.shape and np.array_equal(frames, expect))}
                    res.pop("clip", None)
        del kept

    naive_s = statistics.median(raw["naive"])
    baseline = {"description": "decord VideoReader(num_threads=1), next() over every frame, asnumpy(); keep sampled",
                "frames_decoded": n_decoded, "wall_s_per_decode": naive_s, "decode_fps": n_decoded / naive_s,
                "wall_s_repeats": raw["naive"],
                "wall_s_per_prompt_G": a.group * naive_s,
                "wall_s_per_prompt_G_note": f"{a.group} x the measured single decode (naive: no cache, every "
                                            "sample decodes the whole clip); not run 8 times to keep the run short"}
    settings = []
    for fps in SAMPLE_FPS:
        k = len(indices[fps])
        naive_delivered = k / naive_s  # per sample: k useful frames per full decode
        for cached in (False, True):
            runs = raw[(fps, cached)]
            wall = statistics.median(r["wall_s"] for r in runs)
            delivered = runs[0]["frames_delivered"]
            row = {"sample_fps": fps, "cache": "on" if cached else "off", "group": a.group,
                   "frames_per_request": checks[(fps, cached)]["frames_per_request"],
                   "frames_delivered_per_prompt": delivered,
                   "wall_s_per_prompt": wall, "wall_s_repeats": [r["wall_s"] for r in runs],
                   "frames_delivered_per_s": delivered / wall,
                   "naive_frames_delivered_per_s": naive_delivered,
                   "naive_wall_s_per_prompt": a.group * naive_s,
                   "speedup_delivered_per_s_vs_naive": (delivered / wall) / naive_delivered,
                   "speedup_wall_vs_naive_G": a.group * naive_s / wall,
                   "speedup_wall_vs_naive_once": naive_s / wall,
                   **{k2: v for k2, v in checks[(fps, cached)].items() if k2 != "frames_per_request"}}
            if cached:
                row.update(cache_hits=runs[0]["hits"], cache_misses=runs[0]["misses"],
                           cache_stats_all_repeats=[[r["hits"], r["misses"]] for r in runs])
            settings.append(row)

    load_after = _uptime_load()
    notes = [
        "frames_delivered_per_s: sampled frames returned to the caller per wall second, summed over the G requests",
        "naive_frames_delivered_per_s: useful (sampled) frames per second of the naive decode-everything-then-"
        "subsample path; per prompt it decodes the clip G times (speedup_wall_vs_naive_G) - "
        "speedup_wall_vs_naive_once compares with one naive decode shared by the G samples",
        f"FrameBudget(max_frames={budget.max_frames}, factor={budget.factor}, max_pixels={budget.max_pixels}): "
        "sampling is not capped and frames are not resized when hw equals source_hw",
        "decode_video opens a fresh decord VideoReader per request (num_threads=1), the baseline uses one thread too",
        f"medians of {a.repeats} repeats; each repeat runs the baseline and every setting back to back",
    ]
    cpus = os.cpu_count() or 1
    busy = [l for l in (load_before, load_after) if l and l[0] > 0.5 * cpus]
    if busy:
        notes.append(f"machine NOT idle: load average (1, 5, 15 min) {load_before} before, {load_after} after, on "
                     f"{cpus} CPUs (the machine is shared, e.g. with test runs); absolute numbers are noisy, ratios "
                     "measured in the same repeats are the result to read")
    else:
        notes.append(f"machine idle enough: load average {load_before} before, {load_after} after, on {cpus} CPUs")
    notes += a.note
    payload = {
        "benchmark": "video_decode", "benchmark_wall_s": round(time.perf_counter() - t_start, 1), "video": video,
        "group": a.group, "repeats": a.repeats, "sample_fps": list(SAMPLE_FPS),
        "budget": dataclasses.asdict(budget), "baseline": baseline, "settings": settings,
        "machine": {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
                    "cpu_count": cpus, "load_avg_before": load_before, "load_avg_after": load_after},
        "versions": {"python": sys.version.split()[0], "decord": decord.__version__, "av": av.__version__,
                     "numpy": np.__version__, "pillow": PIL.__version__},
        "notes": notes,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")

    print(f"clip: {video['seconds']} s {video['width']}x{video['height']} @ {video['src_fps']} fps, "
          f"{video['bytes'] / 1e6:.1f} MB; G={a.group}, median of {a.repeats}; load {load_before} -> {load_after}")
    print(f"naive decode-all: {n_decoded} frames in {naive_s:.2f} s = {baseline['decode_fps']:.0f} frames/s "
          f"({a.group * naive_s:.2f} s per G={a.group} prompt)")
    print(f"{'fps':>4} {'cache':>5} {'frames':>6} {'wall_s/G':>9} {'deliv/s':>8} {'naive/s':>8} "
          f"{'x deliv':>8} {'x wall(G)':>9} {'x once':>7} {'hit/miss':>8}")
    for r in settings:
        hm = f"{r['cache_hits']}/{r['cache_misses']}" if r["cache"] == "on" else "-"
        print(f"{r['sample_fps']:>4} {r['cache']:>5} {r['frames_delivered_per_prompt']:>6} "
              f"{r['wall_s_per_prompt']:>9.3f} {r['frames_delivered_per_s']:>8.0f} "
              f"{r['naive_frames_delivered_per_s']:>8.1f} {r['speedup_delivered_per_s_vs_naive']:>8.2f} "
              f"{r['speedup_wall_vs_naive_G']:>9.2f} {r['speedup_wall_vs_naive_once']:>7.2f} {hm:>8}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
