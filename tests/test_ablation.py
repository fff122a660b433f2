"""The normalization ablation's pieces: the difficulty knob of the synthetic generator, the per-(dataset, task)
signal metrics, the stage plan, and the table / figure from finished arms (medgrpo_ray/workflows/ablation.py). The
machinery end to end (real subprocesses, Ray, SFT, arms, inference) is tests/test_ablation_run.py."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from medgrpo_ray.workflows.ablation import (AblationPaths, AblationSettings, changes_over_sft, collect, mean_curve,
                                            plan, table_markdown)
from medgrpo_ray.data.synthetic_scene import SOURCES, make_scene, with_difficulty


def test_difficulty_knob_orders_box_size_speed_and_phase_length():
    easy, hard = with_difficulty(SOURCES["EgoSurgery"], 0.0), with_difficulty(SOURCES["EgoSurgery"], 1.0)
    assert easy.box_frac > 4 * hard.box_frac and easy.speed < hard.speed and easy.noise < hard.noise
    assert min(easy.phase_lengths) > max(hard.phase_lengths) and easy.distractors == 0 < hard.distractors
    assert easy.labels == SOURCES["EgoSurgery"].labels and easy.tasks == SOURCES["EgoSurgery"].tasks
    # the head fits a source's vertical band (CVS draws its instruments in the upper half)
    cvs = with_difficulty(SOURCES["Cholec80_CVS"], 0.0)
    assert cvs.box_frac <= 0.8 * (cvs.y_span[1] - cvs.y_span[0])
    for spec in (easy, hard, cvs):
        rng = np.random.default_rng(0)
        scene = make_scene(spec, "v", rng)
        W, H = spec.size
        for seg in scene.segments:
            for t in np.arange(seg.start, seg.end, 0.5):
                x1, y1, x2, y2 = seg.track.box(float(t))
                assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H
    with pytest.raises(ValueError, match="difficulty of EgoSurgery must be in"):
        with_difficulty(SOURCES["EgoSurgery"], 1.5)


def test_generator_restricts_sources_and_tasks_and_applies_difficulty(tmp_path):
    from medgrpo_ray.data.records_io import load_records
    from medgrpo_ray.data.synthetic import generate

    m = generate(tmp_path / "mix", seed=0, n_train=9, n_test=0, sources=["CoPESD", "EgoSurgery"],
                 tasks=["stg", "tal"], difficulty={"CoPESD": 0.0, "EgoSurgery": 1.0})
    recs = load_records(tmp_path / "mix" / "train.json")[0]
    assert {(r.dataset, r.task) for r in recs} == {(d, t) for d in ("CoPESD", "EgoSurgery") for t in ("stg", "tal")}
    assert m["difficulty"]["CoPESD"]["box_frac"] == 0.6 and m["difficulty"]["EgoSurgery"]["box_frac"] == 0.1

    def mean_box_area(name):
        areas = []
        for r in recs:
            if r.dataset == name and r.task == "stg":
                for x1, y1, x2, y2 in r.struc_info[0]["bbox_dict"].values():
                    areas.append((x2 - x1) * (y2 - y1) / np.prod(r.metadata["frame_size"]))
        return float(np.mean(areas))

    assert mean_box_area("CoPESD") > 10 * mean_box_area("EgoSurgery")
    with pytest.raises(ValueError, match="unknown synthetic source"):
        generate(tmp_path / "bad", n_train=1, n_test=0, sources=["Nope"])


def test_the_default_generation_is_unchanged_by_the_knob(tmp_path):
    """No sources/tasks/difficulty: the same records as a full generation always gave (a subset of sources
    draws the same scenes: the seed of a video is its index among all eight sources)."""
    from medgrpo_ray.data.records_io import load_records
    from medgrpo_ray.data.synthetic import generate

    generate(tmp_path / "all", seed=0, n_train=16, n_test=0)
    generate(tmp_path / "two", seed=0, n_train=3, n_test=0, sources=["AVOS", "JIGSAWS"], tasks=["stg", "skill_assessment"])
    full = load_records(tmp_path / "all" / "train.json")[0]
    sub = load_records(tmp_path / "two" / "train.json")[0]
    assert sorted(r.metadata["video_id"] for r in sub) == ["AVOS_train_000", "JIGSAWS_train_006", "JIGSAWS_train_006"]
    for vid in ("AVOS_train_000", "JIGSAWS_train_006"):
        assert (tmp_path / f"all/videos/{vid}.mp4").read_bytes() == (tmp_path / f"two/videos/{vid}.mp4").read_bytes()
    stg = next(r for r in sub if r.task == "stg")
    assert stg.struc_info == next(r for r in full if r.metadata["video_id"] == "AVOS_train_000"
                                  and r.task == "stg").struc_info


def test_signal_metrics_show_which_pair_gets_the_gradient():
    from medgrpo_ray.grpo.batch import TrainSample
    from medgrpo_ray.grpo.step_data import StepSamples, signal_metrics

    data = StepSamples()
    for gid, (ds, rewards) in enumerate([("Easy", [0.2, 0.8]), ("Hard", [0.02, 0.08]), ("Flat", [0.0, 0.0])]):
        for r in rewards:
            data.samples.append(TrainSample(group_id=gid, record={}, completion_ids=[1], advantage=0.0,
                                            rollout_logprobs=[0.0], dataset=ds, task="stg"))
            data.rewards.append(r)
            data.group_ids.append(gid)
    from types import SimpleNamespace

    from medgrpo_ray.grpo.step_data import select_trained
    a = SimpleNamespace(adv_eps=0.0, zero_variance_threshold=1e-8, drop_zero_variance_groups=True, adv_std_normalize=False)
    keep, zero_var = select_trained(data, a)
    m = signal_metrics(data, keep)
    assert zero_var == {2}
    assert m["signal/Easy/stg/adv_share"] == pytest.approx(0.6 / 0.66)
    assert m["signal/Hard/stg/adv_share"] == pytest.approx(0.06 / 0.66)
    assert m["signal/Flat/stg/adv_share"] == 0.0 and m["signal/Flat/stg/trained_frac"] == 0.0
    assert m["signal/Easy/stg/trained_frac"] == 1.0
    a.adv_std_normalize = True  # the std division gives the hard pair the same share
    keep, _ = select_trained(data, a)
    m = signal_metrics(data, keep)
    assert m["signal/Easy/stg/adv_share"] == pytest.approx(0.5) and m["signal/Hard/stg/adv_share"] == pytest.approx(0.5)


def _arg(cmd, flag):
    return cmd[cmd.index(flag) + 1]


def test_plan_runs_every_arm_and_seed_from_one_sft_checkpoint(tmp_path):
    s = AblationSettings(out_dir=str(tmp_path), arms=["norm", "raw_nostd"], seeds=[3, 4], python="py")
    paths = AblationPaths(tmp_path)
    stages = plan(s, paths, prepare=lambda: {})
    names = [st.name for st in stages]
    assert names[:5] == ["data", "sft", "infer_sft", "infer_sft_stats", "norm_stats"]
    assert names[5:] == ["grpo_norm_s3", "infer_norm_s3", "grpo_raw_nostd_s3", "infer_raw_nostd_s3",
                         "grpo_norm_s4", "infer_norm_s4", "grpo_raw_nostd_s4", "infer_raw_nostd_s4"]
    by = {st.name: st for st in stages}
    ckpt = paths.sft_run / "checkpoints" / "step_000002"
    (ckpt / "hf").mkdir(parents=True)
    (ckpt / "hf" / "config.json").write_text("{}")
    (paths.sft_run / "checkpoints" / "latest").write_text("step_000002\n")
    a, b = by["grpo_norm_s3"].command(), by["grpo_raw_nostd_s4"].command()
    for cmd in (a, b):  # same start, same statistics, same data, same preset
        assert f"model.path={ckpt / 'hf'}" in cmd and f"normalization.stats_path={paths.norm_stats}" in cmd
        assert f"data.train_path={paths.bench / 'train.json'}" in cmd and _arg(cmd, "--config") == s.grpo_config
    assert "normalization.enabled=true" in a and "algorithm.adv_std_normalize=true" in a and "seed=3" in a
    assert "normalization.enabled=false" in b and "algorithm.adv_std_normalize=false" in b and "seed=4" in b
    assert f"logging.output_dir={tmp_path / 'arms'}" in b and "run_name=raw_nostd_s4" in b
    inf = by["infer_raw_nostd_s4"].command()
    assert inf[2] == str(paths.arm_run("raw_nostd", 4)) and _arg(inf, "--records") == str(paths.bench / "test.json")
    assert _arg(by["norm_stats"].command(), "--out") == str(paths.norm_stats)
    with pytest.raises(ValueError, match="unknown arm"):
        AblationSettings(out_dir="x", arms=["nope"])


def _cvs(right: bool, dataset: str = "Cholec80_CVS") -> dict:
    gt = "Two structures: 2, Cystic plate: 1, Hepatocystic triangle: 2"
    return {"qa_type": "cvs_assessment", "gnd": gt, "answer": gt if right else gt.replace("2", "0").replace("1", "0"),
            "data_source": dataset, "question": "cvs?", "metadata": {"fps": "1.0"}, "struc_info": []}


def _results(rights: list[bool]) -> dict:
    return {str(i): _cvs(r) for i, r in enumerate(rights)}


def test_changes_over_sft_are_paired_pooled_over_seeds_and_per_seed():
    """SFT right on 5 of 20 CVS records; arm "norm" on 15 (seed 0) and 13 (seed 1): +0.5 and +0.4, pooled +0.45,
    every interval above 0; arm "raw" (seed 0 only) the same records as SFT: +0.000 [+0.00, +0.00]."""
    from medgrpo_ray.evaluation import evaluate

    sft = evaluate(_results([i < 5 for i in range(20)]))
    arms = {"norm": {0: evaluate(_results([i < 15 for i in range(20)])),
                     1: evaluate(_results([i < 13 for i in range(20)]))},
            "raw": {0: sft}}
    rows = changes_over_sft(sft, arms, resamples=500)
    row = rows[("all", "cvs_acc")]
    assert row["sft"] == 0.25 and list(rows)[0] == ("all", "cvs_acc")
    norm = row["arms"]["norm"]
    assert norm["pooled"]["delta"] == pytest.approx(0.45) and norm["pooled"]["excludes_zero"]
    assert {k: round(v["delta"], 6) for k, v in norm["per_seed"].items()} == {0: 0.5, 1: 0.4}
    md = table_markdown(rows, ["norm", "raw"], [0, 1])
    assert re.search(r"\| all \| cvs_acc \| 0\.250 \| \+0\.450 \[\+0\.\d\d, \+0\.\d\d\] \* \(\+0\.500\*, \+0\.400\*\) \| "
                     r"\+0\.000 \[\+0\.00, \+0\.00\] \(\+0\.000\) \|", md), md
    assert "| Cholec80-CVS | cvs_acc | 0.250 |" in md
    assert mean_curve([[(1, 0.2), (2, 0.4)], [(1, 0.4)]]) == [(1, pytest.approx(0.3)), (2, 0.4)]


def test_collect_writes_table_json_and_figure_from_finished_arms(tmp_path):
    s = AblationSettings(out_dir=str(tmp_path), arms=["norm", "raw"], seeds=[0])
    paths = AblationPaths(tmp_path)

    def write_results(name, right):
        d = paths.infer(name)
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(_results([i < right for i in range(10)])))

    write_results("sft", 3)
    write_results("norm_s0", 4)
    write_results("raw_s0", 2)
    for arm in ("norm", "raw"):
        run = paths.arm_run(arm, 0)
        run.mkdir(parents=True)
        rows = [{"step": k, "reward/CoPESD/stg/raw": 0.1 * k, "reward/task/stg/raw": 0.1 * k,
                 "signal/CoPESD/stg/adv_share": 1.0} for k in (1, 2, 3)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = collect(s, paths)
    assert re.search(r"\| all \| cvs_acc \| 0\.300 \| \+0\.100 \[\+0\.00, \+0\.30\] \(\+0\.100\) \| "
                     r"-0\.100 \[-0\.30, \+0\.00\] \(-0\.100\) \|", out["table"]), out["table"]
    summary = json.loads((tmp_path / "ablation.json").read_text())
    assert summary["reward_curves"]["raw"] == {"CoPESD/stg": [[1, 0.1], [2, 0.2], [3, pytest.approx(0.3)]]}
    assert summary["adv_share_curves"]["norm"]["CoPESD/stg"][0] == [1, 1.0]
    png = Path(out["png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "| CoPESD/stg | 1.000 | 1.000 |" in out["shares"]
    assert (tmp_path / "ablation.md").read_text().count("\n|") >= 4
