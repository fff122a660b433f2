"""Greedy inference over a whole split with a pool of rollout workers: resumable, bad records reported, never fatal.

    python launch/infer.py CHECKPOINT_OR_MODEL --records test.json --out DIR [--config PRESET.yaml] [key=value ...]

Records are streamed from the file (`records_io.iter_dicts`) in chunks of `chunk_size` parseable records to the
rollout workers (the same `RolloutWorker` actors as training, built as `actor_groups.py` builds the rollout pool),
at most `in_flight` calls per worker. Each finished chunk is appended to `DIR/predictions.jsonl`, one line per
record, then flushed and fsynced, so a SIGKILL loses at most the chunks in flight. A restart with the same `--out`
reads that file, drops a torn last line (the file is cut back to its last complete line), skips every position
already there (predictions and reported failures alike) and goes on: each record is answered exactly once.

A record that cannot be parsed is answered by the driver itself (prediction "", reason `record:<field>`); a record
whose video fails to decode, whose prompt is too long or on which the engine fails comes back from its worker
as a failed group (`RolloutGroup.error` / `.reason`); a record whose worker dies twice is reported as
`worker_died`. None of them stops the run; all are listed in `DIR/bad_records.jsonl`.

At the end (from the records file and the predictions file, so the same after any number of restarts):
- `DIR/results.json`: merged results (`VideoRecord.to_eval_dict`) keyed by input position, for every record that
  parses (a malformed record has no usable ground truth or fps; its key is absent, it is in bad_records.jsonl);
- `DIR/submission.json`: the leaderboard submission, one row per input record in input order;
- `DIR/bad_records.jsonl`; with ground truth in the records, `DIR/eval.json` and the ten-number table.

The pure parts (resume reading, ids, submission and merge building) are plain functions, testable without Ray.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

log = logging.getLogger("medgrpo_ray.workflows.inference.run")

PREDICTIONS = "predictions.jsonl"
RESULTS = "results.json"
SUBMISSION = "submission.json"
BAD_RECORDS = "bad_records.jsonl"
EVAL = "eval.json"
RUN_INFO = "infer_run.json"


# ---- records ------------------------------------------------------------------------------------------------
@dataclass
class Parsed:
    """One input position: the raw item of the file, the parsed record (None if malformed) and its error."""

    position: int
    index: int | None  # index in the source file (iter_dicts)
    raw: Any  # the published dict, or whatever the file held there (a RecordError for an unreadable line)
    record: Any = None  # VideoRecord, or None
    error: Exception | None = None

    @property
    def uid(self) -> str | None:
        return self.record.uid if self.record is not None else None


def iter_parsed(path: str | os.PathLike, batch_size: int = 256) -> Iterator[Parsed]:
    """Every item of a records file in input order, parsed; a malformed one carries its RecordError."""
    from medgrpo_ray.data.records import RecordError, VideoRecord
    from medgrpo_ray.data.records_io import iter_dicts

    for position, (index, d) in enumerate(iter_dicts(path, batch_size=batch_size)):
        if isinstance(d, RecordError):
            yield Parsed(position, index, None, error=d)
            continue
        try:
            yield Parsed(position, index, d, record=VideoRecord.from_dict(d, source=str(path), index=index))
        except (RecordError, ValueError) as err:
            yield Parsed(position, index, d, error=err)


def count_records(path: str | os.PathLike) -> int:
    """Items in a records file (Parquet: from its footer; JSON / JSON Lines: by streaming them)."""
    from medgrpo_ray.data.records_io import PARQUET_SUFFIXES, iter_dicts

    if Path(path).suffix.lower() in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return sum(1 for _ in iter_dicts(path))


def record_reason(err: Exception) -> str:
    """`record:<field>` (indices removed) for a record that does not parse."""
    from medgrpo_ray.data.records_io import field_reason

    return "record:" + field_reason(getattr(err, "field", "") or "<record>")


# ---- submission ids -----------------------------------------------------------------------------------------
def _id_part(value: Any) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value)


def submission_id(raw: Any) -> str:
    """`<video_id>&&<start>&&<end>&&<fps>` from `metadata` (video_id, input_video_start_frame,
    input_video_end_frame, fps) as the record spells them (fps "0.5" stays "0.5"); a missing field is ""."""
    meta = raw.get("metadata") if isinstance(raw, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    keys = ("video_id", "input_video_start_frame", "input_video_end_frame", "fps")
    return "&&".join(_id_part(meta.get(k)) for k in keys)


def submission_row(raw: Any, prediction: str) -> dict:
    qa_type = raw.get("qa_type") if isinstance(raw, Mapping) else None
    return {"id": submission_id(raw), "qa_type": qa_type if isinstance(qa_type, str) else "",
            "prediction": prediction or ""}


# ---- the predictions file (resume state) --------------------------------------------------------------------
def result_row(position: int, uid: str | None, prediction: str = "", error: str | None = None,
               reason: str = "") -> dict:
    """One line of predictions.jsonl: a prediction, or the error (and reason) that stands for it."""
    return {"position": position, "uid": uid, "prediction": prediction or "", "error": error, "reason": reason}


@dataclass
class ResumeState:
    rows: dict[int, dict] = field(default_factory=dict)  # position -> row (first occurrence kept)
    valid_bytes: int = 0  # length of the file up to the end of its last complete line
    torn: bool = False  # the file ended in an incomplete line (killed mid-write)
    invalid_lines: int = 0  # complete lines that were not a row (should never happen; skipped)
    duplicates: int = 0  # positions seen more than once (kept the first; should never happen)


def read_results(path: str | os.PathLike) -> ResumeState:
    """What a predictions file holds. The last line counts only if it ends with a newline and parses: a line
    torn by a kill is left out (`torn`, `valid_bytes` = where it starts) and its record is redone."""
    state = ResumeState()
    p = Path(path)
    if not p.exists():
        return state
    data = p.read_bytes()
    end = data.rfind(b"\n") + 1  # everything after the last newline is an incomplete line
    state.torn = end < len(data)
    state.valid_bytes = end
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            position = row["position"]
            if not isinstance(row, dict) or not isinstance(position, int) or isinstance(position, bool):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            state.invalid_lines += 1
            continue
        if position in state.rows:
            state.duplicates += 1
            continue
        state.rows[position] = row
    return state


def repair_results(path: str | os.PathLike) -> ResumeState:
    """`read_results`, then cut a torn last line off the file so that appended lines start on a fresh line."""
    state = read_results(path)
    if state.torn:
        with open(path, "r+b") as f:
            f.truncate(state.valid_bytes)
            f.flush()
            os.fsync(f.fileno())
    return state


class ResultsLog:
    """Append-only predictions.jsonl: `write(rows)` appends the rows of one chunk, flushes and fsyncs."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.f = open(self.path, "a", encoding="utf-8")

    def write(self, rows: Iterable[dict]) -> None:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        if text:
            self.f.write(text)
            self.f.flush()
            os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


