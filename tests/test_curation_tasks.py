"""Template tasks from SourceVideos (curation/tasks.py, clips.py, templates.py) and the self-score gate
(curation/selfcheck.py): hand-built videos of each label kind give records the evaluator scores perfectly against
themselves, deterministic under a seed; a record with a drifted format is rejected with its reason."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from medgrpo_ray.curation.clips import Clip, choose_fps, fps_text, rng_for
from medgrpo_ray.curation.schema import Box, CvsInterval, Segment, Skill, SourceVideo
from medgrpo_ray.curation.selfcheck import self_score_problem
from medgrpo_ray.curation.tasks import SKILL_ASPECTS, TaskSettings, Unanswerable, build
from medgrpo_ray.curation.templates import TEMPLATES_VERSION
from medgrpo_ray.data.records import VideoRecord

S = TaskSettings(seed=3)


def nurvid() -> SourceVideo:
    steps = ("Check", "Disinfect skin", "Blood collection")  # the built-in table's Intravenous Blood Sampling list
    return SourceVideo("NurViD", "abcdefghijk", 30.0, (640, 360), 90.0, video_path="videos/abcdefghijk.mp4",
                       segments=[Segment(2.0, 20.0, steps[0]), Segment(20.0, 41.5, steps[1]),
                                 Segment(41.5, 70.0, steps[2]), Segment(75.0, 80.0, steps[1])],
                       procedure="Intravenous Blood Sampling")


def track20() -> SourceVideo:
    """CholecTrack20-style: boxes at native frames 4326, 4351, ... (25 fps) -> 173.04 s, 174.04 s, ..."""
    boxes = {f / 25: [Box("grasper", 100.0 + k, 50.0, 200.0 + k, 150.5, track_id="1")]
             for k, f in enumerate(range(4326, 4326 + 25 * 8, 25))}
    return SourceVideo("CholecTrack20", "VID31", 25.0, (854, 480), 400.0, video_path="videos/VID31.mp4", boxes=boxes)


def jigsaws() -> SourceVideo:
    scores = dict(zip(SKILL_ASPECTS, (2, 3, 2, 2, 3, 2)))
    return SourceVideo("JIGSAWS", "Suturing_B001", 30.0, None, None, video_path="Suturing/video/B001.avi",
                       segments=[Segment(0.0, 3.0, "G1", "gesture"), Segment(3.0, 95.0, "G2", "gesture")],
                       skill=Skill("N", scores, 13), procedure="Suturing")


def cvs() -> SourceVideo:
    return SourceVideo("Cholec80-CVS", "video01", 25.0, None, 1200.0, video_path="videos/video01.mp4",
                       cvs=[CvsInterval(65.0, 130.0, 1, 0, 2)])


@pytest.mark.parametrize("task,video", [("tal", nurvid), ("next_action", nurvid), ("stg", track20),
                                        ("skill_assessment", jigsaws), ("cvs_assessment", cvs)])
def test_every_template_record_scores_perfectly_against_itself(task, video):
    v = video()
    for k in range(8):
        rec = build(task, v, S, k)
        assert self_score_problem(rec) is None, (k, rec["conversations"][1]["value"], rec["struc_info"])
        parsed = VideoRecord.from_dict(rec)
        assert parsed.task == task and parsed.dataset == v.source
        assert rec["curation"]["templates_version"] == TEMPLATES_VERSION and rec["curation"]["seed"] == 3
        meta = rec["metadata"]
        assert meta["video_id"] == v.video_id and meta["fps"] in {"0.1", "0.2", "0.25", "0.5", "1.0", "2.0", "3.0"}
        start, end = rec["curation"]["clip"]
        assert meta["input_video_start_frame"] == str(round(start * v.native_fps))
        assert meta["start_time"] == start and meta["end_time"] == end and 0 <= start < end
        assert len(Clip(start, end, float(meta["fps"])).times()) <= S.frame_cap
    assert build(task, v, S, 5) == build(task, v, S, 5)  # seeded by (seed, video, task, k)


def test_hand_worked_answers():
    """TAG: the label's spans clipped to the clip, relative to its start; STG: keys from 0.0 in steps of 1.0
    (173.04 s - 173 s = 0.04 -> "0.0"), boxes in pixels; SA/CVS: the source's scores verbatim."""
    rec = build("tal", nurvid(), S, 0)
    start, end = rec["curation"]["clip"]
    label = rec["struc_info"][0]["action"]
    want = [(round(max(a, start) - start, 1), round(min(b, end) - start, 1))
            for a, b, l in ((2.0, 20.0, "Check"), (20.0, 41.5, "Disinfect skin"), (41.5, 70.0, "Blood collection"),
                            (75.0, 80.0, "Disinfect skin")) if l == label and min(b, end) > max(a, start)]
    assert [(s["start"], s["end"]) for s in rec["struc_info"][0]["spans"]] == want
    assert label in rec["conversations"][0]["value"].rsplit(".", 2)[-2]  # the instruction names the action
    stg = build("stg", track20(), S, 0)
    boxes = stg["struc_info"][0]["bbox_dict"]
    assert list(boxes)[0] == "0.0" and all(float(b) - float(a) == 1.0 for a, b in zip(boxes, list(boxes)[1:]))
    assert stg["curation"]["clip"][0] == float(int(min(track20().boxes)))  # 173.0
    first = stg["curation"]["clip"][0] + 0.04  # the first box's time: frame 4326 + 25 k
    k = round((first - 4326 / 25))
    assert boxes["0.0"] == [100.0 + k, 50.0, 200.0 + k, 150.5]  # pixels as the source gives them
    sa = build("skill_assessment", jigsaws(), S, 0)
    assert sa["conversations"][1]["value"].startswith("Respect for tissue: 2/5, Suture/needle handling: 3/5")
    assert sa["curation"]["clip"] == [0.0, 95.0]  # the whole trial (duration from the last gesture)
    c = build("cvs_assessment", cvs(), S, 0)
    assert c["conversations"][1]["value"] == "Two structures: 1, Cystic plate: 0, Hepatocystic triangle: 2"
    lo, hi = c["curation"]["clip"]
    assert 65.0 <= lo < hi <= 130.0
    nap = build("next_action", nurvid(), S, 0)
    assert nap["conversations"][1]["value"] in ("Disinfect skin", "Blood collection")
    assert "Intravenous Blood Sampling" in nap["conversations"][0]["value"]


