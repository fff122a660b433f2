"""Assembly (curation/assemble.py), hand-worked: water-filling over tasks then sources, round-robin over videos,
determinism per seed, test-video exclusion (ids from a test file, a merged results file, a submission and a plain
list), splits by video with the official splits kept, dedup, and the written files read back by records_io."""
from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from medgrpo_ray.curation.assemble import (assemble, balance, dedup, exclude, exclusion_ids, manifest, round_robin,
                                           split_by_video, video_id_of, water_fill, write_outputs)
from medgrpo_ray.curation.schema import CvsInterval, Segment, SourceVideo
from medgrpo_ray.curation.tasks import TaskSettings, build
from medgrpo_ray.data.records_io import load_records


def rec(task: str, source: str, vid: str, k: int = 0, answer: str | None = None, qa_type: str | None = None,
        fps: str = "1.0", decision: str | None = None) -> dict:
    """A minimal record in the published format (balancing reads only task, source, video, window, answer)."""
    cur = {"unit": f"{source}/{vid}/{task}/{k}", "seed": 0, "clip": [float(k), float(k) + 10.0]}
    if decision:
        cur["decision"] = decision
    return {"conversations": [{"from": "human", "value": "<video>\nWhat comes next?"},
                              {"from": "gpt", "value": answer if answer is not None else f"{vid}-{k}"}],
            "video": f"videos/{vid}.mp4",
            "metadata": {"fps": fps, "video_id": vid, "input_video_start_frame": str(k * 25),
                         "input_video_end_frame": str(k * 25 + 250), "start_time": float(k),
                         "end_time": float(k) + 10.0},
            "qa_type": qa_type or task, "data_source": source, "struc_info": [], "curation": cur}


def cell(task, source, n, videos=None):
    """n records of one (task, source) cell, over `videos` video ids (default: one video per record)."""
    videos = videos or [f"{source}_{task}_v{i}" for i in range(n)]
    return [rec(task, source, videos[i % len(videos)], i) for i in range(n)]


def table_of(table):
    return {(row["task"], row["source"]): (row["quota"], row["selected"]) for row in table}


# ---- water-filling ------------------------------------------------------------------------------------------
def test_water_fill_hand_worked():
    assert water_fill({"a": 10, "b": 2, "c": 10}, 12, ["a", "b", "c"]) == {"a": 5, "b": 2, "c": 5}
    assert water_fill({"x": 1, "y": 9}, 5, ["x", "y"]) == {"x": 1, "y": 4}
    # uneven: 13 -> b keeps 2, 11 over a and c -> 6 / 5, the extra unit to the first in order
    assert water_fill({"a": 10, "b": 2, "c": 10}, 13, ["c", "a", "b"]) == {"a": 5, "b": 2, "c": 6}
    assert water_fill({"a": 3, "b": 2}, 100, ["a", "b"]) == {"a": 3, "b": 2}  # target above what exists
    assert water_fill({"a": 0, "b": 4}, 3, ["a", "b"]) == {"a": 0, "b": 3}


def test_balance_counts_per_task_and_source_follow_the_rule():
    """Target 12 over tasks with 10, 2, 10 records -> 5, 2, 5; inside `tal` sources with 1 and 9 -> 1 and 4."""
    records = (cell("tal", "NurViD", 1) + cell("tal", "AVOS", 9) + cell("next_action", "CholecT50", 2)
               + cell("stg", "CholecTrack20", 10))
    random.Random(0).shuffle(records)
    selected, table = balance(records, 12, seed=7)
    assert table_of(table) == {("tal", "AVOS"): (4, 4), ("tal", "NurViD"): (1, 1),
                               ("next_action", "CholecT50"): (2, 2), ("stg", "CholecTrack20"): (5, 5)}
    got = Counter((r["qa_type"], r["data_source"]) for r in selected)
    assert got == {("tal", "AVOS"): 4, ("tal", "NurViD"): 1, ("next_action", "CholecT50"): 2,
                   ("stg", "CholecTrack20"): 5}
    assert {row["task"]: row["task_quota"] for row in table} == {"tal": 5, "next_action": 2, "stg": 5}
    assert len(selected) == 12 and len({id(r) for r in selected}) == 12