# ---- final outputs (pure over the records and the rows) -----------------------------------------------------
def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class Outputs:
    submission: list[dict]
    merged: dict[str, dict]
    bad: list[dict]
    has_ground_truth: bool
    missing: list[int]  # positions without a row (must be empty after a complete run)


def build_outputs(parsed: Iterable[Parsed], rows: Mapping[int, dict], source: str = "") -> Outputs:
    """Submission rows (one per input item, input order), the merged results of every parseable record keyed by
    position, and the bad-record list, from the parsed input and the predictions rows by position."""
    submission, merged, bad, missing, gt = [], {}, [], [], False
    for p in parsed:
        row = rows.get(p.position)
        if row is None:
            missing.append(p.position)
            row = result_row(p.position, p.uid, error="no prediction", reason="missing")
        prediction = row.get("prediction") or ""
        submission.append(submission_row(p.raw, prediction))
        if p.record is not None:
            merged[str(p.position)] = p.record.to_eval_dict(prediction=prediction)
            gt = gt or p.record.answer is not None
        if row.get("error") is not None:
            bad.append({"position": p.position, "index": p.index, "source": source, "uid": p.uid,
                        "reason": row.get("reason") or "error", "message": row["error"]})
    return Outputs(submission, merged, bad, gt, missing)