def test_drifted_formats_are_rejected_with_a_reason():
    stg = build("stg", track20(), S, 0)
    bad = copy.deepcopy(stg)
    info = bad["struc_info"][0]
    info["bbox_dict"] = {f"{float(k) + 0.25:.2f}": b for k, b in info["bbox_dict"].items()}  # "0.25" never matches
    assert "stg: self mIoU" in self_score_problem(bad)
    tal = build("tal", nurvid(), S, 0)
    zero = copy.deepcopy(tal)
    zero["struc_info"][0]["spans"] = [{"start": 3.0, "end": 3.0}]
    zero["conversations"][1]["value"] = "3.0-3.0 seconds."
    assert "tal: self meanIoU" in self_score_problem(zero)
    nap = build("next_action", nurvid(), S, 0)
    nap["conversations"][1]["value"] = "Draw blood"  # not in the procedure's class list
    assert "next_action: self score" in self_score_problem(nap)
    sa = build("skill_assessment", jigsaws(), S, 0)
    sa["conversations"][1]["value"] = sa["conversations"][1]["value"].replace("Respect for tissue", "Respect")
    assert "['Respect for tissue'] unpaired" in self_score_problem(sa)


def test_unanswerable_units_say_why():
    bare = SourceVideo("CholecTrack20", "VID99", 25.0, video_path="v.mp4", duration_s=10.0)
    for task, reason in (("stg", "no track"), ("tal", "no segment"), ("next_action", "no step"),
                         ("skill_assessment", "no skill"), ("cvs_assessment", "no CVS")):
        with pytest.raises(Unanswerable, match=reason):
            build(task, bare, S)
    no_media = nurvid()
    no_media.video_path = None
    with pytest.raises(Unanswerable, match="no video file and no frames"):
        build("tal", no_media, S)


def test_frame_dumps_give_frame_lists_no_faster_than_stored():
    v = SourceVideo("CholecT50", "VID01", 1.0, (854, 480), 60.0,
                    frame_paths={i: f"videos/VID01/{i:06d}.png" for i in range(60)},
                    segments=[Segment(0.0, 30.0, "preparation", "phase"),
                              Segment(30.0, 60.0, "carlot-triangle-dissection", "phase")])
    rec = build("tal", v, S, 1)
    assert isinstance(rec["video"], list) and float(rec["metadata"]["fps"]) <= 1.0
    assert all(p.startswith("videos/VID01/") for p in rec["video"]) and self_score_problem(rec) is None


def test_fps_prior_and_frame_cap():
    rng = np.random.default_rng(0)
    draws = [choose_fps(rng, 10.0) for _ in range(4000)]
    share = {f: draws.count(f) / len(draws) for f in set(draws)}
    assert share[0.5] == pytest.approx(0.633, abs=0.03) and share[1.0] == pytest.approx(0.22, abs=0.03)
    assert all(Clip(0.0, 1800.0, choose_fps(rng, 1800.0)).times().__len__() <= 64 for _ in range(50))
    assert choose_fps(rng, 1800.0) == pytest.approx(1 / 29)  # 1800 / 64 = 28.1 s per frame -> one every 29 s
    assert fps_text(0.5) == "0.5" and fps_text(1.0) == "1.0" and fps_text(0.25) == "0.25"
    a, b = rng_for(0, "VID01", "tal"), rng_for(0, "VID01", "tal")
    assert a.integers(1 << 30) == b.integers(1 << 30)