def test_cap_mode_takes_per_cell_caps():
    records = cell("tal", "NurViD", 6) + cell("tal", "AVOS", 2) + cell("stg", "CholecTrack20", 5)
    selected, table = balance(records, None, seed=0, mode="cap",
                              caps={("tal", "NurViD"): 3, "stg": 4, "*": 1})
    assert table_of(table) == {("tal", "NurViD"): (3, 3), ("tal", "AVOS"): (1, 1), ("stg", "CholecTrack20"): (4, 4)}
    # equal mode with caps: the caps bound a cell before water-filling (NurViD 6 -> 2, so AVOS gets the rest)
    _, table = balance(records, 4, seed=0, caps={"tal/NurViD": 2})
    assert table_of(table)[("tal", "NurViD")] == (1, 1) and table_of(table)[("tal", "AVOS")] == (1, 1)
    with pytest.raises(ValueError):
        balance(records, None, mode="equal")


# ---- round-robin over videos --------------------------------------------------------------------------------
def test_round_robin_takes_every_video_before_any_repeat():
    """Quota 4 from videos A (3 records), B (1), C (2): one from each of A, B, C, then one more from A or C,
    whichever comes first in the seeded video order."""
    records = [rec("tal", "NurViD", "A", k) for k in range(3)] + [rec("tal", "NurViD", "B", 0)] + \
              [rec("tal", "NurViD", "C", k) for k in range(2)]
    for seed in range(6):
        picked = round_robin(records, 4, seed, "tal", "NurViD")
        vids = [video_id_of(r) for r in picked]
        assert sorted(vids[:3]) == ["A", "B", "C"] and vids[3] in ("A", "C")
        assert vids[3] == [v for v in vids[:3] if v != "B"][0]  # the seeded video order, again in round two
        shuffled = records[:]
        random.Random(seed).shuffle(shuffled)
        assert round_robin(shuffled, 4, seed, "tal", "NurViD") == picked  # the input order does not matter
        sel, table = balance(shuffled, 4, seed=seed)
        assert sel == picked and table[0]["videos_selected"] == 3 and table[0]["videos_available"] == 3
    assert len({tuple(json.dumps(r) for r in round_robin(records, 4, s, "tal", "NurViD")) for s in range(6)}) > 1


def test_balance_deterministic_per_seed_and_different_across_seeds():
    records = [rec("tal", src, f"{src}{v}", k) for src in ("NurViD", "AVOS") for v in range(20) for k in range(3)]
    records += [rec("stg", "CholecTrack20", f"t{v}", k) for v in range(15) for k in range(2)]
    a, ta = balance(records, 30, seed=1)
    b, tb = balance(list(reversed(records)), 30, seed=1)
    assert a == b and ta == tb
    c, tc = balance(records, 30, seed=2)
    assert tc == ta and [r["curation"]["unit"] for r in c] != [r["curation"]["unit"] for r in a]
    for task, src in (("tal", "NurViD"), ("tal", "AVOS"), ("stg", "CholecTrack20")):
        picked = [r for r in a if r["qa_type"] == task and r["data_source"] == src]
        assert len({video_id_of(r) for r in picked}) == len(picked)  # quota below the video count: all distinct


