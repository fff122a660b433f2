"""Check a records file before training on it: validate every record and decode every video with the training
frame budget, in parallel processes, each decode under a timeout; report every bad record.

    from medgrpo_ray.workflows.check_data.run import check_dataset, training_budget
    report = check_dataset("train.parquet", training_budget(cfg), timeout_s=60, workers=4, clean_out="clean.parquet")
    report.bad, report.by_reason, report.problems[0].to_json()

The records are streamed (`records_io.iter_dicts`: Parquet in batches) and at most `window` records are held
at once, so memory stays bounded for a large file. Each record is validated (`VideoRecord.from_dict`; a
problem is reported as `field:<field>`), then decoded by `clips.clip_for_record` exactly as rollout workers
and learners decode it (`decode:<what>`: missing file, empty file, corrupt, truncated, timeout, ...).

Decodes run in worker processes (no Ray). `video.py` abandons a hung decode thread after `timeout_s`, and such
a thread (e.g. blocked in `open()` on a named pipe) can keep its process from exiting, so a worker that timed
out is killed and replaced, a worker that does not answer within `hard_timeout_s` (a hang that holds the GIL) is
killed too, and at the end every worker is stopped, then terminated, then killed: the check always finishes in
bounded time. CLI: `launch/check_data.py`; docs: README "Check your data first".
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import signal
import stat
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from medgrpo_ray.data.records import RecordError, VideoRecord
from medgrpo_ray.data.records_io import PARQUET_SUFFIXES, field_reason, iter_dicts, write_json, write_parquet
from medgrpo_ray.data.video import FrameBudget

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


@dataclass
class Problem:
    """One bad record: where it is, why (`reason`, the key counted in `by_reason`) and the field or file at fault."""

    source: str
    index: int | None
    reason: str  # "field:metadata.fps", "decode:missing file", "decode:timeout", ...
    message: str
    uid: str | None = None  # known when the record itself is valid (decode problems)
    video_id: str | None = None
    field: str | None = None  # the record field at fault (field problems)
    file: str | None = None  # the video or frame file at fault (decode problems), resolved against video_root

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class CheckReport:
    source: str = ""
    video_root: str = ""
    budget: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 0.0
    workers: int = 0
    records: int = 0
    ok: int = 0
    bad: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    elapsed_s: float = 0.0
    clean_out: str | None = None
    clean_records: int | None = None

    def add(self, problem: Problem | None) -> None:
        self.records += 1
        if problem is None:
            self.ok += 1
            return
        self.bad += 1
        self.by_reason[problem.reason] = self.by_reason.get(problem.reason, 0) + 1
        self.problems.append(problem)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "video_root": self.video_root, "budget": self.budget, "timeout_s": self.timeout_s,
            "workers": self.workers,
            "totals": {"records": self.records, "ok": self.ok, "bad": self.bad},
            "by_reason": dict(sorted(self.by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
            "problems": [p.to_json() for p in self.problems],
            "elapsed_s": round(self.elapsed_s, 3),
            "clean_out": self.clean_out, "clean_records": self.clean_records,
        }

    def summary(self, max_lines: int = 10) -> str:
        rate = self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0
        lines = [f"{self.source}: {self.records} records, {self.ok} ok, {self.bad} bad "
                 f"({self.elapsed_s:.1f} s, {rate:.1f} records/s)"]
        lines += [f"  {reason}: {n}" for reason, n in self.to_json()["by_reason"].items()]
        for p in self.problems[:max_lines]:
            lines.append(f"  - {p.source}#{p.index} [{p.reason}] {p.field or p.file or ''}: {p.message}")
        if len(self.problems) > max_lines:
            lines.append(f"  ... {len(self.problems) - max_lines} more in the report")
        return "\n".join(lines)


# ---- one record's decode (runs in a worker process) -------------------------------------------------------------
def _regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _iso_bmff_truncated(path: str) -> bool:
    """True when `path` looks like an MP4/MOV (an `ftyp` box first) whose top-level boxes run past the end of the
    file: a cut-off download or copy rather than random bytes. Reads only the 8-16 byte box headers."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            pos, first = 0, True
            while pos + 8 <= size:
                f.seek(pos)
                head = f.read(16)
                box_size, kind = int.from_bytes(head[:4], "big"), head[4:8]
                if first and kind != b"ftyp":
                    return False
                first = False
                if box_size == 1 and len(head) >= 16:
                    box_size = int.from_bytes(head[8:16], "big")
                elif box_size == 0:  # the box runs to the end of the file
                    return False
                if box_size < 8:
                    return False
                if pos + box_size > size:
                    return True
                pos += box_size
            return pos != size and not first
    except OSError:
        return False


