"""The curation run end to end offline (workflows/curation.py, launch/curate.py): the synthetic scenes exported in
four native formats -> converters -> template records that all pass the self-score gate -> assembly -> Parquet and
manifest; resume from the unit log redoes no finished unit and gives the same output; excluded videos never
appear; --dry-run only counts."""
from __future__ import annotations

import json

import pytest

from medgrpo_ray.config.curation import load_curation_config
from medgrpo_ray.curation.selfcheck import self_score_problem
from medgrpo_ray.data.records_io import load_records
from medgrpo_ray.workflows.curation import UNITS_LOG, run_curation

SETTINGS = ["synthetic_export=2", "records_per_video=2", "standard_total=20", "val_fraction=0.0"]


def _records(path):
    records, report = load_records(path)
    assert report.skipped == 0
    return [r.to_dict() for r in records]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("curated")
    result = run_curation(load_curation_config(None, SETTINGS), out, log=None)
    return out, result


def test_every_written_record_is_valid_and_scores_perfectly(straight):
    out, result = straight
    manifest = json.loads((out / "manifest.json").read_text())
    large = _records(out / "large.parquet")
    assert len(large) == manifest["large"]["records"] == manifest["files"]["large.parquet"] > 20
    assert set(manifest["large"]["by_task"]) == {"tal", "stg", "next_action", "skill_assessment", "cvs_assessment"}
    assert all(self_score_problem(r) is None for r in large)
    assert all(r["curation"]["templates_version"] for r in large)
    assert len(_records(out / "standard.parquet")) == 20
    for r in large[:5]:  # paths relative to OUT: training runs with data.video_root=OUT
        assert (out / (r["video"][0] if isinstance(r["video"], list) else r["video"])).is_file()
    assert {c["source"]: c["skipped"] for c in manifest["conversion"].values()}["CholecTrack20"] == {}


def test_a_rerun_after_a_kill_redoes_nothing_finished_and_writes_the_same(tmp_path):
    """A run killed midway leaves a unit log whose last line may be torn and no manifest; the same command again
    rebuilds only the missing units and writes what an uninterrupted run writes."""
    cfg = load_curation_config(None, SETTINGS)
    run_curation(cfg, tmp_path, log=None)
    whole = {n: _records(tmp_path / f"{n}.parquet") for n in ("large", "standard")}
    lines = (tmp_path / UNITS_LOG).read_text().splitlines(keepends=True)
    half = len(lines) // 2
    (tmp_path / UNITS_LOG).write_text("".join(lines[:half]) + lines[half][: len(lines[half]) // 2])  # torn line
    for name in ("manifest.json", "large.parquet", "standard.parquet"):
        (tmp_path / name).unlink()
    result = run_curation(cfg, tmp_path, log=None)
    assert (result["reused"], result["built"]) == (half, len(lines) - half)  # each unit exactly once
    assert {n: _records(tmp_path / f"{n}.parquet") for n in ("large", "standard")} == whole
    rerun = run_curation(cfg, tmp_path, log=None)
    assert (rerun["built"], rerun["reused"]) == (0, len(lines))


def test_excluded_videos_never_appear(straight, tmp_path):
    out, _ = straight
    large = _records(out / "large.parquet")
    banned = sorted({r["metadata"]["video_id"] for r in large})[:2]
    listing = tmp_path / "test_ids.txt"
    listing.write_text("\n".join(banned) + "\n")
    dest = tmp_path / "excl"
    dest.mkdir()
    (dest / "native").symlink_to(out / "native", target_is_directory=True)
    run_curation(load_curation_config(None, SETTINGS + [f"exclude=[{listing}]"]), dest, log=None)
    for name in ("large", "standard"):
        assert not {r["metadata"]["video_id"] for r in _records(dest / f"{name}.parquet")} & set(banned)
    m = json.loads((dest / "manifest.json").read_text())
    assert sum(m["excluded_by_source"].values()) == sum(r["metadata"]["video_id"] in banned for r in large)


def test_dry_run_counts_units_and_the_command_reports_config_errors(tmp_path, capsys):
    from medgrpo_ray.cli.curate import main

    plan = run_curation(load_curation_config(None, SETTINGS), tmp_path / "d", dry_run=True, log=None)
    assert plan["units_total"] == 2 * 4 * 5 * 2 and plan["llm_calls"] == 0  # 2 videos x 4 sources x 5 tasks x 2
    assert not (tmp_path / "d" / "manifest.json").exists()
    assert main(["--out", str(tmp_path / "e"), "tasks=[captioning]"]) == 2
    assert "this stage builds" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "e"), "synthetic_export=1", "tasks=[video_summary]"]) == 2
    assert "'providers' has 0 entries" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "e")]) == 2
    assert "sources' is empty" in capsys.readouterr().err


