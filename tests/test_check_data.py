"""launch/check_data.py and medgrpo_ray/workflows/check_data/: validate and decode a records file before training.

The synthetic benchmark checks clean; a corpus of broken copies of its records (bad fields, missing, corrupt and
truncated videos, a missing frame image, a frame path that is a FIFO and so hangs the decode) is reported record
by record with the field or file at fault, in bounded time, from JSON and from Parquet, and --clean-out keeps
exactly the good records. A decode problem's reason and file are the ones the decoder set on its error.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from medgrpo_ray.config import load_config
from medgrpo_ray.data.records import VideoRecord
from medgrpo_ray.data.records_io import _row, load_records, parquet_schema
from medgrpo_ray.data.synthetic import generate
from medgrpo_ray.data.video import FrameBudget, VideoDecodeError
from medgrpo_ray.workflows.check_data import check_dataset, start_workers_early, training_budget, write_report
from medgrpo_ray.workflows.check_data.pool import decode_problem

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "launch" / "check_data.py"
TIMEOUT_S = 2.0
BOUND_S = TIMEOUT_S + 30.0  # a generous wall-time bound for one check of the broken corpus


def _cli():
    spec = importlib.util.spec_from_file_location("check_data_cli", CLI)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    start_workers_early()  # the decode workers' fork server imports while the set is generated
    out = tmp_path_factory.mktemp("check_synthetic")
    generate(out, seed=3, n_train=24, n_test=1, frame_list_fraction=0.3)
    return out


@pytest.fixture(scope="module")
def budget(model_cache):
    """The training budget of the schema defaults (tiny model's processor: factor 28)."""
    return training_budget(load_config(None, [f"model.cache_dir={model_cache}"]))


def _other_frame(d: dict) -> int:
    """Index of a frame that is not the region-caption start frame (so the record stays valid)."""
    start = (d.get("RC_info") or {}).get("start_frame")
    return next(k for k in range(1, len(d["video"])) if d["video"][k] != start)


@pytest.fixture(scope="module")
def corpus(synthetic, tmp_path_factory):
    """(cases, json path, parquet path): cases are (dict, base dict, expected) with expected None for a good record,
    else (reason, field or file at fault)."""
    tmp = tmp_path_factory.mktemp("broken")
    good = json.loads((synthetic / "train.json").read_text())
    files = [d for d in good if isinstance(d["video"], str)]
    lists = [d for d in good if isinstance(d["video"], list)]
    assert len(files) >= 8 and len(lists) >= 3, (len(files), len(lists))
    tal = next(d for d in good if d["qa_type"] == "tal")
    cases: list[tuple[dict, dict, tuple[str, str] | None]] = []

    def broken(base: dict, expected, change) -> None:
        d = copy.deepcopy(base)
        change(d)
        cases.append((d, base, expected))

    # a frame path that is a FIFO: opening it blocks until a writer appears (none ever does)
    fifo = tmp / "hang.jpg"
    os.mkfifo(fifo)
    k_fifo = _other_frame(lists[2])
    broken(lists[2], ("decode:timeout", str(fifo)), lambda d: d["video"].__setitem__(k_fifo, str(fifo)))
    cases.append((files[0], files[0], None))
    broken(files[1], ("field:metadata.fps", "metadata.fps"), lambda d: d["metadata"].pop("fps"))
    broken(files[2], ("field:metadata.input_video_start_frame", "metadata.input_video_start_frame"),
           lambda d: d["metadata"].update(input_video_start_frame="12a"))
    broken(files[3], ("field:metadata.input_video_end_frame", "metadata.input_video_end_frame"),
           lambda d: d["metadata"].update(input_video_start_frame="40", input_video_end_frame="8"))
    broken(tal, ("field:struc_info.spans.end", "struc_info[0].spans[0].end"),
           lambda d: d.update(struc_info=[{"spans": [{"start": 6.0, "end": 2.0}]}]))
    cases.append((lists[0], lists[0], None))
    broken(files[4], ("decode:missing file", str(synthetic / "videos/not_there.mp4")),
           lambda d: d.update(video="videos/not_there.mp4"))
    corrupt = tmp / "corrupt.mp4"
    corrupt.write_bytes(random.Random(0).randbytes(40_000))
    broken(files[5], ("decode:corrupt", str(corrupt)), lambda d: d.update(video=str(corrupt)))
    cases.append((files[6], files[6], None))
    truncated = tmp / "truncated.mp4"
    data = (synthetic / files[7]["video"]).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    broken(files[7], ("decode:truncated", str(truncated)), lambda d: d.update(video=str(truncated)))
    k_gone = _other_frame(lists[1])
    gone = lists[1]["video"][k_gone].replace(".jpg", "_gone.jpg")
    broken(lists[1], ("decode:missing file", str(synthetic / gone)), lambda d: d["video"].__setitem__(k_gone, gone))
    cases.append((files[8], files[8], None))

    json_path = tmp / "broken.json"
    json_path.write_text(json.dumps([d for d, _, _ in cases]))
    parquet_path = tmp / "broken.parquet"
    _write_parquet_rows([_parquet_row(d, base) for d, base, _ in cases], parquet_path)
    return cases, json_path, parquet_path


def _parquet_row(d: dict, base: dict) -> dict:
    """A Parquet row holding `d` as is (write_parquet only writes valid records): the valid base's row with the
    published columns replaced by `d`'s values."""
    row = _row(VideoRecord.from_dict(base))
    for col in ("conversations", "metadata", "struc_info", "RC_info"):
        row[col] = json.dumps(d[col]) if col in d else None
    row["video_file"], row["video_frames"] = (d["video"], None) if isinstance(d["video"], str) else (None, d["video"])
    row["key_order"] = list(d)
    return row


def _write_parquet_rows(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows, schema=parquet_schema()), path, row_group_size=4)


