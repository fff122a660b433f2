"""The curation run (launch/curate.py): source converters -> template units -> self-score gate -> assembly.

Resumable by content: every finished unit (one (source, video, task, k) draw) is appended to `OUT/units.jsonl` as
one line with its key - a digest of the unit, the settings that shape it, the templates version and the converted
video itself - and the record or the reason it was rejected. A rerun with the same `--out` skips every unit whose
key is in the log (a torn last line, from a kill mid-write, is ignored and that unit redone), so no finished unit is
redone and none is lost; a changed setting or source file changes the keys, so stale units are not reused.
Assembly and the outputs are then rebuilt from the log (cheap, deterministic).

Template units are built in this process (microseconds each); the frame and caption stages, which decode and call
models, are where Ray workers and the async requester pool go (docs/curation.md, status).
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

from medgrpo_ray.config.curation import CurationConfig
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


def unit_key(video: SourceVideo, task: str, k: int, cfg: CurationConfig, templates_version: str) -> str:
    shape = {"task": task, "k": k, "seed": cfg.seed, "root": video.extra.get("source_root"), "min_len": cfg.min_len, "max_len": cfg.max_len,
             "frame_cap": cfg.frame_cap, "fps_prior": dict(sorted(cfg.fps_prior.items())),
             "templates": templates_version}
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


def build_unit(v: SourceVideo, task: str, k: int, cfg: CurationConfig) -> dict:
    """{record} or {reason} for one unit: the builder, then the self-score gate."""
    from medgrpo_ray.curation.selfcheck import self_score_problem
    from medgrpo_ray.curation.tasks import TaskSettings, Unanswerable, build

    s = TaskSettings(seed=cfg.seed, min_len=cfg.min_len, max_len=cfg.max_len, frame_cap=cfg.frame_cap,
                     fps_prior=dict(cfg.fps_prior))
    try:
        rec = build(task, v, s, k)
    except Unanswerable as err:
        return {"reason": f"unanswerable: {err}"}
    problem = self_score_problem(rec)
    return {"reason": f"self-score: {problem}"} if problem else {"record": rec}


def run_curation(cfg: CurationConfig, out_dir: str | os.PathLike, dry_run: bool = False,
                 log: Optional[callable] = print) -> dict:
    """Convert, build (resuming from OUT/units.jsonl), assemble and write; with `dry_run` only count the units."""
    from medgrpo_ray.curation.assemble import assemble, write_outputs
    from medgrpo_ray.curation.templates import TEMPLATES_VERSION

    t0 = time.perf_counter()
    out = Path(out_dir).resolve()
    sources = dict(cfg.sources)
    if cfg.synthetic_export > 0:
        sources.update(synthetic_sources(out / "native", cfg.seed, cfg.synthetic_export))
    if not sources:
        raise ValueError("curation field 'sources' is empty: name at least one source root, or set synthetic_export")
    videos, reports = convert_sources(sources)
    plan = Counter((v.source, task) for v, task, _ in units(videos, cfg))
    if dry_run:
        return {"videos": len(videos), "conversion": reports,
                "units": {f"{s}/{t}": n for (s, t), n in sorted(plan.items())}, "units_total": sum(plan.values()),
                "llm_calls": 0, "note": "template tasks only: no model call, no token cost"}
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / UNITS_LOG
    done = read_log(log_path)
    built, reused, rejects = 0, 0, Counter()
    records: list[dict] = []
    with open(log_path, "a", encoding="utf-8") as f:
        if torn_tail(log_path):
            f.write("\n")  # end a line torn by a kill, so the next entry starts a line of its own
        for v, task, k in units(videos, cfg):
            key = unit_key(v, task, k, cfg, TEMPLATES_VERSION)
            entry = done.get(key)
            if entry is None:
                entry = {"key": key, "unit": f"{v.source}/{v.video_id}/{task}/{k}", **build_unit(v, task, k, cfg)}
                if "record" in entry:
                    relocate(entry["record"], Path(v.extra["source_root"]), out)
                f.write(json.dumps(entry) + "\n")
                f.flush()
                os.fsync(f.fileno())
                built += 1
            else:
                reused += 1
            if "record" in entry:
                records.append(entry["record"])
            else:
                rejects[entry["reason"].split(":", 1)[0] + ": " + task] += 1
    official = {(v.source, v.video_id): v.split for v in videos}
    result = assemble(records, seed=cfg.seed, target_total=cfg.standard_total, mode=cfg.balance_mode,
                      exclusion=list(cfg.exclude), official=official, val_fraction=cfg.val_fraction,
                      rejects=rejects)
    manifest = {**result["manifest"], "conversion": reports, "units": {"built": built, "from_log": reused},
                "config": asdict(cfg), "seconds": round(time.perf_counter() - t0, 2)}
    paths = write_outputs(out, result["large"], result["standard"], manifest,
                          val=result["val"] or None, json_copies=cfg.json_copies)
    if log:
        log(f"[curate] {len(videos)} videos, {built} units built, {reused} from {log_path.name}, "
            f"{len(records)} records passed the self-score gate, {sum(rejects.values())} rejected; "
            f"large {len(result['large'])}, standard {len(result['standard'])}; wrote {paths['manifest.json']}")
    return {"paths": paths, "built": built, "reused": reused, "records": len(records), "rejects": dict(rejects)}