def test_dry_run_plans_the_caption_requests_tokens_and_cost(tmp_path):
    """Caption tasks in a dry run: units per task and provider, requests, and tokens and cost at the configured
    prices (input = prompt characters / chars_per_token, output = output_tokens per unit); no key, no call."""
    from medgrpo_ray.curation.providers import messages_for
    from medgrpo_ray.workflows.curation import caption_unit, convert_sources, synthetic_sources, units

    providers = ("providers=[{name: gpt, model: m1, api_key_env: UNSET_KEY_VAR, price_per_1k_input: 2.0, "
                 "price_per_1k_output: 8.0}, {name: gemini, model: m2, api_key_env: UNSET_KEY_VAR, "
                 "price_per_1k_input: 0.5, price_per_1k_output: 1.0}]")
    cfg = load_curation_config(None, ["synthetic_export=1", "records_per_video=1", "tasks=[tal,video_summary,region_caption]",
                                      providers, "captions.output_tokens.video_summary=100",
                                      "captions.output_tokens.region_caption=10"])
    plan = run_curation(cfg, tmp_path, dry_run=True, log=None)
    c = plan["captions"]
    videos, _ = convert_sources(synthetic_sources(tmp_path / "native", 0, 1))
    built = [u for v, t, k in units(videos, cfg) if t != "tal" for u in [caption_unit(v, t, k, cfg, tmp_path)]
             if not isinstance(u, str)]
    assert c["units"] == c["pending"] == {"region_caption": 1, "video_summary": 3}  # VS: 3 sources; RC: CholecTrack20
    assert c["unanswerable"] == {"region_caption": 3, "video_summary": 1}
    images = sum(min(8, len(u.frame_lines)) for u in built)  # captions.max_frames 8 x tokens_per_image 255
    tokens_in = round(sum(len(m["content"]) for u in built for m in messages_for(u)) / 4.0) + 255 * images
    gpt, gemini = c["providers"]["gpt"], c["providers"]["gemini"]
    assert (gpt["requests"], gpt["requests_max"], gpt["input_tokens"], gpt["output_tokens"]) == (4, 8, tokens_in, 310)
    assert gpt["cost_usd"] == pytest.approx((tokens_in * 2.0 + 310 * 8.0) / 1000, abs=1e-4)
    assert gemini["cost_usd_max"] == pytest.approx(2 * (tokens_in * 0.5 + 310 * 1.0) / 1000, abs=1e-4)
    assert plan["llm_calls"] == 8 and not (tmp_path / "manifest.json").exists()


def test_jpeg_frame_lists_written_once_and_pass_the_data_check(tmp_path):
    """frames=jpeg: every output record's `video` is its sampled frames under OUT/frames/<source>/<video>/, one
    file per (video, native frame) shared by the records that sample it, each record's frame count its clip's
    floor(length x fps); launch/check_data.py's check passes them all; a rerun writes no frame and the same
    records."""
    from medgrpo_ray.curation.clips import n_frames
    from medgrpo_ray.data.video import FrameBudget
    from medgrpo_ray.workflows.check_data.run import check_dataset

    cfg = load_curation_config(None, ["synthetic_export=1", "records_per_video=2", "standard_total=0",
                                      "val_fraction=0.0", "frames=jpeg"])
    result = run_curation(cfg, tmp_path, log=None)
    large = _records(tmp_path / "large.parquet")
    files = {p for r in large for p in r["video"]}
    assert large and all(isinstance(r["video"], list) for r in large)
    assert all(p.startswith(f"frames/{r['data_source']}/{r['metadata']['video_id']}/") and p.endswith(".jpg")
               for r in large for p in r["video"])
    assert all(len(r["video"]) == n_frames(r["curation"]["clip"][1] - r["curation"]["clip"][0],
                                           float(r["metadata"]["fps"])) for r in large)
    assert all("start_time" not in r["metadata"] for r in large)
    on_disk = {str(p.relative_to(tmp_path)) for p in (tmp_path / "frames").rglob("*") if p.is_file()}
    assert on_disk == files and result["frames"]["written"] == len(files) == result["frames"]["files"]
    assert sum(len(r["video"]) for r in large) > len(files)  # frames shared between records: written once
    report = check_dataset(tmp_path / "large.parquet", FrameBudget(max_frames=8), video_root=str(tmp_path), workers=1)
    assert (report.records, report.bad, report.problems) == (len(large), 0, [])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["frames"] == {"layout": "jpeg", "records": len(large), "files": len(files)}
    rerun = run_curation(cfg, tmp_path, log=None)
    assert rerun["frames"]["written"] == 0 and _records(tmp_path / "large.parquet") == large