def write_outputs(out_dir: str | os.PathLike, outputs: Outputs) -> dict[str, Path]:
    """results.json, submission.json and bad_records.jsonl, each written to a temp file and renamed."""
    out = Path(out_dir)
    paths = {"results": out / RESULTS, "submission": out / SUBMISSION, "bad_records": out / BAD_RECORDS}

    def dump_dict(f) -> None:  # one record per line, still one JSON object
        f.write("{")
        for i, (k, v) in enumerate(outputs.merged.items()):
            f.write(("\n" if i == 0 else ",\n") + json.dumps(k) + ": " + json.dumps(v, ensure_ascii=False))
        f.write("\n}\n")

    def dump_list(f) -> None:
        f.write("[")
        for i, r in enumerate(outputs.submission):
            f.write(("\n" if i == 0 else ",\n") + json.dumps(r, ensure_ascii=False))
        f.write("\n]\n")

    _atomic_write(paths["results"], dump_dict)
    _atomic_write(paths["submission"], dump_list)
    _atomic_write(paths["bad_records"], lambda f: f.writelines(json.dumps(b, ensure_ascii=False) + "\n" for b in outputs.bad))
    return paths


# ---- model path ---------------------------------------------------------------------------------------------
def resolve_model(arg: str, cache_dir: str = "~/.cache/medgrpo_ray", tiny_seed: int = 0) -> str:
    """An HF directory (config.json), a training checkpoint directory (its `hf/` export), a checkpoint root or
    run directory (the checkpoint `latest` names), else whatever `resolve_model_path` accepts (tiny:..., hub id)."""
    from medgrpo_ray.checkpoint.local import find_latest
    from medgrpo_ray.models.loading import resolve_model_path

    p = Path(arg).expanduser()
    if p.is_dir() and not (p / "config.json").is_file():
        if (p / "hf" / "config.json").is_file():
            return str(p / "hf")
        for root in (p, p / "checkpoints"):
            latest = find_latest(root) if root.is_dir() else None
            if latest is not None:
                if (latest / "hf" / "config.json").is_file():
                    return str(latest / "hf")
                raise ValueError(f"{arg}: latest checkpoint {latest} has no hf/ export (checkpoint.export_hf was "
                                 "false); export it or pass an HF directory")
        raise ValueError(f"{arg}: neither an HF model directory (config.json) nor a checkpoint directory (hf/)")
    return resolve_model_path(arg, cache_dir, tiny_seed)


# ---- streaming over the pool --------------------------------------------------------------------------------
def _is_actor_death(err: BaseException) -> bool:
    import ray

    return isinstance(err, (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                            ray.exceptions.ActorUnavailableError))


