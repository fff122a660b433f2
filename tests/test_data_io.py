"""Records I/O: lossless JSON <-> Parquet on the synthetic set, streaming reads, skip/raise policy, converter."""
from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medgrpo_ray.data import convert
from medgrpo_ray.data.records import RecordError
from medgrpo_ray.data.records_io import (LoadReport, iter_records, load_records, parquet_schema, write_json,
                                         write_parquet)
from medgrpo_ray.data.synthetic import generate


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_io")
    generate(out, seed=3, n_train=24, n_test=6)
    return out


def test_json_parquet_json_is_lossless(synth, tmp_path):
    records, report = load_records(synth / "train.json", on_bad="raise")
    assert len(records) == 24 and report.skipped == 0
    write_parquet(records, tmp_path / "t.parquet", batch_size=5)
    back, _ = load_records(tmp_path / "t.parquet", on_bad="raise", batch_size=5)
    assert [r.to_dict() for r in back] == [r.to_dict() for r in records]
    assert [r.uid for r in back] == [r.uid for r in records]
    assert [list(r.to_dict()) for r in back] == [list(r.to_dict()) for r in records]  # key order kept
    write_json(back, tmp_path / "t.json")
    assert (tmp_path / "t.json").read_text() == (synth / "train.json").read_text()  # byte-identical JSON
    shipped, _ = load_records(synth / "train.parquet", on_bad="raise")  # the generator's own Parquet
    assert [r.to_dict() for r in shipped] == [r.to_dict() for r in records]
    assert json.loads((synth / "train.json").read_text()) == [r.to_dict() for r in records]


def test_parquet_is_read_in_batches_lazily(synth, tmp_path):
    records, _ = load_records(synth / "train.json")
    path = tmp_path / "b.parquet"
    write_parquet(records, path, batch_size=5)
    assert pq.ParquetFile(path).metadata.num_row_groups == 5  # 24 records -> 5 row groups
    report = LoadReport()
    stream = iter_records(path, report=report, batch_size=5)
    first = list(itertools.islice(stream, 3))
    assert report.batches == 1 and report.loaded == 3  # nothing beyond the first batch was read yet
    rest = list(stream)
    assert report.batches == 5 and report.loaded == 24 and len(first) + len(rest) == 24


def test_parquet_schema_is_stable_and_has_filter_columns(synth):
    schema = pq.ParquetFile(synth / "train.parquet").schema_arrow
    assert schema.names == parquet_schema().names
    for col in ("struc_info", "RC_info", "metadata", "extra", "conversations"):
        assert schema.field(col).type == pa.string()  # per-task shapes are JSON text
    table = pq.read_table(synth / "train.parquet", columns=["task", "dataset", "video_file", "video_frames"])
    assert {"tal", "stg", "cvs_assessment"} <= set(table.column("task").to_pylist())
    assert "Cholec80-CVS" in table.column("dataset").to_pylist()  # canonical, while data_source keeps "_"
    files, frames = table.column("video_file").to_pylist(), table.column("video_frames").to_pylist()
    assert all((f is None) != (l is None) for f, l in zip(files, frames))


def _good(synth) -> list[dict]:
    return json.loads((synth / "train.json").read_text())


def test_skip_policy_counts_and_names_bad_records(synth, tmp_path, caplog):
    dicts = _good(synth)
    tal = next(i for i, d in enumerate(dicts) if d["qa_type"] == "tal")
    rc = next(i for i, d in enumerate(dicts) if d.get("is_RC"))
    dicts[0].pop("conversations")
    dicts[1]["metadata"]["fps"] = "n/a"
    dicts[tal]["struc_info"] = [{"spans": [{"start": 5.0}]}]
    dicts[rc]["RC_info"]["start_frame_bbox"] = [1, 2, 3]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(dicts))
    with caplog.at_level(logging.WARNING, logger="medgrpo_ray.data.records_io"):
        records, report = load_records(path, on_bad="skip")
    assert len(records) == 20 and (report.loaded, report.skipped) == (20, 4)
    assert len({0, 1, tal, rc}) == 4
    assert report.by_reason == {"conversations": 1, "metadata.fps": 1, "struc_info.spans": 1,
                                "RC_info.start_frame_bbox": 1}
    assert report.messages[0].startswith(f"{path} record 0: field conversations:")
    assert any(m.startswith(f"{path} record {tal}: field struc_info[0].spans[0]:") for m in report.messages)
    assert "skipped 4" in report.summary() and "skipped 4" in caplog.text  # logged, not silent
    with pytest.raises(RecordError) as info:
        load_records(path, on_bad="raise")
    assert (info.value.index, info.value.field) == (0, "conversations")


def test_bad_rows_in_parquet_and_jsonl_are_counted(synth, tmp_path):
    from medgrpo_ray.data.records import VideoRecord

    dicts = _good(synth)[:6]
    records = [VideoRecord.from_dict(d) for d in dicts]
    path = tmp_path / "p.parquet"
    write_parquet(records, path)
    table = pq.read_table(path)
    meta = table.column("metadata").to_pylist()
    meta[2] = "{not json"
    table = table.set_column(table.schema.get_field_index("metadata"), "metadata", pa.array(meta, pa.string()))
    pq.write_table(table, path)
    loaded, report = load_records(path)
    assert len(loaded) == 5 and report.by_reason == {"metadata": 1}
    assert report.messages[0].startswith(f"{path} record 2: field metadata: column holds invalid JSON")

    lines = [json.dumps(d) for d in dicts]
    lines[4] = lines[4][:-5]  # truncated line
    (tmp_path / "l.jsonl").write_text("\n".join(lines) + "\n")
    loaded, report = load_records(tmp_path / "l.jsonl")
    assert [r.index for r in loaded] == [0, 1, 2, 3, 5] and report.by_reason == {"<json>": 1}


def test_file_level_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="records file not found"):
        list(iter_records(tmp_path / "missing.json"))
    (tmp_path / "r.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"unknown records format '\.csv'"):
        list(iter_records(tmp_path / "r.csv"))
    (tmp_path / "obj.json").write_text('"just text"')
    with pytest.raises(ValueError, match="expected a JSON list of records or JSON Lines"):
        list(iter_records(tmp_path / "obj.json"))
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="Parquet file lacks columns"):
        list(iter_records(tmp_path / "other.parquet"))
    with pytest.raises(ValueError, match="on_bad='ignore'"):
        list(iter_records(tmp_path / "other.parquet", on_bad="ignore"))


def test_converter_both_ways(synth, tmp_path, capsys):
    assert convert.main([str(synth / "test.json"), str(tmp_path / "t.parquet"), "--batch-size", "4"]) == 0
    assert "loaded 6 records, skipped 0" in capsys.readouterr().out
    assert pq.ParquetFile(tmp_path / "t.parquet").metadata.num_row_groups == 2
    done = subprocess.run([sys.executable, "-m", "medgrpo_ray.data.convert", str(tmp_path / "t.parquet"),
                           str(tmp_path / "t.json")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "t.json").read_text() == (synth / "test.json").read_text()
    assert convert.main([str(tmp_path / "nope.json"), str(tmp_path / "x.parquet")]) == 1
    assert "records file not found" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()