_REASONS = (  # (text in the VideoDecodeError message, reason)
    ("does not exist", "decode:missing file"),
    ("is empty (0 bytes)", "decode:empty file"),
    ("did not finish within", "decode:timeout"),
    ("(truncated?)", "decode:truncated"),
    ("cannot open video", "decode:corrupt"),
    ("has no decodable frames", "decode:corrupt"),
    ("empty time range", "decode:clip outside video"),
    ("cannot read a frame image", "decode:bad frame image"),
    ("differ in size", "decode:frame size mismatch"),
    ("frame list is empty", "decode:empty frame list"),
)


def classify(message: str, paths: list[str]) -> tuple[str, str | None]:
    """(reason, file at fault) for a decode failure message of `video.py`, given the record's resolved paths."""
    reason = next((r for text, r in _REASONS if text in message), "decode:error")
    if reason == "decode:timeout" and len(paths) > 1:
        # video.py's message names the frame list's first path; the one that hangs is usually not a regular file
        odd = next((p for p in paths if os.path.lexists(p) and not _regular_file(p)), None)
        if odd is not None:
            return reason, odd
    named = [p for p in paths if p and p in message]
    culprit = max(named, key=len) if named else (paths[0] if paths else None)
    if reason == "decode:corrupt" and culprit and len(paths) == 1 and _iso_bmff_truncated(culprit):
        reason = "decode:truncated"
    return reason, culprit


def decode_problem(record: VideoRecord, budget: FrameBudget, video_root: str = "", timeout_s: float = 60.0,
                   threads: int = 4) -> dict[str, Any] | None:
    """None if `record` decodes under `budget` as training decodes it, else {reason, file, message}."""
    from medgrpo_ray.data.clips import _resolve, clip_for_record
    from medgrpo_ray.data.video import VideoDecodeError

    paths = [_resolve(p, video_root) for p in ([record.video_path] if record.is_video_file else record.frame_paths)]
    try:
        clip = clip_for_record(record, budget, video_root=video_root, timeout_s=timeout_s, threads=threads)
        if clip.num_frames < 2 or clip.num_frames % 2 or clip.frames.ndim != 4:
            return {"reason": "decode:error", "file": paths[0] if paths else None,
                    "message": f"record {record.uid}: decoded to frames of shape {tuple(clip.frames.shape)}"}
        return None
    except VideoDecodeError as err:
        reason, culprit = classify(str(err), paths)
        return {"reason": reason, "file": culprit, "message": str(err)}
    except Exception as err:  # noqa: BLE001 - any failure of one record is that record's problem
        text = f"record {record.uid} ({record.source}#{record.index}): {type(err).__name__}: {err}"
        reason, culprit = classify(text, paths)
        return {"reason": reason, "file": culprit, "message": text}


def _worker_main(conn, budget: FrameBudget, video_root: str, timeout_s: float, threads: int, quiet: bool) -> None:
    """Decode records sent over `conn` until None; exits with os._exit so an abandoned decode thread (or the
    thread pool's exit hook joining it) can never keep the process alive."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
        if quiet:  # decord / FFmpeg print to the C stderr; the report carries the messages
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
        import decord  # noqa: F401 - imported before "ready" so a decode's time is not import time
        from PIL import Image  # noqa: F401
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize  # noqa: F401

        import medgrpo_ray.data.clips  # noqa: F401

        conn.send(("ready", os.getpid()))
        while True:
            msg = conn.recv()
            if msg is None:
                break
            seq, record = msg
            conn.send((seq, decode_problem(record, budget, video_root, timeout_s, threads)))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    except BaseException:  # noqa: BLE001 - report, then exit without running exit hooks
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stderr.flush()
        finally:
            os._exit(code)


# ---- the pool ---------------------------------------------------------------------------------------------------
# Imported once by the fork server, so a worker (and every replacement of a killed one) starts at once instead of
# re-importing transformers (several seconds) for video.py's resize.
_PRELOAD = ["medgrpo_ray.workflows.check_data.run", "medgrpo_ray.data.clips", "decord", "PIL.Image",
            "transformers.models.qwen2_vl.image_processing_qwen2_vl"]


def _context():
    """A fork server with the decode modules preloaded (never fork this process: it may hold threads from the
    tokenizer or tqdm); spawn where fork servers are not available."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return mp.get_context("spawn")


