"""launch/infer.py and medgrpo_ray/workflows/inference/ (run.py, results_log.py, outputs.py): ids, resume reading,
submission order; and a real run (local Ray, vLLM on the tiny model) over a split with broken records that is
SIGKILLed midway and restarted with the same --out: every record answered exactly once, the broken ones listed,
the submission complete and in input order."""
from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from medgrpo_ray.data.records_io import iter_parsed
from medgrpo_ray.models.loading import resolve_model
from medgrpo_ray.workflows.inference.outputs import build_outputs, submission_id
from medgrpo_ray.workflows.inference.results_log import ResultsLog, read_results, repair_results, result_row

ROOT = Path(__file__).resolve().parents[1]
ID_RE = re.compile(r"^[^&]*&&[^&]*&&[^&]*&&[^&]*$")


def _record(video_id="vid01", start="16", end="56", fps="0.5", qa_type="tal", answer="1.0-2.0 seconds."):
    meta = {"fps": fps, "video_id": video_id, "input_video_start_frame": start, "input_video_end_frame": end}
    return {"conversations": [{"from": "human", "value": "<video>\nWhen?"}, {"from": "gpt", "value": answer}],
            "video": "videos/a.mp4", "metadata": meta, "qa_type": qa_type, "data_source": "AVOS",
            **({"struc_info": [{"spans": [{"start": 1.0, "end": 2.0}]}]} if qa_type == "tal" else {})}


# ---- pure parts -----------------------------------------------------------------------------------------------
def test_submission_id_uses_the_published_spellings():
    assert submission_id(_record()) == "vid01&&16&&56&&0.5"
    assert submission_id(_record(start=0, end=40, fps=1.0)) == "vid01&&0&&40&&1.0"  # numbers as written
    r = _record()
    del r["metadata"]["fps"], r["metadata"]["input_video_start_frame"]
    assert submission_id(r) == "vid01&&&&56&&"  # a malformed record keeps what it has
    assert submission_id("not a record") == "&&&&&&"
    assert submission_id({"metadata": "oops"}) == "&&&&&&"
    assert ID_RE.match(submission_id(_record()))


def test_resume_reading_ignores_a_torn_last_line_and_repairs_the_file(tmp_path):
    path = tmp_path / "predictions.jsonl"
    log = ResultsLog(path)
    log.write([result_row(0, "u0", prediction="a"), result_row(2, "u2", error="bad video", reason="decode")])
    log.close()
    with open(path, "a") as f:
        f.write('{"position": 1, "uid": "u1", "predic')  # killed mid-write
    state = read_results(path)
    assert sorted(state.rows) == [0, 2] and state.torn
    assert state.rows[2]["reason"] == "decode" and state.rows[0]["prediction"] == "a"

    repair_results(path)  # cut back to the last complete line, then appending starts on a fresh line
    log = ResultsLog(path)
    log.write([result_row(1, "u1", prediction="b")])
    log.close()
    state = read_results(path)
    assert sorted(state.rows) == [0, 1, 2] and not state.torn and state.invalid_lines == 0
    assert len(path.read_text().splitlines()) == 3

    # A complete JSON object without its newline is torn too (the next append would join it).
    path.write_text(json.dumps(result_row(0, "u0")) + "\n" + json.dumps(result_row(1, "u1")))
    state = read_results(path)
    assert sorted(state.rows) == [0] and state.torn
    assert read_results(tmp_path / "absent.jsonl").rows == {}


