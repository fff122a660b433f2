"""The curation run (launch/curate.py): source converters -> template units -> self-score gate, and caption units ->
two providers -> the validation rule -> assembly.

Resumable by content: every finished unit (one (source, video, task, k) draw) is appended to `OUT/units.jsonl` as
one line with its key - a digest of the unit, the settings that shape it, the templates version and the converted
video itself - and the record or the reason it was rejected. A rerun with the same `--out` skips every unit whose
key is in the log (a torn last line, from a kill mid-write, is ignored and that unit redone), so no finished unit is
redone and none is lost; a changed setting or source file changes the keys, so stale units are not reused.
Assembly and the outputs are then rebuilt from the log (cheap, deterministic).

Template units are built in this process (microseconds each). Caption units (DVC, VS, RC; for the sources whose
labels support them) are built here too, then the pending ones go to the two configured providers through
curation/caption_run.py: one asyncio loop with a bound on requests in flight (captions.max_in_flight), each unit
decided by the rule (validate.decide, one regeneration) and appended to the same log the moment it finishes; its
key adds the prompt version, the providers' names and models, the rule's settings and the embedder. Provider
replies are also in the sqlite reply cache, so a unit cut off between its two replies pays only for the missing
one on the rerun. Before a unit is sent its frames are decoded, drawn on and JPEG-encoded
(curation/caption_frames.py): on Ray CPU tasks for runs of at least captions.ray_min_units pending units, else in
this process (workflows/curation_frames.py says why). The rest needs no Ray: the caption requests are I/O-bound
(one event loop keeps hundreds in flight) and a template unit takes milliseconds.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, Optional

from medgrpo_ray.config.curation import CAPTION_TASKS, CurationConfig
from medgrpo_ray.curation.schema import ConversionReport, SourceVideo

UNITS_LOG = "units.jsonl"


def convert_sources(sources: dict) -> tuple[list[SourceVideo], dict[str, dict]]:
    """Every configured source through its converter: (videos, per-source conversion report)."""
    from medgrpo_ray.curation.sources import converters
    from medgrpo_ray.medvidbench.tasks import canonical_dataset

    available = converters()
    videos, reports = [], {}
    for name, spec in sources.items():
        canonical = canonical_dataset(name)
        if canonical not in available:
            raise ValueError(f"curation field 'sources' names {name!r}; converters exist for {sorted(available)} "
                             "(docs/curation.md: adding a source)")
        root, options = source_root(name, spec)
        report = ConversionReport(canonical)
        got = list(available[canonical](root, report, **options))
        for v in got:
            v.extra["source_root"] = str(root)
        report.videos = len(got)
        videos += got
        reports[canonical] = report.to_json()
    return videos, reports


def source_root(name: str, spec) -> tuple[Path, dict]:
    """(root, converter options) of one `sources` entry: a path, or {root, option: value, ...}."""
    if isinstance(spec, (str, os.PathLike)):
        return Path(spec).expanduser().resolve(), {}
    if not isinstance(spec, dict) or not spec.get("root"):
        raise ValueError(f"curation field 'sources.{name}': give a path or {{root: PATH, ...options}}")
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "root"}
    return Path(spec["root"]).expanduser().resolve(), options


def relocate(record: dict, root: Path, out: Path) -> dict:
    """Video paths relative to the output directory (records name them relative to their source's root), so the
    curated files train with `data.video_root=OUT`, and keep working when OUT and the sources move together."""
    rel = lambda p: os.path.relpath(root / p, out)  # noqa: E731
    video = record["video"]
    record["video"] = [rel(p) for p in video] if isinstance(video, list) else rel(video)
    return record


def synthetic_sources(native: Path, seed: int, count: int) -> dict:
    """The synthetic scenes exported in four native formats under `native` (once: a marker says it is complete),
    as `sources` entries."""
    from medgrpo_ray.curation.synthetic_export import export
    from medgrpo_ray.io.atomic import atomic_write_json

    marker = native / "export.json"
    if marker.is_file() and json.loads(marker.read_text()).get("settings") == [seed, count]:
        return json.loads(marker.read_text())["sources"]
    exported = export(native, seed=seed, count=count)
    sources = {name: {"root": str(e.root), **{k: list(v) for k, v in e.load_kwargs.items()}}
               for name, e in exported.items()}
    atomic_write_json(marker, {"settings": [seed, count], "sources": sources}, indent=1)
    return sources


def unit_key(video: SourceVideo, task: str, k: int, cfg: CurationConfig, templates_version: str,
             extra: Optional[dict] = None) -> str:
    """The unit's content key: its draw, the settings that shape it, the templates version (`extra`: what else
    decides it, e.g. a caption unit's prompt version, providers and validation settings) and the video itself."""
    shape = {"task": task, "k": k, "seed": cfg.seed, "root": video.extra.get("source_root"), "min_len": cfg.min_len,
             "max_len": cfg.max_len, "frame_cap": cfg.frame_cap, "fps_prior": dict(sorted(cfg.fps_prior.items())),
             "templates": templates_version, **(extra or {})}
    blob = json.dumps([shape, video.to_json()], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def read_log(path: Path) -> dict[str, dict]:
    """key -> entry of every complete line (a torn or unreadable line is skipped: that unit is redone)."""
    done: dict[str, dict] = {}
    if not path.is_file():
        return done
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and "key" in entry:
                done[entry["key"]] = entry
    return done


def torn_tail(path: Path) -> bool:
    """Whether the log's last line lacks its newline (a write cut off by a kill)."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def units(videos: list[SourceVideo], cfg: CurationConfig) -> Iterator[tuple[SourceVideo, str, int]]:
    for v in videos:
        for task in cfg.tasks:
            for k in range(cfg.records_per_video):
                yield v, task, k


def task_settings(cfg: CurationConfig):
    from medgrpo_ray.curation.tasks import TaskSettings

    return TaskSettings(seed=cfg.seed, min_len=cfg.min_len, max_len=cfg.max_len, frame_cap=cfg.frame_cap,
                        fps_prior=dict(cfg.fps_prior))


def build_unit(v: SourceVideo, task: str, k: int, cfg: CurationConfig) -> dict:
    """{record} or {reason} for one template unit: the builder, then the self-score gate."""
    from medgrpo_ray.curation.selfcheck import self_score_problem
    from medgrpo_ray.curation.tasks import Unanswerable, build

    try:
        rec = build(task, v, task_settings(cfg), k)
    except Unanswerable as err:
        return {"reason": f"unanswerable: {err}"}
    problem = self_score_problem(rec)
    return {"reason": f"self-score: {problem}"} if problem else {"record": rec}


def caption_unit(v: SourceVideo, task: str, k: int, cfg: CurationConfig, out: Path):
    """The k-th caption unit of `task` from `v` with its video path relative to OUT, or why there is none."""
    from medgrpo_ray.curation.caption_units import build_unit as build_caption
    from medgrpo_ray.curation.tasks import Unanswerable

    try:
        unit = build_caption(task, v, task_settings(cfg), k)
    except Unanswerable as err:
        return f"unanswerable: {err}"
    unit.video = relocate({"video": unit.video}, Path(v.extra["source_root"]), out)["video"]
    return unit


def caption_pending(pending: list, cfg: CurationConfig, out: Path, write, log) -> dict:
    """The pending caption units through the providers, their frames rendered first (in process or on Ray by
    their number: workflows/curation_frames.py) unless captions.send_frames is false."""
    from medgrpo_ray.curation import caption_stage
    from medgrpo_ray.workflows.curation_frames import FrameRenderer

    fs = caption_stage.frame_settings(cfg)
    if fs is None:
        return caption_stage.run_pending(pending, cfg, write, log)
    renderer = FrameRenderer.for_run(out, fs, len(pending), cfg.captions.ray_min_units, log)
    try:
        return caption_stage.run_pending(pending, cfg, write, log, prepare=renderer)
    finally:
        renderer.close()


def jpeg_frames(result: dict, videos: list[SourceVideo], out: Path, log):
    """`frames: jpeg`: the output records (train, standard, val) pointed at their JPEG frames under OUT/frames,
    the missing ones written (curation/frame_lists.py)."""
    from medgrpo_ray.curation.frame_lists import remove_stale_temp, to_frame_lists

    t0 = time.perf_counter()
    remove_stale_temp(out)
    by_id = {(v.source, v.video_id): v for v in videos}
    stats = to_frame_lists([*result["large"], *result["standard"], *(result["val"] or [])], by_id, out)
    if log:
        log(f"[curate] JPEG frames: {stats.records} records, {stats.files} frame files ({stats.written} written, "
            f"{stats.reused} references to frames already there) in {time.perf_counter() - t0:.1f} s")
    return stats


def plan(videos: list[SourceVideo], cfg: CurationConfig, out: Path) -> dict:
    """--dry-run: units per source and task; for the caption tasks units per task and, per provider, the requests,
    tokens and cost of those not in OUT/units.jsonl yet."""
    from medgrpo_ray.curation import caption_stage
    from medgrpo_ray.curation.templates import TEMPLATES_VERSION

    counts = Counter((v.source, task) for v, task, _ in units(videos, cfg))
    result = {"units": {f"{s}/{t}": n for (s, t), n in sorted(counts.items())}, "units_total": sum(counts.values())}
    done = read_log(out / UNITS_LOG)
    extra = caption_stage.key_extra(cfg)
    built, pending, unanswerable = [], [], Counter()
    for v, task, k in units(videos, cfg):
        if task in CAPTION_TASKS:
            unit = caption_unit(v, task, k, cfg, out)
            if isinstance(unit, str):
                unanswerable[task] += 1
                continue
            built.append(unit)
            if unit_key(v, task, k, cfg, TEMPLATES_VERSION, extra) not in done:
                pending.append(unit)
    if any(t in CAPTION_TASKS for t in cfg.tasks):
        result["captions"] = caption_stage.dry_run(built, pending, cfg, unanswerable)
    calls = sum(p["requests"] for p in result.get("captions", {}).get("providers", {}).values())
    return {**result, "llm_calls": calls,
            "note": "template tasks make no model call" + ("" if calls else "; no caption request pending")}


def run_curation(cfg: CurationConfig, out_dir: str | os.PathLike, dry_run: bool = False,
                 log: Optional[callable] = print) -> dict:
    """Convert, build the template units and caption the caption units (resuming from OUT/units.jsonl), assemble
    and write; with `dry_run` only plan (units, requests, tokens, cost)."""
    from medgrpo_ray.curation import caption_stage
    from medgrpo_ray.curation.assemble import assemble, write_outputs
    from medgrpo_ray.curation.templates import TEMPLATES_VERSION

    t0 = time.perf_counter()
    out = Path(out_dir).resolve()
    sources = dict(cfg.sources)
    if cfg.synthetic_export > 0:
        sources.update(synthetic_sources(out / "native", cfg.seed, cfg.synthetic_export))
    if not sources:
        raise ValueError("curation field 'sources' is empty: name at least one source root, or set synthetic_export")
    if any(t in CAPTION_TASKS for t in cfg.tasks) and not dry_run:
        caption_stage.need_providers(cfg)
    videos, reports = convert_sources(sources)
    if dry_run:
        return {"videos": len(videos), "conversion": reports, **plan(videos, cfg, out)}
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / UNITS_LOG
    done = read_log(log_path)
    built, reused = 0, 0
    order: list[tuple[str, str]] = []  # (key, task) in unit order
    pending: list[tuple[dict, object]] = []  # caption units to send: (entry head, unit)
    extra = caption_stage.key_extra(cfg)
    requests: dict = {}
    with open(log_path, "a", encoding="utf-8") as f:
        if torn_tail(log_path):
            f.write("\n")  # end a line torn by a kill, so the next entry starts a line of its own
        synced = [time.monotonic()]

        def write(entry: dict, durable: bool = True) -> None:
            """Append one finished unit; fsync each template unit, caption units at most once a second (a killed
            process loses nothing the OS has; fsync guards against a machine crash)."""
            f.write(json.dumps(entry) + "\n")
            f.flush()
            if durable or time.monotonic() - synced[0] >= 1.0:
                os.fsync(f.fileno())
                synced[0] = time.monotonic()
            done[entry["key"]] = entry

        for v, task, k in units(videos, cfg):
            caption = task in CAPTION_TASKS
            key = unit_key(v, task, k, cfg, TEMPLATES_VERSION, extra if caption else None)
            order.append((key, task))
            if key in done:
                reused += 1
                continue
            built += 1
            head = {"key": key, "unit": f"{v.source}/{v.video_id}/{task}/{k}"}
            if not caption:
                entry = {**head, **build_unit(v, task, k, cfg)}
                if "record" in entry:
                    relocate(entry["record"], Path(v.extra["source_root"]), out)
                write(entry)
                continue
            unit = caption_unit(v, task, k, cfg, out)
            if isinstance(unit, str):
                write({**head, "reason": unit})
            else:
                pending.append((head, unit))
        if pending:
            requests = caption_pending(pending, cfg, out, lambda e: write(e, durable=False), log)
        os.fsync(f.fileno())
    records: list[dict] = []
    rejects: Counter = Counter()
    tally = caption_stage.Tally()
    for key, task in order:
        entry = done[key]
        if task in CAPTION_TASKS:
            records += tally.add(task, entry, rejects)
        elif "record" in entry:
            records.append(entry["record"])
        else:
            rejects[entry["reason"].split(":", 1)[0] + ": " + task] += 1
    official = {(v.source, v.video_id): v.split for v in videos}
    result = assemble(records, seed=cfg.seed, target_total=cfg.standard_total, mode=cfg.balance_mode,
                      exclusion=list(cfg.exclude), official=official, val_fraction=cfg.val_fraction,
                      rejects=rejects)
    frames = jpeg_frames(result, videos, out, log) if cfg.frames == "jpeg" else None
    captioned = any(t in CAPTION_TASKS for t in cfg.tasks)
    manifest = {**result["manifest"], "conversion": reports, "units": {"built": built, "from_log": reused},
                **({"frames": {"layout": "jpeg", "records": frames.records, "files": frames.files}} if frames else {}),
                **({"captions": tally.manifest(), "caption_requests": requests} if captioned else {}),
                "config": asdict(cfg), "seconds": round(time.perf_counter() - t0, 2)}
    if captioned:
        caption_stage.write_review(out, tally.review)
    paths = write_outputs(out, result["large"], result["standard"], manifest,
                          val=result["val"] or None, json_copies=cfg.json_copies)
    if log:
        log(f"[curate] {len(videos)} videos, {built} units built, {reused} from {log_path.name}, "
            f"{len(records)} records passed the gates, {sum(rejects.values())} units rejected; "
            f"large {len(result['large'])}, standard {len(result['standard'])}; wrote {paths['manifest.json']}")
    return {"paths": paths, "built": built, "reused": reused, "records": len(records), "rejects": dict(rejects),
            **({"frames": frames.to_json()} if frames else {}),
            **({"captions": tally.manifest(), "caption_requests": requests} if captioned else {})}