# ---- exclusion ----------------------------------------------------------------------------------------------
def test_exclusion_from_test_merged_submission_and_list_files(tmp_path):
    test_file = tmp_path / "medvidbench_test.json"
    test_file.write_text(json.dumps([rec("tal", "NurViD", "yt_aaa"), rec("stg", "CholecTrack20", "VID31")]))
    merged = tmp_path / "results.json"
    merged.write_text(json.dumps({"0": {"metadata": {"video_id": "Suturing_B001", "fps": "1.0"}, "qa_type": "tal",
                                        "answer": "", "gnd": "x"}}))
    submission = tmp_path / "submission.json"
    submission.write_text(json.dumps([{"id": "video01&&0&&250&&0.5", "qa_type": "cvs_assessment",
                                       "prediction": "x"}]))
    plain = tmp_path / "ids.txt"
    plain.write_text("# MedVidU val\nVID77\n\n")
    ids = exclusion_ids([test_file, str(merged), submission, plain, "extra_id"])
    assert ids == {"yt_aaa", "VID31", "Suturing_B001", "video01", "VID77", "extra_id"}
    assert exclusion_ids(test_file) == {"yt_aaa", "VID31"}

    records = [rec("tal", "NurViD", "yt_aaa", k) for k in range(3)] + [rec("tal", "NurViD", "yt_bbb")] + \
              [rec("stg", "CholecTrack20", "VID31"), rec("cvs_assessment", "Cholec80-CVS", "video01"),
               rec("stg", "CholecTrack20", "VID32"), rec("next_action", "CholecT50", "VID77")]
    kept, excluded = exclude(records, ids)
    assert {video_id_of(r) for r in kept} == {"yt_bbb", "VID32"}
    assert excluded == {"NurViD": 3, "CholecTrack20": 1, "Cholec80-CVS": 1, "CholecT50": 1}
    out = assemble(records, exclusion=[test_file, submission, plain, merged], target_total=10)
    assert not {video_id_of(r) for r in out["large"] + out["standard"] + out["val"]} & ids
    assert out["manifest"]["excluded_by_source"] == dict(sorted(excluded.items()))

    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(ValueError):
        exclusion_ids(empty)
    with pytest.raises(FileNotFoundError):
        exclusion_ids(str(tmp_path / "missing.json"))


# ---- splits -------------------------------------------------------------------------------------------------
def test_split_by_video_disjoint_and_official_splits_kept():
    records = [rec("tal", "CholecT50", f"VID{v:02d}", k) for v in range(1, 41) for k in range(3)]
    records += [rec("stg", "CholecTrack20", "VID01", 0)]  # the same id in another source is another video
    official = {("CholecT50", "VID01"): "test", ("CholecT50", "VID02"): "validation", ("cholect50", "VID03"): "train",
                ("CholecT50", "VID04"): None}
    res = split_by_video(records, official, val_fraction=0.3, seed=5)
    members = {name: {(r["data_source"], video_id_of(r)) for r in getattr(res, name)}
               for name in ("train", "val", "test")}
    assert not (members["train"] & members["val"] or members["train"] & members["test"]
                or members["val"] & members["test"])
    assert members["test"] == {("CholecT50", "VID01")} and res.test_excluded == {"CholecT50": 3}
    assert res.assignment[("CholecTrack20", "VID01")] in ("train", "val")
    assert res.assignment[("CholecT50", "VID02")] == "val" and res.assignment[("CholecT50", "VID03")] == "train"
    assert len(res.train) + len(res.val) + len(res.test) == len(records)
    assert res.official == {"test": 1, "val": 1, "train": 1} and sum(res.hashed.values()) == 38
    assert 0 < res.hashed["val"] < 38  # hashed videos land in both splits
    again = split_by_video(list(reversed(records)), official, val_fraction=0.3, seed=5)
    assert again.assignment == res.assignment
    with pytest.raises(ValueError):
        split_by_video(records, {("CholecT50", "VID01"): "holdout"})


# ---- dedup --------------------------------------------------------------------------------------------------
def test_dedup_keeps_the_first():
    a = rec("tal", "NurViD", "v1", 0, answer="1.0-3.0 seconds.")
    a2 = json.loads(json.dumps(a))
    a2["conversations"][0]["value"] = "<video>\nsame window and answer, other question wording"
    other_answer = rec("tal", "NurViD", "v1", 0, answer="4.0-5.0 seconds.")
    other_window = rec("tal", "NurViD", "v1", 1, answer="1.0-3.0 seconds.")
    other_source = rec("tal", "AVOS", "v1", 0, answer="1.0-3.0 seconds.")
    kept, dropped = dedup([a, other_answer, a2, other_window, other_source, a])
    assert dropped == 2 and kept[0] is a and kept == [a, other_answer, other_window, other_source]