def stream_chunks(workers: list, chunks: Iterator[list], on_done: Callable[[list, list], None],
                  on_lost: Callable[[Any, str], None], in_flight: int, timeout_s: float,
                  method: str = "rollout") -> dict:
    """Send chunks (lists of RolloutItem) to `workers` as they free up, at most `in_flight` calls per worker, and
    call `on_done(chunk, groups)` as each finishes. The chunk iterator is advanced only when a worker has room,
    so no more than `in_flight` chunks per worker are ever read ahead.

    When an actor dies, which of its queued calls killed it is not known (a call that finished may lose its reply
    when the next one crashes the process at once), so every call it had outstanding is re-sent *isolated*: alone
    on an idle worker, nothing queued behind it. An isolated chunk that kills its worker is split into single
    records, each isolated; a single record that kills its worker in isolation is given up
    (`on_lost(item, message)`). So one record that crashes its worker costs only itself, never a neighbour, and
    never stops the run. A dead worker is probed with `ready` and used again once Ray has restarted it. No call
    finishing within `timeout_s` raises TimeoutError; no live worker left with work remaining raises RuntimeError."""
    import ray

    pending: dict = {}  # ref -> (chunk, worker, attempt); attempt >= 1: isolated
    queued: list[list] = [[] for _ in workers]  # each worker's outstanding refs
    dead: set = set()  # outstanding refs of a dead incarnation, not yet reported
    probes: dict = {}  # ready() ref of a dead worker -> worker
    alive = set(range(len(workers)))
    retry: deque = deque()  # (chunk, attempt) to re-send isolated, first in line
    exhausted = False
    stats = {"calls": 0, "worker_deaths": 0, "resent": 0, "lost": 0}

    def submit(w: int, chunk: list, attempt: int) -> None:
        ref = getattr(workers[w], method).remote(chunk)
        pending[ref] = (chunk, w, attempt)
        queued[w].append(ref)
        stats["calls"] += 1

    while True:
        while retry:  # isolated re-sends take idle workers first; no new chunk is read while any waits
            idle = [w for w in sorted(alive) if not queued[w]]
            if not idle:
                break
            submit(idle[0], *retry.popleft())
        while not retry and not exhausted:
            free = [w for w in sorted(alive) if len(queued[w]) < in_flight
                    and not any(pending[r][2] for r in queued[w])]  # nothing behind an isolated call
            if not free:
                break
            chunk = next(chunks, None)
            if chunk is None:
                exhausted = True
                break
            submit(min(free, key=lambda i: len(queued[i])), chunk, 0)
        if not pending:
            if retry and not probes:
                raise RuntimeError(f"every rollout worker died; {sum(len(c) for c, _ in retry)} record(s) left")
            if not retry and exhausted:
                return stats
        done, _ = ray.wait(list(pending) + list(probes), num_returns=1, timeout=timeout_s)
        if not done:
            raise TimeoutError(f"no rollout call finished within {timeout_s:.0f} s (ray.get_timeout_s); "
                               f"{len(pending)} call(s) in flight")
        ref = done[0]
        if ref in probes:
            w = probes.pop(ref)
            try:
                ray.get(ref)
                alive.add(w)
                log.warning("rollout worker %d is back", w)
            except Exception as err:
                log.warning("rollout worker %d is gone for good (%s)", w, type(err).__name__)
            continue
        chunk, w, attempt = pending.pop(ref)
        queued[w].remove(ref)
        try:
            groups = ray.get(ref)
        except Exception as err:
            if not _is_actor_death(err):
                raise
            if ref in dead:
                dead.discard(ref)
            else:  # the first call of this incarnation to report its death
                stats["worker_deaths"] += 1
                dead.update(queued[w])
                alive.discard(w)
                probes[workers[w].ready.remote()] = w
                log.warning("rollout worker %d died (%s: %s); re-sending its %d outstanding call(s) one at a time",
                            w, type(err).__name__, str(err).splitlines()[0][:200] if str(err) else "", len(queued[w]) + 1)
            if attempt == 0:
                retry.append((chunk, 1))
                stats["resent"] += 1
            elif len(chunk) > 1:
                log.warning("an isolated chunk killed its worker; retrying its %d record(s) one by one", len(chunk))
                retry.extendleft(([it], 2) for it in reversed(chunk))
            else:
                stats["lost"] += 1
                on_lost(chunk[0], f"the rollout worker died running this record alone ({type(err).__name__}: "
                                   f"{str(err).splitlines()[0][:300] if str(err) else ''})")
            continue
        dead.discard(ref)  # finished before its actor died
        on_done(chunk, groups)


# ---- the driver ---------------------------------------------------------------------------------------------
@dataclass
class InferSettings:
    records: str
    out_dir: str
    model: str  # CHECKPOINT_OR_MODEL as given (resolved by `resolve_model`)
    chunk_size: int = 8
    in_flight: int = 2  # calls queued per worker (2: one runs while the next is already there)
    video_root: str = ""
    evaluate: bool = True


