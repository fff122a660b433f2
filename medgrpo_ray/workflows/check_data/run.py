"""Check a records file before training on it: validate every record and decode every video with the training
frame budget, in parallel processes, each decode under a timeout; report every bad record.

    from medgrpo_ray.workflows.check_data import check_dataset, training_budget
    report = check_dataset("train.parquet", training_budget(cfg), timeout_s=60, workers=4, clean_out="clean.parquet")
    report.bad, report.by_reason, report.problems[0].to_json()

The records are streamed (`records_io.iter_parsed`, the loader's own parse loop: Parquet in batches) and at most
`window` records are held at once, so memory stays bounded for a large file. A record that does not validate is
reported as `field:<field>`; a valid one is decoded by `clips.clip_for_record` exactly as rollout workers and
learners decode it, in the worker processes of `pool.py`, and a failure is reported as `decode:<reason>` with the
reason code the decoder set (`data/decode_errors.py`: missing file, empty file, corrupt, truncated, timeout, ...).
The report is `report.py`. CLI: `launch/check_data.py`; docs: README "Check your data first".
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Iterator, Mapping

from medgrpo_ray.data import decode_errors as why
from medgrpo_ray.data.records import RecordError, VideoRecord
from medgrpo_ray.data.records_io import PARQUET_SUFFIXES, Parsed, field_reason, iter_parsed, write_json, write_parquet
from medgrpo_ray.data.video import FrameBudget
from medgrpo_ray.workflows.check_data.pool import TIMEOUT, DecodePool, default_workers, record_paths
from medgrpo_ray.workflows.check_data.report import CheckReport, Problem

CLEAN_SUFFIXES = PARQUET_SUFFIXES + (".json", ".jsonl")


def training_budget(cfg) -> FrameBudget:
    """The frame budget training decodes with, built from `cfg.data` and the model's processor exactly as
    `rollout/core.py` and `grpo/inputs.py` build it (`prompts.budget_for`: the resize factor is the vision
    tower's patch x merge size, so the model must be resolvable: a checkpoint directory or `tiny:<kind>`)."""
    from medgrpo_ray.data.prompts import budget_for
    from medgrpo_ray.models.loading import load_processor, resolve_model_path

    d = cfg.data
    model_dir = resolve_model_path(cfg.model.path, cfg.model.cache_dir, cfg.model.tiny_seed)
    return budget_for(load_processor(model_dir), d.max_frames, d.min_pixels, d.max_pixels)


def _field_problem(err: RecordError, d: Any) -> Problem:
    meta = d.get("metadata") if isinstance(d, Mapping) else None
    video_id = meta.get("video_id") if isinstance(meta, Mapping) else None
    return Problem(source=err.source, index=err.index, reason=f"field:{field_reason(err.field)}", message=str(err),
                   video_id=None if video_id is None else str(video_id), field=err.field or "<record>")


def _decode_problem(record: VideoRecord, found: dict[str, Any], video_root: str) -> Problem:
    message, culprit = found["message"], found.get("file")
    if found.get("pool"):  # the pool's own verdict (worker killed or dead): name the record and guess the file
        paths = record_paths(record, video_root)
        message = f"record {record.uid} ({record.source}#{record.index}): {message}"
        hung = why.first_irregular(paths) if found["reason"] == TIMEOUT else None  # a FIFO or device, if any
        culprit = hung or (paths[0] if paths else None)
    video_id = record.metadata.get("video_id")
    return Problem(source=record.source, index=record.index, reason=found["reason"], message=message,
                   uid=record.uid, video_id=None if video_id is None else str(video_id), file=culprit)


def iter_checked(path: str | os.PathLike, budget: FrameBudget, report: CheckReport, *, video_root: str = "",
                 timeout_s: float = 60.0, workers: int | None = None, threads: int = 4, batch_size: int = 1024,
                 window: int | None = None, progress: bool = False, decode: bool = True,
                 hard_timeout_s: float | None = None, quiet: bool = True) -> Iterator[VideoRecord]:
    """Check every record of `path`, filling `report`; yields the good records in file order (streaming).

    `video_root`: where relative paths resolve ('' = the records file's directory, as training does).
    `window`: most records held at once (default 16 per worker). Raises at once for a missing file or an
    unknown format, and on iteration for a file that cannot be read as a whole (invalid JSON list, a Parquet
    file without our columns).
    """
    path = Path(path)
    parsed = iter_parsed(path, batch_size=batch_size)
    root = video_root or str(path.expanduser().resolve().parent)
    n_workers = max(1, int(workers or default_workers()))
    window = max(n_workers, int(window or 16 * n_workers))
    report.source, report.video_root, report.timeout_s = str(path), root, float(timeout_s)
    report.workers, report.budget = n_workers, dataclasses.asdict(budget)
    return _checked(parsed, path, budget, report, root, timeout_s, n_workers, threads, window, progress, decode,
                    hard_timeout_s, quiet)


def _checked(parsed: Iterator[Parsed], path, budget, report, root, timeout_s, n_workers, threads, window, progress,
             decode, hard_timeout_s, quiet) -> Iterator[VideoRecord]:
    from tqdm import tqdm

    total = None
    if path.suffix.lower() in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        total = pq.ParquetFile(path).metadata.num_rows
    bar = tqdm(total=total, unit="rec", desc="check", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    t0 = time.monotonic()
    pending: dict[int, list] = {}  # seq (the item's position in the file) -> [record or None, problem, done]
    waiting: deque[int] = deque()
    pool: DecodePool | None = None
    seq_out = 0
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < window:
                item = next(parsed, None)
                if item is None:
                    exhausted = True
                    break
                if item.error is not None:
                    pending[item.position] = [None, _field_problem(item.error, item.raw), True]
                    continue
                pending[item.position] = [item.record, None, not decode]
                if decode:
                    waiting.append(item.position)
            if waiting and pool is None:
                pool = DecodePool(min(n_workers, window), budget, root, timeout_s, threads, hard_timeout_s, quiet)
            while waiting and pool is not None and pool.idle():
                seq = waiting.popleft()
                pool.submit(seq, pending[seq][0])
            while seq_out in pending and pending[seq_out][2]:
                record, problem, _ = pending.pop(seq_out)
                seq_out += 1
                report.add(problem)
                bar.update(1)
                if problem is None:
                    yield record
            if exhausted and not pending:
                break
            if pool is not None and (waiting or pool.busy()):
                for seq, found in pool.collect(0.5):
                    entry = pending[seq]
                    entry[1] = None if found is None else _decode_problem(entry[0], found, root)
                    entry[2] = True
    finally:
        if pool is not None:
            pool.close()
        bar.close()
        report.elapsed_s = time.monotonic() - t0


def check_dataset(path: str | os.PathLike, budget: FrameBudget, *, clean_out: str | os.PathLike | None = None,
                  batch_size: int = 1024, **kw: Any) -> CheckReport:
    """Check `path` (see `iter_checked` for the options); with `clean_out`, write the good records there
    (.json, .jsonl or .parquet, by its suffix, streaming) with records_io's writers, which write through
    `io.atomic.atomic_path`: the file appears whole once the check has finished, or not at all."""
    if clean_out is not None and Path(clean_out).suffix.lower() not in CLEAN_SUFFIXES:
        raise ValueError(f"--clean-out {clean_out}: unknown suffix; expected .json, .jsonl or .parquet")
    report = CheckReport()
    good = iter_checked(path, budget, report, batch_size=batch_size, **kw)
    if clean_out is None:
        for _ in good:
            pass
        return report
    out = Path(clean_out)
    if out.suffix.lower() in PARQUET_SUFFIXES:
        report.clean_records = write_parquet(good, out, batch_size=batch_size)
    else:
        report.clean_records = write_json(good, out)
    report.clean_out = str(out)
    return report
