"""Greedy inference over a whole split with a pool of rollout workers: resumable, bad records reported, never fatal.

    python launch/infer.py CHECKPOINT_OR_MODEL --records test.json --out DIR [--config PRESET.yaml] [key=value ...]

Records are streamed from the file (`records_io.iter_parsed`) in chunks of `chunk_size` parseable records to the
rollout workers (the same `RolloutWorker` actors as training, `actor_groups.build_rollout_pool`), at most
`in_flight` calls per worker (`cluster.stream_chunks`). Each finished chunk is appended to `DIR/predictions.jsonl`
(results_log.py), so a SIGKILL loses at most the chunks in flight. A restart with the same `--out` reads that
file, drops a torn last line, skips every position already there (predictions and reported failures alike) and
goes on: each record is answered exactly once.

A record that cannot be parsed is answered by the driver itself (prediction "", reason `record:<field>`); a record
whose video fails to decode, whose prompt is too long or on which the engine fails comes back from its worker
as a failed group (`RolloutGroup.error` / `.reason`); a record whose worker dies twice is reported as
`worker_died`. None of them stops the run; all are listed in `DIR/bad_records.jsonl`.

At the end the final files (results.json, submission.json, bad_records.jsonl, eval.json: outputs.py) are rebuilt
from the records file and the predictions file, so they are the same after any number of restarts.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from medgrpo_ray.data.records_io import PARQUET_SUFFIXES, field_reason, iter_dicts, iter_parsed
from medgrpo_ray.io.atomic import atomic_write_text
from medgrpo_ray.models.loading import resolve_model
from medgrpo_ray.workflows.inference.outputs import build_outputs, write_eval, write_outputs
from medgrpo_ray.workflows.inference.results_log import (PREDICTIONS, ResultsLog, ResumeState, read_results,
                                                         repair_results, result_row)

log = logging.getLogger(__name__)

RUN_INFO = "infer_run.json"


def count_records(path: str | os.PathLike) -> int:
    """Items in a records file (Parquet: from its footer; JSON / JSON Lines: by streaming them)."""
    if Path(path).suffix.lower() in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return sum(1 for _ in iter_dicts(path))


def record_reason(err: Exception) -> str:
    """`record:<field>` (indices removed) for a record that does not parse."""
    return "record:" + field_reason(getattr(err, "field", "") or "<record>")


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
    atomic_write_text(path, json.dumps(info, indent=1) + "\n")


def _resume(pred: Path, records: str) -> tuple[ResumeState, int]:
    """predictions.jsonl read back (a torn last line cut off) and the number of records, after checking that the
    file was written for these records (positions in range, each done position answered for the record that is
    there now): a restart with another records file is refused before any cluster starts."""
    state = repair_results(pred)
    if state.torn:
        log.warning("%s: dropped a torn last line (its record is redone)", pred)
    if state.invalid_lines:
        log.warning("%s: %d line(s) are not result rows; ignored", pred, state.invalid_lines)
    total = count_records(records)
    beyond = [p for p in state.rows if p >= total]
    if beyond:
        raise ValueError(f"{pred} has positions up to {max(beyond)} but {records} holds {total} records; "
                         "it was written for another records file: use another --out")
    if state.rows:
        for p in iter_parsed(records):
            old = state.rows[p.position].get("uid") if p.position in state.rows else p.uid
            if old != p.uid:
                raise ValueError(f"{pred}: position {p.position} was answered for record {old}, but "
                                 f"{records} has {p.uid} there; it was written for another file: use another --out")
    return state, total


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

    state, total = _resume(out / PREDICTIONS, records)
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
        from medgrpo_ray.evaluation import to_markdown

        report, eval_path = write_eval(out, outputs, paths["results"])
        print(to_markdown(report), end="", flush=True)
        print(f"wrote {eval_path}", flush=True)
        summary["eval"] = str(eval_path)
        summary["leaderboard_row"] = report.row(3)
    return summary


def _generate(cfg, model_dir: str, chunks: Iterator[list], on_done, on_lost, in_flight: int,
              on_ready: Callable[[], None] = lambda: None) -> dict:
    """The rollout pool on Ray (`actor_groups.build_rollout_pool`, as training builds it), streaming the chunks
    through it (`cluster.stream_chunks`); Ray is shut down at the end (a locally started cluster with it)."""
    import ray

    from medgrpo_ray.driver.actor_groups import build_rollout_pool
    from medgrpo_ray.driver.cluster import init_ray, stream_chunks

    r = cfg.rollout
    run = f"infer-{uuid.uuid4().hex[:8]}"  # unique actor names on a shared cluster
    print(f"ray: {init_ray(cfg)}; {r.num_workers} rollout worker(s), backend {r.backend}, model {model_dir}", flush=True)
    try:
        pool = build_rollout_pool(cfg, model_dir, run)
        on_ready()
        return stream_chunks(pool.workers, chunks, on_done, on_lost, max(1, in_flight), cfg.ray.get_timeout_s)
    finally:
        ray.shutdown()