# ---- manifest and files -------------------------------------------------------------------------------------
def _videos() -> list[SourceVideo]:
    steps = ("Check", "Disinfect skin", "Blood collection")
    out = []
    for i in range(3):
        out.append(SourceVideo("NurViD", f"nurvid{i:03d}", 30.0, (640, 360), 90.0, video_path=f"videos/n{i}.mp4",
                               segments=[Segment(2.0, 20.0, steps[0]), Segment(20.0, 41.5, steps[1]),
                                         Segment(41.5, 70.0, steps[2])],
                               procedure="Intravenous Blood Sampling"))
        out.append(SourceVideo("Cholec80-CVS", f"video{i + 1:02d}", 25.0, None, 1200.0,
                               video_path=f"videos/video{i + 1:02d}.mp4", cvs=[CvsInterval(65.0, 130.0, 1, 0, 2)]))
    return out


def test_written_files_load_back_with_zero_skipped(tmp_path):
    s = TaskSettings(seed=3)
    records = []
    for v in _videos():
        for task in (("tal", "next_action") if v.source == "NurViD" else ("cvs_assessment",)):
            records += [build(task, v, s, k) for k in range(3)]
    records.append(json.loads(json.dumps(records[0])))  # a duplicate
    for r in records[:4]:
        r["curation"]["decision"] = "accept"
    out = assemble(records, seed=3, target_total=8, exclusion=["video03"], val_fraction=0.0,
                   official={("Cholec80-CVS", "video02"): "test"}, rejects=Counter({"self-score": 2, "stg keys": 1}))
    m = out["manifest"]
    assert m["dedup_dropped"] == 1 and m["excluded_by_source"] == {"Cholec80-CVS": 3}
    assert m["official_test_excluded_by_source"] == {"Cholec80-CVS": 3}
    assert m["large"]["records"] == 21 and m["standard"]["records"] == 8  # 27 - 3 excluded - 3 official test
    assert m["large"]["by_task"] == {"cvs_assessment": 3, "next_action": 9, "tal": 9}
    assert m["rejects"] == {"self-score": 2, "stg keys": 1} and m["large"]["by_variant"] == {"none": 21}
    assert m["large"]["by_decision"] == {"accept": 4} and sum(m["large"]["by_fps"].values()) == 21
    # 8 over three tasks with 3, 9, 9 -> 2 each, the 2 left to the first two tasks of the seeded order
    assert sorted(row["task_quota"] for row in m["balance"]) == [2, 3, 3]
    assert m["standard"]["by_task"] == {row["task"]: row["selected"] for row in m["balance"]}
    paths = write_outputs(tmp_path / "out", out["large"], out["standard"], m, val=out["val"], json_copies=True)
    for name, want in (("large", out["large"]), ("standard", out["standard"]), ("val", out["val"])):
        for suffix in (".parquet", ".json"):
            loaded, report = load_records(paths[name + suffix])
            assert report.skipped == 0 and [r.to_dict() for r in loaded] == want
    written = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert written["files"] == {"large.parquet": 21, "large.json": 21, "standard.parquet": 8, "standard.json": 8,
                                "val.parquet": 0, "val.json": 0}
    assert written["standard"] == m["standard"]


def test_manifest_counts_variants_fps_and_decisions():
    large = [rec("dense_captioning", "NurViD", "a", 0, qa_type="dense_captioning_gpt", fps="0.5", decision="accept"),
             rec("dense_captioning", "NurViD", "a", 1, qa_type="dense_captioning_gemini", fps="0.5",
                 decision="regenerated"),
             rec("tal", "NurViD", "b", 0, fps="1.0")]
    m = manifest(large, large[:1], Counter({"ungrounded": 4}), {"settings": {"seed": 0}})
    assert m["large"]["by_task"] == {"dense_captioning": 2, "tal": 1}
    assert m["large"]["by_variant"] == {"gemini": 1, "gpt": 1, "none": 1}
    assert m["large"]["by_fps"] == {"0.5": 2, "1.0": 1} and m["large"]["videos"] == 2
    assert m["large"]["by_decision"] == {"accept": 1, "regenerated": 1}
    assert m["large"]["by_task_source"] == {"dense_captioning/NurViD": 2, "tal/NurViD": 1}
    assert m["standard"]["records"] == 1 and m["rejects"] == {"ungrounded": 4} and m["settings"] == {"seed": 0}
    with pytest.raises(ValueError):
        manifest(large, [], None, {"large": 1})
