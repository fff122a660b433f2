"""The data check's decode processes: each decodes one record at a time as training would (no Ray).

`video.py` abandons a hung decode thread after `timeout_s`, and such a thread (e.g. blocked in `open()` on a named
pipe) can keep its process from exiting, so a worker that timed out is killed and replaced, a worker that does not
answer within `hard_timeout_s` (a hang that holds the GIL) is killed too, and `close` stops, then terminates, then
kills every worker: the check always finishes in bounded time. A result is None (the record decodes) or a dict
{reason, file, message}; `"pool": True` marks the pool's own verdict (worker killed or dead), which names no file.
"""
from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from medgrpo_ray.data import decode_errors as why
from medgrpo_ray.data.records import VideoRecord
from medgrpo_ray.data.video import FrameBudget

DECODE = "decode:"  # the report's prefix of a decode reason: "decode:" + the decoder's reason code
TIMEOUT, ERROR, WORKER_DIED = DECODE + why.TIMEOUT, DECODE + why.ERROR, DECODE + "worker died"


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def record_paths(record: VideoRecord, video_root: str) -> list[str]:
    """The record's video file or frame paths, resolved against `video_root` as the decoder resolves them."""
    from medgrpo_ray.data.clips import _resolve

    return [_resolve(p, video_root) for p in ([record.video_path] if record.is_video_file else record.frame_paths)]


# ---- one record's decode (runs in a worker process) -------------------------------------------------------------
def decode_problem(record: VideoRecord, budget: FrameBudget, video_root: str = "", timeout_s: float = 60.0,
                   threads: int = 4) -> dict[str, Any] | None:
    """None if `record` decodes under `budget` as training decodes it, else {reason, file, message}: the reason
    and file are the ones the decoder set on its VideoDecodeError (`decode:error` and the record's first file
    for any other failure)."""
    from medgrpo_ray.data.clips import clip_for_record
    from medgrpo_ray.data.video import VideoDecodeError

    paths = record_paths(record, video_root)
    first = paths[0] if paths else None
    try:
        clip = clip_for_record(record, budget, video_root=video_root, timeout_s=timeout_s, threads=threads)
        if clip.num_frames < 2 or clip.num_frames % 2 or clip.frames.ndim != 4:
            return {"reason": ERROR, "file": first,
                    "message": f"record {record.uid}: decoded to frames of shape {tuple(clip.frames.shape)}"}
        return None
    except VideoDecodeError as err:
        return {"reason": DECODE + err.reason, "file": err.path if err.path is not None else first,
                "message": str(err)}
    except Exception as err:  # noqa: BLE001 - any failure of one record is that record's problem
        text = f"record {record.uid} ({record.source}#{record.index}): {type(err).__name__}: {err}"
        return {"reason": ERROR, "file": first, "message": text}


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
_PRELOAD = ["medgrpo_ray.workflows.check_data.pool", "medgrpo_ray.data.clips", "decord", "PIL.Image",
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
                if problem is not None and problem["reason"] == TIMEOUT:
                    self._retire(w)  # its abandoned thread may stay blocked: start afresh
        now = time.monotonic()
        for w in list(self.workers):
            if w.task is not None and now - w.task[1] > self.hard_timeout_s:
                seq = w.task[0]
                out.append((seq, {"reason": TIMEOUT, "file": None, "pool": True,
                                  "message": f"the decode did not return within {self.hard_timeout_s:.0f} s; "
                                             "its worker process was killed"}))
                w.task = None
                self._retire(w)
        return out

    def _died(self, w: _Worker, out: list) -> None:
        w.proc.join(0.1)
        code = w.proc.exitcode
        if w.task is not None:
            out.append((w.task[0], {"reason": WORKER_DIED, "file": None, "pool": True,
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