def _check_run_info(out: Path, info: dict) -> None:
    path = out / RUN_INFO
    if path.exists():
        old = json.loads(path.read_text())
        for key in ("records", "model"):
            if old.get(key) != info[key]:
                raise ValueError(f"{out} holds predictions for {key}={old.get(key)!r}, not {info[key]!r}; "
                                 "use another --out (or remove it) to start over")
        return
    _atomic_write(path, lambda f: f.write(json.dumps(info, indent=1) + "\n"))


def run_inference(cfg, s: InferSettings) -> dict:
    """Generate greedy answers for every record of `s.records` into `s.out_dir` (resuming), write the outputs,
    evaluate when the records carry ground truth; returns a summary."""
    from tqdm import tqdm

    from medgrpo_ray.rollout.types import RolloutItem

    records = str(Path(s.records).expanduser().resolve())
    if not Path(records).is_file():
        raise FileNotFoundError(f"--records {s.records}: no such file")
    out = Path(s.out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    root = s.video_root or cfg.data.video_root or str(Path(records).parent)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, video_root=root))
    model_dir = resolve_model(s.model, cfg.model.cache_dir, cfg.model.tiny_seed)
    _check_run_info(out, {"records": records, "model": model_dir})  # resolved: a moved `latest` is another model

    state = repair_results(out / PREDICTIONS)
    if state.torn:
        log.warning("%s: dropped a torn last line (its record is redone)", out / PREDICTIONS)
    if state.invalid_lines:
        log.warning("%s: %d line(s) are not result rows; ignored", out / PREDICTIONS, state.invalid_lines)
    total = count_records(records)
    beyond = [p for p in state.rows if p >= total]
    if beyond:
        raise ValueError(f"{out / PREDICTIONS} has positions up to {max(beyond)} but {records} holds {total} records; "
                         "it was written for another records file: use another --out")
    done = set(state.rows)
    print(f"inference: {total} records in {records}; {len(done)} already done in {out / PREDICTIONS}"
          + (", resuming" if done else ""), flush=True)

    t0 = time.perf_counter()
    counts = Counter()
    bar = None  # started once the workers are ready, so that its rate is the generation rate
    ready_at: list[float] = []

    def ready() -> None:
        nonlocal bar
        ready_at.append(time.perf_counter())
        bar = tqdm(total=total, initial=len(done), unit="rec", desc="infer", dynamic_ncols=True,
                   disable=not cfg.logging.progress_bar)

    results = ResultsLog(out / PREDICTIONS)

    def finished(rows: list[dict]) -> None:
        results.write(rows)
        for r in rows:
            counts["bad" if r["error"] is not None else "ok"] += 1
        if bar is not None:
            bar.update(len(rows))
            bar.set_postfix(bad=counts["bad"], refresh=False)

    if done:  # before any cluster starts: the done positions must be the records of this file
        for p in iter_parsed(records):
            old = state.rows[p.position].get("uid") if p.position in done else p.uid
            if old != p.uid:
                raise ValueError(f"{out / PREDICTIONS}: position {p.position} was answered for record {old}, but "
                                 f"{records} has {p.uid} there; it was written for another file: use another --out")
    uids: dict[int, str | None] = {}  # in-flight positions -> uid

    def chunks() -> Iterator[list]:
        chunk: list = []
        for p in iter_parsed(records):
            if p.position in done:
                continue
            if p.record is None:  # answered here: the submission still gets its row (prediction "")
                finished([result_row(p.position, None, error=str(p.error), reason=record_reason(p.error))])
                continue
            uids[p.position] = p.uid
            chunk.append(RolloutItem(group_id=p.position, record=p.raw, greedy=True))
            if len(chunk) == s.chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def on_done(chunk: list, groups: list) -> None:
        by_id = {g.group_id: g for g in groups}
        rows = []
        for it in chunk:
            g = by_id.get(it.group_id)
            uid = uids.pop(it.group_id, None)
            if g is None:
                rows.append(result_row(it.group_id, uid, error="the worker returned no result", reason="engine"))
            elif g.error is not None:
                rows.append(result_row(it.group_id, uid, error=g.error, reason=g.reason or "error"))
            else:
                rows.append(result_row(it.group_id, uid, prediction=g.completions[0].text if g.completions else ""))
        finished(rows)

    def on_lost(item, message: str) -> None:
        finished([result_row(item.group_id, uids.pop(item.group_id, None), error=message, reason="worker_died")])

    stats: dict = {}
    try:
        if len(done) < total:
            stats = _generate(cfg, model_dir, chunks(), on_done, on_lost, s.in_flight, ready)
    finally:
        results.close()
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - t0
    generating = time.perf_counter() - ready_at[0] if ready_at else 0.0

    final = read_results(out / PREDICTIONS)
    outputs = build_outputs(iter_parsed(records), final.rows, source=records)
    if outputs.missing:
        raise RuntimeError(f"{len(outputs.missing)} record(s) have no prediction after the run (first positions "
                           f"{outputs.missing[:5]}); rerun with the same --out to finish them")
    paths = write_outputs(out, outputs)
    reasons = Counter(b["reason"] for b in outputs.bad)
    n_now = counts["ok"] + counts["bad"]
    summary = {"records": total, "done_before": len(done), "done_now": n_now, "bad": len(outputs.bad),
               "bad_by_reason": dict(reasons), "seconds": round(elapsed, 1),
               "records_per_s": round(n_now / generating, 3) if generating > 0 else None,  # after the workers are up
               **stats, **{k: str(v) for k, v in paths.items()}}
    print(f"wrote {paths['submission']} ({len(outputs.submission)} rows), {paths['results']} "
          f"({len(outputs.merged)} records), {paths['bad_records']} ({len(outputs.bad)} bad"
          + (": " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()) if reasons else "") + ")", flush=True)
    if outputs.has_ground_truth and s.evaluate:
        from medgrpo_ray.evaluation import evaluate, to_markdown

        report = evaluate(outputs.merged)
        payload = {**report.to_json(), "input": str(paths["results"]), "bad_records": len(outputs.bad)}
        _atomic_write(out / EVAL, lambda f: f.write(json.dumps(payload, indent=2) + "\n"))
        print(to_markdown(report), end="", flush=True)
        print(f"wrote {out / EVAL}", flush=True)
        summary["eval"] = str(out / EVAL)
        summary["leaderboard_row"] = report.row(3)
    return summary


