"""The workflow command's machinery (medgrpo_ray/workflows/pipeline.py): the stage plan, the resume-by-marker runner with
real subprocesses, and the paired comparison. The end-to-end run is shown in README.md (minutes on 2 cores)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from medgrpo_ray.workflows.pipeline import PipelinePaths, PipelineSettings, Stage, compare_runs, plan, run_stage


def _arg(cmd, flag):
    return cmd[cmd.index(flag) + 1]


def test_plan_orders_the_workflow_and_wires_outputs_to_inputs(tmp_path):
    paths = PipelinePaths(tmp_path)
    stages = plan(PipelineSettings(out_dir=str(tmp_path), python="py"), paths, "/videos", prepare=lambda: {})
    assert [s.name for s in stages] == ["data", "sft", "infer_sft", "infer_sft_stats", "norm_stats", "grpo",
                                        "infer_grpo"]
    by = {s.name: s for s in stages}
    sft = by["sft"].command()
    assert sft[1].endswith("launch/sft.py") and "sft.evaluate=false" in sft and "resume=auto" in sft
    for stage in stages:  # every subprocess stage runs a launch script that exists (grpo's is built when it starts)
        if stage.run is None and not callable(stage.cmd):
            assert Path(stage.command()[1]).is_file(), stage.command()
    assert f"logging.output_dir={tmp_path}" in sft and "run_name=sft" in sft
    inf = by["infer_sft"].command()
    assert inf[2] == str(paths.sft_run) and _arg(inf, "--records") == str(paths.test_records)
    assert _arg(inf, "--video-root") == "/videos" and _arg(inf, "--out") == str(paths.infer("sft"))
    stats_inf = by["infer_sft_stats"].command()
    assert _arg(stats_inf, "--records") == str(paths.stats_records) and "--no-eval" in stats_inf
    ns = by["norm_stats"].command()
    assert ns[2] == str(paths.infer("sft_stats") / "results.json") and _arg(ns, "--out") == str(paths.norm_stats)
    # GRPO's model is the SFT export, resolved when the stage starts: before SFT ran there is none.
    with pytest.raises(FileNotFoundError, match="no checkpoint with an hf/ export"):
        by["grpo"].command()
    ckpt = paths.sft_run / "checkpoints" / "step_000003"
    (ckpt / "hf").mkdir(parents=True)
    (ckpt / "hf" / "config.json").write_text("{}")
    (paths.sft_run / "checkpoints" / "latest").write_text("step_000003\n")
    grpo = by["grpo"].command()
    assert f"model.path={ckpt / 'hf'}" in grpo and f"normalization.stats_path={paths.norm_stats}" in grpo
    assert "run_name=grpo" in grpo and "resume=auto" in grpo
    assert by["infer_grpo"].command()[2] == str(paths.grpo_run)


def test_test_records_resolve_videos_under_their_own_root(tmp_path):
    paths = PipelinePaths(tmp_path)
    by = {s.name: s for s in plan(PipelineSettings(out_dir=str(tmp_path), python="py"), paths, "/train_videos",
                                  prepare=lambda: {}, test_video_root="/eval_videos")}
    assert _arg(by["infer_sft"].command(), "--video-root") == "/eval_videos"
    assert _arg(by["infer_grpo"].command(), "--video-root") == "/eval_videos"
    assert _arg(by["infer_sft_stats"].command(), "--video-root") == "/train_videos"


def test_the_evaluation_split_fills_every_quota_exactly(tmp_path):
    """3 records per discrete task (pooled over sources) and per (TAL source): CVS from Cholec80-CVS only, TAL from
    every source that has it; each video serves at most its own task list, records load and their videos exist."""
    from medgrpo_ray.data.records_io import load_records
    from medgrpo_ray.data.synthetic_eval import generate_eval_split

    m = generate_eval_split(tmp_path, ["tal", "cvs_assessment", "next_action"], min_records=3,
                            sources=["AVOS", "CoPESD", "Cholec80_CVS"])
    assert m["by_group"] == {"cvs_assessment/*": 3, "next_action/*": 3, "tal/AVOS": 3, "tal/CoPESD": 3}
    records, report = load_records(tmp_path / "test.json")
    assert report.skipped == 0 and len(records) == m["records"] == 12
    assert all((tmp_path / r.video).is_file() or all((tmp_path / f).is_file() for f in r.video) for r in records)
    assert json.loads((tmp_path / "manifest.json").read_text())["by_task"] == {"cvs_assessment": 3, "next_action": 3,
                                                                              "tal": 6}
    with pytest.raises(ValueError, match="unknown task"):
        generate_eval_split(tmp_path / "x", ["nope"])


def test_statistics_from_the_test_split_skip_the_training_inference(tmp_path):
    paths = PipelinePaths(tmp_path)
    stages = plan(PipelineSettings(out_dir=str(tmp_path), stats_from="test"), paths, "/v", prepare=lambda: {})
    assert "infer_sft_stats" not in [s.name for s in stages]
    ns = next(s for s in stages if s.name == "norm_stats").command()
    assert ns[2] == str(paths.infer("sft") / "results.json")


def test_runner_tees_output_writes_a_marker_and_reports_failures(tmp_path, capsys):
    paths = PipelinePaths(tmp_path)
    ok = Stage("hello", "prints", (sys.executable, "-c", "print('from the stage')"))
    info = run_stage(ok, paths)
    assert "from the stage" in capsys.readouterr().out
    assert "from the stage" in (paths.logs / "hello.log").read_text()
    assert json.loads(paths.marker("hello").read_text())["cmd"] == list(ok.cmd) and info["seconds"] >= 0
    bad = Stage("boom", "fails", (sys.executable, "-c", "import sys; print('partial'); sys.exit(3)"))
    with pytest.raises(RuntimeError, match=r"stage boom failed \(exit 3\).*boom.log.*rerun the same command"):
        run_stage(bad, paths)
    assert not paths.marker("boom").exists()  # a failed stage runs again next time


def _nap(answer, dataset="AVOS"):
    return {"qa_type": "next_action", "answer": answer, "gnd": "cutting", "data_source": dataset, "question": "next?",
            "metadata": {"fps": "1.0"}}


def test_the_comparison_is_paired_over_the_test_records(tmp_path):
    """SFT right on 4 of 20, GRPO on 14 of the same 20: +0.5, starred; columns not computed on both say n/c."""
    paths = PipelinePaths(tmp_path)
    for name, k in (("sft", 4), ("grpo", 14)):
        paths.infer(name).mkdir(parents=True)
        results = {str(i): _nap("cutting" if i < k else "tying") for i in range(20)}
        (paths.infer(name) / "results.json").write_text(json.dumps(results))
    cmp, md = compare_runs(paths, resamples=500)
    row = next(r for r in cmp["rows"] if r["metric"] == "nap_acc" and r["dataset"] is None)
    assert (row["a"], row["b"], row["n"], row["excludes_zero"]) == (0.2, 0.7, 20, True)
    assert row["delta"] == pytest.approx(0.5)
    assert re.search(r"\| nap_acc \| 0\.200 \[0\.\d\d, 0\.\d\d\] n=20 \| 0\.700 \[0\.\d\d, 0\.\d\d\] n=20 \| "
                     r"\+0\.500 \[\+0\.\d\d, \+0\.\d\d\] \* \| 1\.00 \| 20 \|", md), md
    assert "| cvs_acc | n/c | n/c |" in md and "| AVOS | nap_acc | 0.200 | 0.700 |" in md
    assert "Test records: 20 (SFT), 20 (GRPO from SFT)" in md


def test_the_shipped_presets_fit_together():
    """The GRPO preset trains what the SFT preset taught (same tasks and frames): the pipeline's premise."""
    from medgrpo_ray.config import load_config

    root = Path(__file__).resolve().parents[1]
    sft = load_config(str(root / "configs/sft_cpu.yaml"), [])
    grpo = load_config(str(root / "configs/grpo_from_sft_cpu.yaml"), [])
    assert sft.data.tasks == grpo.data.tasks and sft.data.max_frames == grpo.data.max_frames
    assert (sft.data.min_pixels, sft.data.max_pixels) == (grpo.data.min_pixels, grpo.data.max_pixels)
    assert grpo.normalization.enabled and sft.rollout.max_new_tokens == grpo.rollout.max_new_tokens