def _assert_names_every_problem(problems: list[dict], by_reason: dict, totals: dict, cases, source: Path) -> None:
    expected = {i: exp for i, (_, _, exp) in enumerate(cases) if exp is not None}
    assert totals == {"records": len(cases), "ok": len(cases) - len(expected), "bad": len(expected)}
    got = {p["index"]: p for p in problems}
    assert len(got) == len(problems) and set(got) == set(expected), problems
    for i, (reason, where) in expected.items():
        p = got[i]
        assert p["reason"] == reason, p
        assert p["source"] == str(source) and p["message"]
        if reason.startswith("field:"):
            assert p["field"] == where and p["uid"] is None and where.split("[")[0] in p["message"], p
        else:
            assert p["file"] == where and p["uid"] == VideoRecord.from_dict(cases[i][0]).uid, p
    assert by_reason == dict(Counter(exp[0] for exp in expected.values()))


def _good_uids(cases) -> list[str]:
    return [VideoRecord.from_dict(d).uid for d, _, exp in cases if exp is None]


def test_synthetic_benchmark_has_no_problems(synthetic, budget):
    report = check_dataset(synthetic / "train.parquet", budget, workers=2, batch_size=8)
    assert report.bad == 0, report.summary()
    assert (report.records, report.ok) == (24, 24)
    assert report.budget == {"max_frames": 16, "min_pixels": 3136, "max_pixels": 12544, "factor": 28}


