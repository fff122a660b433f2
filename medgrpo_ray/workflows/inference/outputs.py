"""The inference run's final files, rebuilt from the records file and predictions.jsonl (pure over the two, so
the same after any number of restarts):

- `results.json`: merged results (`VideoRecord.to_eval_dict`) keyed by input position, for every record that
  parses (a malformed record has no usable ground truth or fps; its key is absent, it is in bad_records.jsonl);
- `submission.json`: the leaderboard submission, one row per input item in input order, id
  `<video_id>&&<start>&&<end>&&<fps>` as the record spells them;
- `bad_records.jsonl`: every position answered by an error, with its reason;
- `eval.json`: the evaluation report, when the records carry ground truth.

Each is written atomically (io/atomic.py); results.json and submission.json one record per line, streamed.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from medgrpo_ray.data.records_io import Parsed
from medgrpo_ray.io.atomic import atomic_path, atomic_write_text
from medgrpo_ray.workflows.inference.results_log import result_row

RESULTS = "results.json"
SUBMISSION = "submission.json"
BAD_RECORDS = "bad_records.jsonl"
EVAL = "eval.json"


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
    """One submission row: id, qa_type ("" where the item has none) and the prediction."""
    qa_type = raw.get("qa_type") if isinstance(raw, Mapping) else None
    return {"id": submission_id(raw), "qa_type": qa_type if isinstance(qa_type, str) else "",
            "prediction": prediction or ""}


# ---- building and writing -----------------------------------------------------------------------------------
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
    """results.json, submission.json and bad_records.jsonl, each written atomically; returns their paths."""
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

    def dump_lines(f) -> None:
        f.writelines(json.dumps(b, ensure_ascii=False) + "\n" for b in outputs.bad)

    for key, dump in (("results", dump_dict), ("submission", dump_list), ("bad_records", dump_lines)):
        with atomic_path(paths[key]) as tmp, open(tmp, "w", encoding="utf-8") as f:
            dump(f)
    return paths


def write_eval(out_dir: str | os.PathLike, outputs: Outputs, results_path: str | os.PathLike) -> tuple[Any, Path]:
    """Evaluate the merged results (records with ground truth) and write eval.json; returns (report, path)."""
    from medgrpo_ray.evaluation import evaluate

    report = evaluate(outputs.merged)
    payload = {**report.to_json(), "input": str(results_path), "bad_records": len(outputs.bad)}
    path = atomic_write_text(Path(out_dir) / EVAL, json.dumps(payload, indent=2) + "\n")
    return report, path
