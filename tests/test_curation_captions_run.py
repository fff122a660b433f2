"""The caption tasks inside the curation run (launch/curate.py), against two scripted caption servers on 127.0.0.1
(tests/caption_server.py): each (task, source) cell gets one behaviour (agree, omit a fact, invent an instrument,
malformed JSON then a good regeneration, 500 on one side or both, a grounded paraphrase that disagrees) and the
manifest counts exactly the decisions the rule gives them; a run SIGKILLed midway and restarted logs every unit
once, pays for no finished unit again, serves what it had received from the reply cache and writes what an
uninterrupted run writes."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from caption_server import CaptionControl, make_caption_app, scripted
from judge_server import JudgeServer
from medgrpo_ray.config.curation import load_curation_config
from medgrpo_ray.curation.caption_units import build_unit
from medgrpo_ray.curation.caption_frames import attach, frame_job, render_job
from medgrpo_ray.curation.caption_stage import frame_settings
from medgrpo_ray.curation.providers import CaptionCache, input_hash, messages_for, text_of
from medgrpo_ray.curation.tasks import Unanswerable
from medgrpo_ray.data.records_io import load_records
from medgrpo_ray.workflows.curation import UNITS_LOG, convert_sources, run_curation, synthetic_sources, task_settings

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "MEDGRPO_TEST_CAPTION_KEY"
KEY = "sk-test-curate-5d1c8e"
TASKS = ["dense_captioning", "video_summary", "region_caption", "tal"]
SETTINGS = {"synthetic_export": 2, "records_per_video": 2, "standard_total": 0, "val_fraction": 0.0, "tasks": TASKS}
PLAN_GPT = {("dense_captioning", "NurViD"): "malformed_then_agree", ("dense_captioning", "JIGSAWS"): "500"}
PLAN_GEMINI = {("region_caption", "CholecTrack20"): "invent", ("dense_captioning", "CholecTrack20"): "500",
               ("video_summary", "NurViD"): "omit", ("dense_captioning", "NurViD"): "malformed_then_agree",
               ("video_summary", "JIGSAWS"): "alt", ("dense_captioning", "JIGSAWS"): "500"}
# (task, source) -> (first decision, final decision, reject reasons per unit), by the rule (validate.decide)
EXPECTED = {
    ("video_summary", "CholecTrack20"): (("keep_both", "agree"), ("keep_both", "agree"), []),
    ("region_caption", "CholecTrack20"): (("keep_one", "one_grounded"), ("keep_one", "one_grounded"),
                                          ["gemini: grounding: unsupported term"]),
    ("dense_captioning", "CholecTrack20"): (("keep_one", "other_provider_error"), ("keep_one", "other_provider_error"),
                                           ["gemini: provider error: server_error"]),
    ("video_summary", "NurViD"): (("keep_one", "one_grounded"), ("keep_one", "one_grounded"),
                                  ["gemini: grounding: missing fact"]),
    ("dense_captioning", "NurViD"): (("regenerate", "none_grounded"), ("keep_both", "agree"),
                                     ["gpt: format: not JSON", "gemini: format: not JSON"]),
    ("video_summary", "JIGSAWS"): (("review", "disagree_review"), ("review", "disagree_review"), ["disagree"]),
    ("dense_captioning", "JIGSAWS"): (("regenerate", "both_provider_error"), ("drop", "both_provider_error"),
                                      ["gpt: provider error: server_error", "gemini: provider error: server_error"] * 2
                                      + ["still failing after regeneration"]),
}


@pytest.fixture(scope="module")
def servers():
    out = {}
    for name, plan in (("gpt", PLAN_GPT), ("gemini", PLAN_GEMINI)):
        ctl = CaptionControl(expected_key=KEY, behaviour=scripted(plan))
        out[name] = JudgeServer(ctl, app_factory=make_caption_app).start()
    yield out
    for s in out.values():
        s.stop()


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """The synthetic scenes in their native formats, exported once; each run links them under OUT/native."""
    root = tmp_path_factory.mktemp("native")
    synthetic_sources(root, 0, SETTINGS["synthetic_export"])
    return root


def setup_run(out: Path, native: Path, servers, max_in_flight: int = 8) -> Path:
    """OUT with the shared export linked in, and the run's preset (providers on the two servers, caches in OUT)."""
    out.mkdir(parents=True)
    (out / "native").symlink_to(native, target_is_directory=True)
    providers = [{"name": name, "base_url": s.base_url, "model": f"{name}-test", "api_key_env": KEY_ENV,
                  "requests_per_minute": 0, "max_in_flight": 16, "timeout_s": 10, "max_retries": 1,
                  "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "cache_dir": str(out / "cache" / name)}
                 for name, s in servers.items()]
    preset = out / "preset.yaml"
    preset.write_text(yaml.safe_dump({**SETTINGS, "providers": providers, "captions": {"max_in_flight": max_in_flight}}))
    return preset


def expected_units(native: Path, frames: bool = False) -> dict[tuple[str, str], list]:
    """(task, source) -> the caption units, built here directly from the converted sources (`frames`: with the
    frames the run sends attached, rendered here from the source files)."""
    cfg = load_curation_config(None, [f"{k}={json.dumps(v)}" for k, v in SETTINGS.items()])
    fs = frame_settings(cfg)
    videos, _ = convert_sources(synthetic_sources(native, 0, SETTINGS["synthetic_export"]))
    cells: dict[tuple[str, str], list] = {}
    for v in videos:
        for task in TASKS[:3]:
            for k in range(SETTINGS["records_per_video"]):
                try:
                    unit = build_unit(task, v, task_settings(cfg), k)
                except Unanswerable:
                    continue
                if frames:
                    attach(unit, render_job(frame_job(unit, fs), v.extra["source_root"], fs))
                cells.setdefault((task, v.source), []).append(unit)
    return cells


def curate(preset: Path, out: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, KEY_ENV: KEY, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(ROOT / "launch" / "curate.py"), "--config", str(preset),
                             "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **popen)


def comparable(manifest: dict) -> dict:
    """The manifest without what belongs to one process (timings, this run's requests, units built vs reused,
    the settings that name paths)."""
    return {k: v for k, v in manifest.items() if k not in ("seconds", "caption_requests", "units", "config")}


@pytest.fixture(scope="module")
def straight(tmp_path_factory, native, servers):
    """One uninterrupted run, in process."""
    out = tmp_path_factory.mktemp("straight") / "out"
    preset = setup_run(out, native, servers)
    mp = pytest.MonkeyPatch()
    mp.setenv(KEY_ENV, KEY)
    try:
        result = run_curation(load_curation_config(preset), out, log=None)
    finally:
        mp.undo()
    return out, result


def test_decisions_and_rejects_in_the_manifest_are_the_rules(straight, native, servers):
    out, result = straight
    # every request carried the unit's frames as image parts (captions.send_frames defaults to true, max 8)
    sent = [n for s in servers.values() for n in s.control.images]
    assert sent and all(1 <= n <= 8 for n in sent) and max(sent) == 8
    m = json.loads((out / "manifest.json").read_text())
    cells = {c: len(us) for c, us in expected_units(native).items()}
    assert set(cells) == set(EXPECTED) and all(n >= 2 for n in cells.values())
    final, first, rejects = {}, {}, Counter()
    for cell, ((k0, r0), (k1, r1), reasons) in EXPECTED.items():
        final.setdefault(k1, Counter())[r1] += cells[cell]
        first.setdefault(k0, Counter())[r0] += cells[cell]
        rejects.update({r: n * cells[cell] for r, n in Counter(reasons).items()})
    c = m["captions"]
    print("decisions", c["decisions"], "first", c["first_decisions"], "rejects", c["caption_rejects"])
    assert c["decisions"] == {k: dict(v) for k, v in final.items()}
    assert c["first_decisions"] == {k: dict(v) for k, v in first.items()}
    assert c["caption_rejects"] == dict(rejects)
    assert c["regenerated"] == cells[("dense_captioning", "NurViD")] + cells[("dense_captioning", "JIGSAWS")]
    n = lambda task, src: cells[(task, src)]  # noqa: E731
    assert c["records"] == {
        "dense_captioning_gpt": n("dense_captioning", "CholecTrack20") + n("dense_captioning", "NurViD"),
        "dense_captioning_gemini": n("dense_captioning", "NurViD"),
        "video_summary_gpt": n("video_summary", "CholecTrack20") + n("video_summary", "NurViD"),
        "video_summary_gemini": n("video_summary", "CholecTrack20"),
        "region_caption_gpt": n("region_caption", "CholecTrack20")}
    assert c["review"] == n("video_summary", "JIGSAWS")
    assert m["rejects"]["caption drop: both_provider_error"] == n("dense_captioning", "JIGSAWS")
    assert m["rejects"]["caption review: disagree_review"] == n("video_summary", "JIGSAWS")
    # 4 formats x 2 videos x 2 draws; only CholecTrack20 has tracked boxes
    assert m["rejects"]["unanswerable: region_caption"] == 4 * 2 * 2 - n("region_caption", "CholecTrack20")
    review = [json.loads(x) for x in (out / "review.jsonl").read_text().splitlines()]
    assert len(review) == c["review"] and all(len(x["records"]) == 2 for x in review)

    large, report = load_records(out / "large.parquet")
    assert report.skipped == 0
    captions = [r.to_dict() for r in large if r.qa_type.split("_")[-1] in ("gpt", "gemini")]
    assert captions and all(r["curation"]["prompt_version"] and r["curation"]["decision"] in ("keep_both", "keep_one")
                            for r in captions)
    assert {r["curation"]["models"]["gemini"] for r in captions} == {"gemini-test"}
    assert m["large"]["by_variant"]["gpt"] >= 1 and "tal" in m["large"]["by_task"]
    assert result["caption_requests"]["gpt"]["cache_hits"] == 0
    for path in (out / "manifest.json", out / UNITS_LOG, out / "review.jsonl"):
        assert KEY not in path.read_text()


def caption_lines(out: Path) -> list[dict]:
    lines = []
    for line in (out / UNITS_LOG).read_text().splitlines() if (out / UNITS_LOG).exists() else []:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # torn by the kill
        lines.append(entry)
    return lines


def cache_rows(out: Path) -> dict[str, set[str]]:
    """Provider -> the input hashes of the replies in its cache."""
    rows = {}
    for name in ("gpt", "gemini"):
        conn = sqlite3.connect(out / "cache" / name / CaptionCache.FILENAME)
        rows[name] = {h for (h,) in conn.execute("SELECT input_hash FROM caption_replies")}
        conn.close()
    return rows


def test_sigkill_midway_then_restart_redoes_nothing_and_writes_the_same(straight, native, servers, tmp_path):
    out = tmp_path / "out"
    preset = setup_run(out, native, servers, max_in_flight=4)
    # slow enough to kill midway; gpt answers first, so units cut off between their two replies exist
    servers["gpt"].control.latency_s, servers["gemini"].control.latency_s = 0.03, 0.25
    try:
        ok0 = {n: s.control.ok for n, s in servers.items()}
        proc = curate(preset, out, start_new_session=True)
        deadline = time.monotonic() + 60
        while sum("decision" in e for e in caption_lines(out)) < 6:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the run logged no caption unit within 60 s"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not (out / "manifest.json").exists()
        before = caption_lines(out)
        finished = {e["unit"] for e in before if "decision" in e}
        ok_before = {n: s.control.ok - ok0[n] for n, s in servers.items()}
        rows = cache_rows(out)
        seen = {n: Counter(s.control.digests) for n, s in servers.items()}
        for s in servers.values():
            s.control.latency_s = 0.0
        restart = curate(preset, out)
        assert restart.wait(timeout=120) == 0, restart.stderr.read()
    finally:
        for s in servers.values():
            s.control.latency_s = 0.0

    m = json.loads((out / "manifest.json").read_text())
    keys = Counter(e["key"] for e in caption_lines(out))
    assert set(keys.values()) == {1} and len(keys) == m["units"]["built"] + m["units"]["from_log"]  # each unit once
    assert m["units"]["from_log"] == len(before) and 0 < len(finished) < sum(m["captions"]["units"].values())
    # the prompts of the units finished before the kill (first attempt, and the regeneration's)
    units = {u.unit: u for us in expected_units(native, frames=True).values() for u in us}
    done_msgs = [messages_for(units[e["unit"]], m_) for e in before if "decision" in e
                 for m_ in ([None] + ([e["missing"]] if e["attempts"] > 1 else []))]
    done_inputs = {input_hash(x) for x in done_msgs}
    # the restart serves from the cache exactly the replies received before the kill for unfinished units
    for n, hashes in rows.items():
        assert m["caption_requests"][n]["cache_hits"] == len(hashes - done_inputs)
        assert 0 <= ok_before[n] - len(hashes) <= 4  # at most the requests in flight at the kill were lost
    assert m["caption_requests"]["gpt"]["cache_hits"] > 0
    print(f"resume: {len(finished)} caption units finished before the kill, {len(before)} log lines; replies received "
          f"{ok_before}, cached {({n: len(h) for n, h in rows.items()})}, served from the cache on the restart "
          f"{({n: m['caption_requests'][n]['cache_hits'] for n in rows})}, restart requests "
          f"{({n: m['caption_requests'][n]['requests'] for n in rows})}")
    # and no finished unit's prompt reached a server again
    done_users = {hashlib.sha256(text_of(x[1]["content"]).encode()).hexdigest() for x in done_msgs}
    for n, s in servers.items():
        assert not done_users & set(s.control.digests - seen[n])
    # the same outputs as the uninterrupted run
    ref, _ = straight
    assert comparable(m) == comparable(json.loads((ref / "manifest.json").read_text()))
    for name in ("large", "standard"):
        got = [r.to_dict() for r in load_records(out / f"{name}.parquet")[0]]
        assert got == [r.to_dict() for r in load_records(ref / f"{name}.parquet")[0]]
    assert (out / "review.jsonl").read_text() == (ref / "review.jsonl").read_text()