def start_workers_early() -> None:
    """Start the fork server now (it imports the decode modules in the background), e.g. while the caller loads
    the model's processor for the budget; a no-op where there is no fork server."""
    if _context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


@dataclass(eq=False)
class _Worker:
    proc: Any
    conn: Any
    ready: bool = False
    task: tuple[int, float] | None = None  # (seq, started at)


class DecodePool:
    """`n` decode processes, one record at a time each; a hung or dead worker is killed and replaced."""

    def __init__(self, n: int, budget: FrameBudget, video_root: str, timeout_s: float, threads: int = 4,
                 hard_timeout_s: float | None = None, quiet: bool = True) -> None:
        self.ctx = _context()
        self.args = (budget, video_root, float(timeout_s), int(threads), bool(quiet))
        self.hard_timeout_s = hard_timeout_s if hard_timeout_s is not None else 2 * float(timeout_s) + 15.0
        self.workers: list[_Worker] = []
        self.failed_starts = 0
        self.replaced = 0
        for _ in range(max(1, n)):
            self._spawn()

    def _spawn(self) -> None:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker_main, args=(child, *self.args), daemon=True, name="medgrpo-check")
        proc.start()
        child.close()
        self.workers.append(_Worker(proc, parent))

    def _retire(self, w: _Worker, replace: bool = True) -> None:
        self.workers.remove(w)
        _kill(w)
        if replace:
            self.replaced += 1
            self._spawn()

    def idle(self) -> int:
        return sum(w.ready and w.task is None for w in self.workers)

    def busy(self) -> int:
        return sum(w.task is not None for w in self.workers)

    def submit(self, seq: int, record: VideoRecord) -> None:
        w = next(w for w in self.workers if w.ready and w.task is None)
        w.conn.send((seq, record))
        w.task = (seq, time.monotonic())

    def collect(self, wait_s: float) -> list[tuple[int, dict[str, Any] | None]]:
        """Results that arrive within `wait_s` (earlier if one does): (seq, problem or None)."""
        now = time.monotonic()
        deadlines = [w.task[1] + self.hard_timeout_s - now for w in self.workers if w.task is not None]
        wait_s = max(0.0, min([wait_s, *deadlines]))
        handles = {}
        for w in self.workers:
            handles[w.conn] = w
            handles[w.proc.sentinel] = w
        ready = mpc.wait(list(handles), timeout=wait_s)
        out: list[tuple[int, dict[str, Any] | None]] = []
        seen = set()
        for h in ready:
            w = handles[h]
            if id(w) in seen:
                continue
            seen.add(id(w))
            msg = None
            try:
                if w.conn.poll():
                    msg = w.conn.recv()
            except (EOFError, OSError):
                msg = None
            if msg is None:  # the process died (crash in native code, killed, out of memory)
                self._died(w, out)
            elif msg[0] == "ready":
                w.ready, self.failed_starts = True, 0
            else:
                seq, problem = msg
                w.task = None
                out.append((seq, problem))
                if problem is not None and problem["reason"] == "decode:timeout":
                    self._retire(w)  # its abandoned thread may stay blocked: start afresh
        now = time.monotonic()
        for w in list(self.workers):
            if w.task is not None and now - w.task[1] > self.hard_timeout_s:
                seq = w.task[0]
                out.append((seq, {"reason": "decode:timeout", "file": None, "pool": True,
                                  "message": f"the decode did not return within {self.hard_timeout_s:.0f} s; "
                                             "its worker process was killed"}))
                w.task = None
                self._retire(w)
        return out

    def _died(self, w: _Worker, out: list) -> None:
        w.proc.join(0.1)
        code = w.proc.exitcode
        if w.task is not None:
            out.append((w.task[0], {"reason": "decode:worker died", "file": None, "pool": True,
                                    "message": f"the decode worker process died (exit code {code}) on this record"}))
            w.task = None
        elif not w.ready:
            self.failed_starts += 1
            if self.failed_starts > 3 * max(1, len(self.workers)):
                raise RuntimeError(f"decode worker processes keep dying at start (exit code {code}); "
                                   "run with --decoder-log to see why")
        self._retire(w)

    def close(self, grace_s: float = 2.0) -> None:
        """Stop every worker in bounded time: ask idle ones to exit, then terminate, then kill."""
        for w in self.workers:
            if w.ready and w.task is None:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        end = time.monotonic() + grace_s
        for w in self.workers:
            if w.task is None:
                w.proc.join(max(0.0, end - time.monotonic()))
        for w in self.workers:
            _kill(w)
        self.workers = []