def test_submission_rows_follow_the_input_order_with_one_row_per_item(tmp_path):
    nofps = _record("v2")
    del nofps["metadata"]["fps"]
    items = [_record("v0", qa_type="tal"), _record("v1", qa_type="video_summary_gpt", answer="x"), nofps, "garbage",
             _record("v4", qa_type="next_action", answer="cutting")]
    path = tmp_path / "recs.json"
    path.write_text(json.dumps(items))
    parsed = list(iter_parsed(path))
    assert [p.position for p in parsed] == [0, 1, 2, 3, 4]
    assert [p.record is None for p in parsed] == [False, False, True, True, False]
    rows = {4: result_row(4, parsed[4].uid, prediction="cutting"),  # finished out of order
            0: result_row(0, parsed[0].uid, prediction="1.0-2.0 seconds."),
            1: result_row(1, parsed[1].uid, error="cannot open video", reason="decode"),
            2: result_row(2, None, error="metadata.fps missing", reason="record:metadata.fps"),
            3: result_row(3, None, error="is a str", reason="record:<record>")}
    out = build_outputs(parsed, rows, source=str(path))
    assert [r["id"] for r in out.submission] == ["v0&&16&&56&&0.5", "v1&&16&&56&&0.5", "v2&&16&&56&&", "&&&&&&",
                                                 "v4&&16&&56&&0.5"]
    assert [r["qa_type"] for r in out.submission] == ["tal", "video_summary_gpt", "tal", "", "next_action"]
    assert [r["prediction"] for r in out.submission] == ["1.0-2.0 seconds.", "", "", "", "cutting"]
    assert list(out.merged) == ["0", "1", "4"] and out.merged["4"]["answer"] == "cutting"
    assert out.merged["0"]["gnd"] == "1.0-2.0 seconds." and out.has_ground_truth
    assert [(b["position"], b["reason"]) for b in out.bad] == [(1, "decode"), (2, "record:metadata.fps"),
                                                               (3, "record:<record>")]
    assert out.bad[0]["uid"] == parsed[1].uid and out.missing == []
    partial = build_outputs(iter_parsed(path), {0: rows[0]})
    assert partial.missing == [1, 2, 3, 4] and len(partial.submission) == 5


def test_parquet_records_are_counted_from_the_footer_and_read_in_order(tmp_path):
    from medgrpo_ray.data.records import VideoRecord
    from medgrpo_ray.data.records_io import write_parquet
    from medgrpo_ray.workflows.inference.run import count_records

    recs = [VideoRecord.from_dict(_record(f"v{i}")) for i in range(5)]
    write_parquet(recs, tmp_path / "r.parquet", batch_size=2)
    assert count_records(tmp_path / "r.parquet") == 5
    parsed = list(iter_parsed(tmp_path / "r.parquet", batch_size=2))
    assert [p.uid for p in parsed] == [r.uid for r in recs]
    assert [submission_id(p.raw) for p in parsed] == [f"v{i}&&16&&56&&0.5" for i in range(5)]


def test_model_argument_resolves_checkpoints_to_their_hf_export(tmp_path):
    hf = tmp_path / "run" / "checkpoints" / "step_000004" / "hf"
    hf.mkdir(parents=True)
    (hf / "config.json").write_text("{}")
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step_000004\n")
    assert resolve_model(str(hf)) == str(hf)
    assert resolve_model(str(hf.parent)) == str(hf)  # a checkpoint directory
    assert resolve_model(str(hf.parent.parent)) == str(hf)  # a checkpoint root: `latest`
    assert resolve_model(str(tmp_path / "run")) == str(hf)  # a run directory
    with pytest.raises(ValueError, match="neither an HF model directory"):
        resolve_model(str(tmp_path))


def test_resume_refuses_predictions_written_for_another_file(tmp_path):
    from medgrpo_ray.config import load_config
    from medgrpo_ray.workflows.inference import InferSettings, run_inference

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    recs = tmp_path / "recs.json"
    recs.write_text(json.dumps([_record("v0"), _record("v1")]))
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.jsonl").write_text(json.dumps(result_row(0, "someone-else", prediction="x")) + "\n")
    settings = InferSettings(records=str(recs), out_dir=str(out), model=str(model))
    with pytest.raises(ValueError, match="written for another file"):  # before any cluster starts
        run_inference(load_config(None, ["logging.progress_bar=false"]), settings)
    (tmp_path / "model2").mkdir()
    (tmp_path / "model2" / "config.json").write_text("{}")
    other = InferSettings(records=str(recs), out_dir=str(out), model=str(tmp_path / "model2"))
    with pytest.raises(ValueError, match="holds predictions for model"):
        run_inference(load_config(None, []), other)