def _generate(cfg, model_dir: str, chunks: Iterator[list], on_done, on_lost, in_flight: int,
              on_ready: Callable[[], None] = lambda: None) -> dict:
    """The rollout pool on Ray (as `actor_groups.build_actor_groups` builds it), streaming the chunks through it;
    Ray is shut down at the end (a locally started cluster with it)."""
    import ray

    from actors.rollout_worker import RolloutWorker
    from medgrpo_ray.driver.cluster import WorkerPool, actor_options, init_ray, wait_ready

    r, ray_cfg = cfg.rollout, cfg.ray
    run = f"infer-{uuid.uuid4().hex[:8]}"  # unique actor names on a shared cluster
    print(f"ray: {init_ray(cfg)}; {r.num_workers} rollout worker(s), backend {r.backend}, model {model_dir}", flush=True)
    try:
        pool = WorkerPool(
            lambda i: RolloutWorker.options(**actor_options(cfg, f"{run}-rollout-{i}", num_cpus=r.num_cpus_per_worker,
                                            num_gpus=r.num_gpus_per_worker, max_restarts=ray_cfg.max_restarts,
                                            max_task_retries=0)).remote(cfg, model_dir, f"rollout-{i}"),
            r.num_workers, "rollout", ray_cfg.get_timeout_s)
        wait_ready([w.ready.remote() for w in pool.workers], ray_cfg.init_timeout_s, "rollout workers")
        on_ready()
        return stream_chunks(pool.workers, chunks, on_done, on_lost, max(1, in_flight), ray_cfg.get_timeout_s)
    finally:
        ray.shutdown()