def _kill(w: _Worker) -> None:
    if w.proc.is_alive():
        w.proc.terminate()
        w.proc.join(1.0)
    if w.proc.is_alive():
        w.proc.kill()
        w.proc.join(1.0)
    try:
        w.conn.close()
    except OSError:
        pass


# ---- the check ----------------------------------------------------------------------------------------------------
def _field_problem(err: RecordError, d: Any) -> Problem:
    meta = d.get("metadata") if isinstance(d, Mapping) else None
    video_id = meta.get("video_id") if isinstance(meta, Mapping) else None
    return Problem(source=err.source, index=err.index, reason=f"field:{field_reason(err.field)}", message=str(err),
                   video_id=None if video_id is None else str(video_id), field=err.field or "<record>")


def _decode_problem(record: VideoRecord, found: dict[str, Any], video_root: str) -> Problem:
    message, culprit = found["message"], found.get("file")
    if found.get("pool"):  # the pool's own verdict (worker killed or dead): name the record and guess the file
        from medgrpo_ray.data.clips import _resolve

        paths = [_resolve(p, video_root) for p in ([record.video_path] if record.is_video_file else record.frame_paths)]
        message = f"record {record.uid} ({record.source}#{record.index}): {message}"
        culprit = classify("did not finish within" if found["reason"] == "decode:timeout" else "", paths)[1]
    video_id = record.metadata.get("video_id")
    return Problem(source=record.source, index=record.index, reason=found["reason"], message=message,
                   uid=record.uid, video_id=None if video_id is None else str(video_id), file=culprit)


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


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
    dicts = iter_dicts(path, batch_size=batch_size)
    root = video_root or str(path.expanduser().resolve().parent)
    n_workers = max(1, int(workers or default_workers()))
    window = max(n_workers, int(window or 16 * n_workers))
    report.source, report.video_root, report.timeout_s = str(path), root, float(timeout_s)
    report.workers, report.budget = n_workers, dataclasses.asdict(budget)
    return _checked(dicts, path, budget, report, root, timeout_s, n_workers, threads, window, progress, decode,
                    hard_timeout_s, quiet)


def _checked(dicts, path, budget, report, root, timeout_s, n_workers, threads, window, progress, decode,
             hard_timeout_s, quiet) -> Iterator[VideoRecord]:
    from tqdm import tqdm

    total = None
    if path.suffix.lower() in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        total = pq.ParquetFile(path).metadata.num_rows
    bar = tqdm(total=total, unit="rec", desc="check", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    t0 = time.monotonic()
    pending: dict[int, list] = {}  # seq -> [record or None, problem, done]
    waiting: deque[int] = deque()
    pool: DecodePool | None = None
    seq_in = seq_out = 0
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < window:
                try:
                    index, d = next(dicts)
                except StopIteration:
                    exhausted = True
                    break
                try:
                    if isinstance(d, RecordError):
                        raise d
                    record = VideoRecord.from_dict(d, source=str(path), index=index)
                    pending[seq_in] = [record, None, not decode]
                    if decode:
                        waiting.append(seq_in)
                except RecordError as err:
                    pending[seq_in] = [None, _field_problem(err, d), True]
                seq_in += 1
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
    (.json, .jsonl or .parquet, by its suffix, via records_io's writers, streaming)."""
    if clean_out is not None and Path(clean_out).suffix.lower() not in CLEAN_SUFFIXES:
        raise ValueError(f"--clean-out {clean_out}: unknown suffix; expected .json, .jsonl or .parquet")
    report = CheckReport()
    good = iter_checked(path, budget, report, batch_size=batch_size, **kw)
    if clean_out is None:
        for _ in good:
            pass
        return report
    out = Path(clean_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in PARQUET_SUFFIXES:
        report.clean_records = write_parquet(good, out, batch_size=batch_size)
    else:
        report.clean_records = write_json(good, out)
    report.clean_out = str(out)
    return report


def write_report(report: CheckReport, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