@pytest.mark.slow
def test_stream_chunks_resends_after_a_worker_death_and_gives_up_on_a_poison_record():
    """Real Ray, toy actors: a record that kills its worker every time is re-sent with its chunk in isolation, then
    alone, then reported lost; the rest of its chunk and every other chunk complete; the dead workers come back."""
    import ray

    from medgrpo_ray.driver.cluster import stream_chunks

    @ray.remote(max_restarts=10, max_task_retries=0)
    class Toy:
        def rollout(self, chunk):
            if 13 in chunk:
                os._exit(1)
            return [x * 10 for x in chunk]

        def ready(self):
            return True

    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="test-infer-stream")
    try:
        workers = [Toy.options(num_cpus=0).remote() for _ in range(2)]
        chunks = iter([list(range(i, i + 3)) for i in range(0, 30, 3)])
        done, lost, seen = {}, [], []

        def on_done(chunk, results):
            seen.append(list(chunk))
            for x, y in zip(chunk, results):
                assert x not in done
                done[x] = y

        stats = stream_chunks(workers, chunks, on_done, lambda item, msg: lost.append((item, msg)),
                              in_flight=2, timeout_s=120)
    finally:
        ray.shutdown()
    assert sorted(done) == [x for x in range(30) if x != 13] and all(done[x] == 10 * x for x in done)
    assert [item for item, _ in lost] == [13] and "died running this record alone" in lost[0][1]
    # The chunk with 13 kills a worker (whatever was queued there is re-sent alone), kills one again alone, then
    # 13 kills one a third time on its own and is given up; its chunk mates come back one by one.
    assert stats["worker_deaths"] == 3 and stats["resent"] >= 1 and stats["lost"] == 1
    assert [12] in seen and [14] in seen


# ---- the real thing -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """32 synthetic test records with 6 broken ones mixed in: a corrupt video file, a missing video, a record
    without metadata.fps, an item that is not a record, a prompt over rollout.max_model_len, and a frame list
    whose decode hangs (a named pipe, cut by data.decode_timeout_s), which also keeps the first run from
    finishing before it is killed."""
    from medgrpo_ray.data.synthetic import generate

    syn = tmp_path_factory.mktemp("synthetic")
    generate(syn, seed=0, n_train=8, n_test=32)
    recs = json.loads((syn / "test.json").read_text())
    base = next(r for r in recs if isinstance(r["video"], str))
    frames = next(r for r in recs if isinstance(r["video"], list) and not r.get("is_RC"))

    def bad(src, video_id, **changes):
        r = copy.deepcopy(src)
        r["metadata"]["video_id"] = video_id
        r.update(changes)
        return r

    (syn / "videos" / "corrupt.mp4").write_bytes(os.urandom(20_000))
    os.mkfifo(syn / "frames" / "stalled.jpg")
    nofps = bad(base, "BAD_nofps")
    del nofps["metadata"]["fps"]
    broken = {
        "corrupt": bad(base, "BAD_corrupt", video="videos/corrupt.mp4"),
        "missing": bad(base, "BAD_missing", video="videos/nowhere.mp4"),
        "hang": bad(frames, "BAD_hang", video=["frames/stalled.jpg"] * len(frames["video"])),
        "nofps": nofps,
        "garbage": "not a record",
        "long": bad(base, "BAD_long", conversations=[{"from": "human", "value": "<video>\n" + "word " * 5000},
                                                     base["conversations"][1]]),
    }
    at = {"corrupt": 5, "hang": 11, "missing": 15, "nofps": 23, "garbage": 24, "long": 31}
    mixed = list(recs)
    for name, pos in sorted(at.items(), key=lambda kv: kv[1]):
        mixed.insert(pos, broken[name])
    path = syn / "mixed.json"
    path.write_text(json.dumps(mixed))
    expected = {"corrupt": "decode", "missing": "decode", "hang": "decode", "nofps": "record:metadata.fps",
                "garbage": "record:<record>", "long": "too_long"}
    return path, mixed, {at[k]: v for k, v in expected.items()}


def _marked(marker: str) -> list[int]:
    """Pids of live processes that inherited this test's marker (the driver, its Ray cluster, its workers)."""
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                    pids.append(int(pid))
            except OSError:
                pass
    return pids


@pytest.fixture
def marker():
    """A unique environment variable for the runs' processes; leftovers are killed by pid at teardown."""
    mark = f"MEDGRPO_INFER_TEST={uuid.uuid4().hex}"
    yield mark
    for pid in _marked(mark):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.slow