def test_cli_exits_zero_on_the_synthetic_benchmark(synthetic, model_cache, tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(CLI), str(synthetic / "train.json"), "--workers", "2", "--report",
                           str(out), f"model.cache_dir={model_cache}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["totals"] == {"records": 24, "ok": 24, "bad": 0} and report["problems"] == []
    assert report["video_root"] == str(synthetic) and report["timeout_s"] == 60.0  # data.decode_timeout_s
    assert "24 ok, 0 bad" in proc.stdout


def test_broken_json_names_every_problem_in_bounded_time(corpus, synthetic, budget, tmp_path):
    cases, json_path, _ = corpus
    t0 = time.monotonic()
    report = check_dataset(json_path, budget, video_root=str(synthetic), timeout_s=TIMEOUT_S, workers=2, window=4,
                           clean_out=tmp_path / "clean.json")
    assert time.monotonic() - t0 < BOUND_S
    payload = json.loads(write_report(report, tmp_path / "report.json").read_text())
    _assert_names_every_problem(payload["problems"], payload["by_reason"], payload["totals"], cases, json_path)
    clean, _ = load_records(tmp_path / "clean.json", on_bad="raise")
    assert [r.uid for r in clean] == _good_uids(cases) and payload["clean_records"] == len(clean)


def test_broken_parquet_via_the_cli(corpus, synthetic, model_cache, tmp_path):
    cases, _, parquet_path = corpus
    report_path, clean_path = tmp_path / "report.json", tmp_path / "clean.parquet"
    t0 = time.monotonic()
    rc = _cli().main([str(parquet_path), "--video-root", str(synthetic), "--timeout-s", str(TIMEOUT_S), "--workers",
                      "2", "--batch-size", "4", "--report", str(report_path), "--clean-out", str(clean_path),
                      "--no-progress", f"model.cache_dir={model_cache}"])
    assert time.monotonic() - t0 < BOUND_S
    assert rc == 1  # problems found
    payload = json.loads(report_path.read_text())
    _assert_names_every_problem(payload["problems"], payload["by_reason"], payload["totals"], cases, parquet_path)
    clean, _ = load_records(clean_path, on_bad="raise")
    assert [r.uid for r in clean] == _good_uids(cases)


def test_usage_errors_exit_2(tmp_path, corpus, capsys):
    _, json_path, _ = corpus
    cli = _cli()
    assert cli.main([str(tmp_path / "nope.json")]) == 2
    assert cli.main([str(json_path), "data.no_such_key=1"]) == 2
    assert cli.main([str(json_path), "--clean-out", str(tmp_path / "clean.csv")]) == 2
    (tmp_path / "records.txt").write_text("[]")
    assert cli.main([str(tmp_path / "records.txt"), "--no-decode"]) == 2
    assert "error" in capsys.readouterr().err


def test_decode_reason_is_the_decoders_code_not_read_from_the_message(monkeypatch, tmp_path):
    """The check reports `decode:` + the reason code on the decoder's error and its file; the message is only
    carried (here it reads like a different failure), and any other exception is `decode:error`."""
    import medgrpo_ray.data.clips as clips

    rec = VideoRecord.from_dict({"conversations": [{"from": "human", "value": "<video>\nWhat next?"}],
                                 "video": "v.mp4", "metadata": {"fps": "1.0", "video_id": "v"},
                                 "qa_type": "next_action", "data_source": "AVOS"}, source="r.json", index=3)
    budget = FrameBudget(max_frames=8, min_pixels=3136, max_pixels=12544, factor=28)

    def fail(err):
        def clip_for_record(*args, **kwargs):
            raise err
        return clip_for_record

    monkeypatch.setattr(clips, "clip_for_record", fail(VideoDecodeError("video file x does not exist",
                                                                        reason="truncated", path="/data/cut.mp4")))
    found = decode_problem(rec, budget, video_root=str(tmp_path))
    assert found == {"reason": "decode:truncated", "file": "/data/cut.mp4", "message": "video file x does not exist"}
    monkeypatch.setattr(clips, "clip_for_record", fail(OSError("cannot open video: did not finish within 1 s")))
    found = decode_problem(rec, budget, video_root=str(tmp_path))
    assert found["reason"] == "decode:error" and found["file"] == str(tmp_path / "v.mp4")
    assert found["message"].startswith(f"record {rec.uid} (r.json#3): OSError: ")
