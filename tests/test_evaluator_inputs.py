"""Evaluator inputs and the launch/evaluate.py command: merged format, submission format, attribution."""
import importlib
import json
from pathlib import Path

import pytest

from judge_server import judge_server  # noqa: F401  (fixture: a real OpenAI-compatible server on 127.0.0.1)
from medgrpo_ray.evaluation import evaluate
from medgrpo_ray.evaluation.inputs import load_results
from medgrpo_ray.rewards.fields import record_dataset

ROOT = Path(__file__).resolve().parents[1]


def load_command(name):
    """The command behind launch/<name>.py (medgrpo_ray/cli/<name>.py)."""
    return importlib.import_module(f"medgrpo_ray.cli.{name}")


GT = [
    {"qa_type": "tal", "struc_info": [{"spans": [{"start": 4.0, "end": 9.5}]}], "gnd": "4.0-9.5 seconds.",
     "metadata": {"fps": "1.0", "video_id": "v1"}, "data_source": "NurViD", "question": "Find Disinfect skin."},
    {"qa_type": "next_action", "struc_info": [], "gnd": "suturing", "metadata": {"fps": "0.5", "video_id": "abcdefghijk"},
     "data_source": "AVOS", "question": "What comes next?"},
]


def merged(answers):
    return {str(i): {**rec, "answer": a} for i, (rec, a) in enumerate(zip(GT, answers))}


def test_merged_file_order_is_by_integer_key(tmp_path):
    data = merged(["6.0-12.0 seconds", "tying"])
    shuffled = {k: data[k] for k in ("1", "0")}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(shuffled))
    items, warnings = load_results(path)
    assert [rid for rid, _ in items] == ["0", "1"] and warnings == []


def test_evaluate_command_merged(tmp_path, capsys):
    """TAL (6,12) vs (4,9.5): IoU 3.5 / 8 = 0.4375 >= 0.3, < 0.5 -> tag_miou_03 0.4375, tag_miou_05 0.
    NAP 'suturing' = GT -> 1.0."""
    path = tmp_path / "results.json"
    path.write_text(json.dumps(merged(["6.0-12.0 seconds", "suturing"])))
    out = tmp_path / "eval.json"
    assert load_command("evaluate").main([str(path), "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["leaderboard_row"]["tag_miou_03"] == pytest.approx(0.438)  # stored to 3 dp
    assert payload["metrics"]["tag_miou_03"]["value"] == pytest.approx(0.4375)
    assert payload["leaderboard_row"]["tag_miou_05"] == 0.0
    assert payload["leaderboard_row"]["nap_acc"] == 1.0
    assert payload["leaderboard_row"]["cvs_acc"] is None  # no records: not computed
    printed = capsys.readouterr().out
    assert "| overall |" in printed and "| NurViD |" in printed


def test_evaluate_command_submission_by_position(tmp_path):
    gt_path, sub_path, out = tmp_path / "gt.json", tmp_path / "sub.json", tmp_path / "eval.json"
    gt_path.write_text(json.dumps(GT))
    sub = [{"id": "v1&&0&&10&&1.0", "qa_type": "tal", "prediction": "4.0-9.5 seconds"},
           {"id": "abcdefghijk&&0&&10&&0.5", "qa_type": "next_action", "prediction": "cutting"}]
    sub_path.write_text(json.dumps(sub))
    assert load_command("evaluate").main([str(sub_path), "--gt", str(gt_path), "--out", str(out)]) == 0
    row = json.loads(out.read_text())["leaderboard_row"]
    assert row["tag_miou_05"] == 1.0 and row["nap_acc"] == 0.0


def test_submission_length_must_match(tmp_path, capsys):
    gt_path, sub_path = tmp_path / "gt.json", tmp_path / "sub.json"
    gt_path.write_text(json.dumps(GT))
    sub_path.write_text(json.dumps([{"id": "x", "qa_type": "tal", "prediction": "1-2"}]))
    assert load_command("evaluate").main([str(sub_path), "--gt", str(gt_path)]) == 2
    assert "same length" in capsys.readouterr().err
    assert load_command("evaluate").main([str(sub_path)]) == 2
    assert "--gt" in capsys.readouterr().err


def test_unknown_qa_type_names_the_record():
    with pytest.raises(ValueError, match="record 1: field qa_type"):
        evaluate([GT[0] | {"answer": ""}, {"qa_type": "vqa", "answer": ""}])


def test_dataset_attribution_fallbacks():
    """data_source wins; 'Unknown' falls to dataset_name, then video_id heuristics (partial)."""
    assert record_dataset({"data_source": "Cholec80_CVS"}) == "Cholec80-CVS"
    assert record_dataset({"data_source": "Unknown", "dataset_name": "JIGSAWS"}) == "JIGSAWS"
    assert record_dataset({"metadata": {"video_id": "dQw4w9WgXcQ"}}) == "AVOS"
    assert record_dataset({"metadata": {"video_id": "case12_part3"}}) == "CoPESD"
    assert record_dataset({"metadata": {"video_id": "video01"}}) == "CholecT50"
    assert record_dataset({"metadata": {"video_id": "x"}}) == "Unknown"


def test_evaluate_command_scores_captions_with_the_judge_of_a_preset(tmp_path, judge_server, monkeypatch):
    """--judge-config PRESET judge.KEY=VALUE ...: the preset's judge: section (JudgeConfig) builds the judge that
    computes vs_llm, here against the local judge server."""
    monkeypatch.setenv("MEDGRPO_TEST_JUDGE_KEY", "sk-test-evaluate")
    judge_server.control.expected_key = "sk-test-evaluate"
    reference = "The surgeon clips the cystic duct and divides it with scissors."
    record = {"qa_type": "video_summary", "struc_info": [], "gnd": reference, "answer": "The cystic duct is clipped.",
              "metadata": {"fps": "1.0", "video_id": "v9"}, "data_source": "CholecT50", "question": "Summarize."}
    path, out = tmp_path / "results.json", tmp_path / "eval.json"
    path.write_text(json.dumps({"0": record}))
    argv = [str(path), "--out", str(out), "--judge-config", str(ROOT / "configs/qwen2_5_vl_7b.yaml"),
            f"judge.base_url={judge_server.base_url}", "judge.api_key_env=MEDGRPO_TEST_JUDGE_KEY", "judge.cache_dir=null",
            "judge.model=test-judge", "judge.requests_per_minute=0"]
    assert load_command("evaluate").main(argv) == 0
    row = json.loads(out.read_text())["leaderboard_row"]
    assert row["vs_llm"] is not None and row["vs_llm"] > 0
    assert [ref for _, ref in judge_server.control.seen] and all(reference in ref for _, ref in judge_server.control.seen)