def test_killed_midway_and_restarted_answers_every_record_once(split, tmp_path, model_cache, marker):
    path, items, bad_at = split
    out = tmp_path / "out"
    n = len(items)
    cmd = [sys.executable, str(ROOT / "launch/infer.py"), "tiny:qwen3_vl", "--records", str(path), "--out", str(out),
           "--chunk-size", "2", "--in-flight", "1",
           f"model.cache_dir={model_cache}", "data.max_frames=4", "data.min_pixels=3136", "data.max_pixels=6272",
           "data.decode_timeout_s=5", "rollout.max_new_tokens=8", "rollout.max_model_len=4096",
           "rollout.num_workers=2", "ray.num_cpus=6", "ray.init_timeout_s=300", "ray.get_timeout_s=300",
           "logging.progress_bar=true"]
    key, value = marker.split("=")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", **{key: value})
    env.pop("RAY_ADDRESS", None)
    pred = out / "predictions.jsonl"
    t0 = time.monotonic()

    # 1. Run until some records are answered, then SIGKILL the whole process group.
    with open(tmp_path / "run1.log", "w") as log1:
        p = subprocess.Popen(cmd, stdout=log1, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
        while p.poll() is None and time.monotonic() - t0 < 240:
            if pred.exists() and pred.read_bytes().count(b"\n") >= 8:
                os.killpg(p.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        p.wait(timeout=60)
    log_text = (tmp_path / "run1.log").read_text()
    assert p.returncode == -signal.SIGKILL, log_text[-3000:]
    first = pred.read_bytes()
    before = read_results(pred)
    assert 8 <= len(before.rows) < n, (len(before.rows), n)
    time.sleep(3)  # the killed cluster's workers exit once their raylet is gone
    leftovers = len(_marked(marker))
    with open(pred, "ab") as f:  # as if the kill had landed in the middle of a write
        f.write(b'{"position": 3, "uid": "torn", "predi')

    # 2. Restart with the same --out: resumes, finishes, writes the outputs.
    t1 = time.monotonic()
    run2 = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, start_new_session=True)
    t2 = time.monotonic()
    assert run2.returncode == 0, run2.stdout[-3000:] + "\n---\n" + run2.stderr[-4000:]
    assert f"{len(before.rows)} already done" in run2.stdout and "resuming" in run2.stdout
    assert "rec/s" in run2.stderr  # the progress bar, with its rate

    # Every record exactly once; the lines of the killed run kept verbatim, the torn line gone.
    final = pred.read_bytes()
    assert final.startswith(first)
    lines = [json.loads(l) for l in final.decode().splitlines()]
    assert len(lines) == n and sorted(r["position"] for r in lines) == list(range(n))
    for pos, row in before.rows.items():
        assert next(r for r in lines if r["position"] == pos) == row
    rows = {r["position"]: r for r in lines}
    for pos, item in enumerate(items):
        if pos in bad_at:
            assert rows[pos]["error"] and rows[pos]["reason"] == bad_at[pos], rows[pos]
        else:
            assert rows[pos]["error"] is None and isinstance(rows[pos]["prediction"], str), rows[pos]

    bad = [json.loads(l) for l in (out / "bad_records.jsonl").read_text().splitlines()]
    assert {b["position"]: b["reason"] for b in bad} == bad_at
    assert all(b["index"] == b["position"] and b["message"] for b in bad)
    assert all(b["uid"] for b in bad if not b["reason"].startswith("record:"))

    sub = json.loads((out / "submission.json").read_text())
    assert len(sub) == n
    for row, item in zip(sub, items):
        assert ID_RE.match(row["id"]) and set(row) == {"id", "qa_type", "prediction"}
        if isinstance(item, dict):
            m = item["metadata"]
            assert row["id"] == "&&".join(str(m.get(k, "")) for k in
                                          ("video_id", "input_video_start_frame", "input_video_end_frame", "fps"))
            assert row["qa_type"] == item["qa_type"]
    assert [r["prediction"] for r in sub] == [rows[i]["prediction"] for i in range(n)]
    assert sub[23]["id"].endswith("&&")  # the record without fps: empty fps field

    merged = json.loads((out / "results.json").read_text())
    parsed_positions = [i for i, it in enumerate(items) if i not in (23, 24)]
    assert list(merged) == [str(i) for i in parsed_positions]
    assert all(merged[str(i)]["answer"] == rows[i]["prediction"] for i in parsed_positions)
    report = json.loads((out / "eval.json").read_text())
    assert set(report["leaderboard_row"]) >= {"tag_miou_03", "stg_miou", "nap_acc"}
    assert "| overall |" in run2.stdout

    print(f"\ninfer e2e: {n} records, {len(bad_at)} broken; killed after {t1 - t0:.0f} s with {len(before.rows)} "
          f"lines, restart answered {n - len(before.rows)} more in {t2 - t1:.0f} s; leftover processes after the "
          f"kill: {leftovers}")
