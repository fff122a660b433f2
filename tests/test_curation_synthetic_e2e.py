"""The curation stage end to end offline (issue 21): synthetic scenes exported in native formats
(curation/synthetic_export.py) -> each source's converter (no skips) -> template records of all five tasks, every one
at a perfect self-score, written and read back through the records I/O, their clips decoded, and their answers
checked by hand against the scene that drew the video. Also the converters' video pick-up (CholecTrack20:
`<VIDxx>.mp4` beside the JSON; Cholec80-CVS: `videos/<videoNN>.mp4`)."""
from __future__ import annotations

import json

import pytest

from medgrpo_ray.curation.schema import ConversionReport
from medgrpo_ray.curation.selfcheck import self_score_problem
from medgrpo_ray.curation.sources import cholec80_cvs, cholectrack20, converters
from medgrpo_ray.curation.synthetic_export import (FORMATS, JIGSAWS_GESTURES, cholectrack20_json, export,
                                                   make_scenes, tlwh)
from medgrpo_ray.curation.tasks import SKILL_ASPECTS, TaskSettings, build
from medgrpo_ray.data.records import VideoRecord
from medgrpo_ray.data.records_io import load_records, write_json
from medgrpo_ray.data.synthetic_scene import SOURCES
from medgrpo_ray.data.video import FrameBudget, decode_video

SETTINGS = TaskSettings(seed=5)
TASKS = {"CholecTrack20": ("stg", "tal"), "NurViD": ("tal", "next_action"), "JIGSAWS": ("skill_assessment", "tal"),
         "Cholec80-CVS": ("cvs_assessment",)}
EXPECTED_SKIPS = {"JIGSAWS": {"jigsaws_task_folder_missing": 2}}  # only Suturing is exported
K = 3  # records per (video, task)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """format -> (ExportedSource, {video id: SourceVideo}, report)."""
    out = {}
    for fmt, e in export(tmp_path_factory.mktemp("native"), seed=11, count=2).items():
        report = ConversionReport(fmt)
        videos = {v.video_id: v for v in converters()[fmt](e.root, report, **e.load_kwargs)}
        out[fmt] = (e, videos, report)
    return out


@pytest.fixture(scope="module")
def records(exported):
    """(format, task, SourceVideo, record) for K records of every applicable task of every exported video."""
    return [(fmt, task, v, build(task, v, SETTINGS, k))
            for fmt, (_, videos, _) in exported.items() for v in videos.values()
            for task in TASKS[fmt] for k in range(K)]


def test_converters_read_every_exported_video(exported):
    assert set(exported) == set(FORMATS)
    for fmt, (e, videos, report) in exported.items():
        assert report.videos == 2 and dict(report.skipped) == EXPECTED_SKIPS.get(fmt, {}), report.to_json()
        assert sorted(videos) == sorted(e.scenes)
        for v in videos.values():
            assert v.video_path and (e.root / v.video_path).is_file(), (fmt, v.video_id, v.video_path)


def test_converted_labels_are_the_scene_truth(exported):
    e, videos, _ = exported["CholecTrack20"]
    for vid, scene in e.scenes.items():
        v = videos[vid]
        assert v.frame_size == scene.size and v.split == "train"
        assert [(s.start, s.end, s.label) for s in v.segments] == \
            [(s.start, s.end, cholectrack20.PHASES[s.label]) for s in scene.segments]
        assert sorted(v.boxes) == [float(t) for t in range(scene.duration)]  # keys 0, 25, 50 ... -> 0, 1, 2 s
        for t, (box,) in v.boxes.items():
            k = int(box.track_id) - 1
            seg = scene.segments[k]
            assert seg.track.visible(t) and box.label == scene.spec.instruments[seg.label]
            assert max(abs(a - b) for a, b in zip(box.xyxy, seg.track.box(t))) < 1e-5  # 8-decimal tlwh
    e, videos, _ = exported["NurViD"]
    for vid, scene in e.scenes.items():
        v = videos[vid]
        assert v.procedure == scene.spec.procedure and v.duration_s == scene.duration
        assert [(s.start, s.end, s.label) for s in v.segments] == \
            [(s.start, s.end, scene.spec.labels[s.label]) for s in scene.segments]
    e, videos, _ = exported["JIGSAWS"]
    for vid, scene in e.scenes.items():
        v = videos[vid]
        assert [v.skill.scores[a] for a in SKILL_ASPECTS] == list(scene.skill) and v.skill.grs == sum(scene.skill)
        assert [(s.start, s.end, s.label) for s in v.segments] == \
            [(s.start, s.end, JIGSAWS_GESTURES[s.label]) for s in scene.segments]
    e, videos, _ = exported["Cholec80-CVS"]
    for vid, scene in e.scenes.items():
        d = scene.duration
        assert [(c.start, c.end, tuple(c.scores().values())) for c in videos[vid].cvs] == \
            [(0.0, d / 2, scene.cvs_at(0)), (d / 2, float(d), scene.cvs_at(d / 2))]


def test_every_task_builds_records_that_score_perfectly_and_round_trip(records, tmp_path):
    assert {task for _, task, _, _ in records} == {"tal", "stg", "next_action", "skill_assessment", "cvs_assessment"}
    problems = [(fmt, task, self_score_problem(r)) for fmt, task, _, r in records if self_score_problem(r)]
    assert not problems
    parsed = [VideoRecord.from_dict(r) for _, _, _, r in records]
    path = tmp_path / "curated.json"
    assert write_json(parsed, path) == len(records)
    loaded, report = load_records(path)
    assert report.skipped == 0 and len(loaded) == len(records)
    assert [x.to_dict() for x in loaded] == [r for _, _, _, r in records]
    assert json.loads(path.read_text())[0]["curation"]["seed"] == SETTINGS.seed


def test_one_clip_per_task_decodes(exported, records):
    budget = FrameBudget()
    seen = set()
    for fmt, task, _, r in records:
        if task in seen:
            continue
        seen.add(task)
        rec = VideoRecord.from_dict(r)
        e = exported[fmt][0]
        clip = decode_video(str(e.root / rec.video_path), rec.fps, rec.start_s, rec.end_s, budget)
        W, H = SOURCES[next(iter(e.scenes.values())).spec.name].size
        assert clip.source_hw == (H, W) and clip.frames.ndim == 4 and clip.frames.shape[-1] == 3
        assert 2 <= clip.num_frames <= budget.max_frames and clip.num_frames % 2 == 0
        assert clip.frames.std() > 5  # a rendered scene, not a blank frame
    assert len(seen) == 5


def _scene(exported, fmt, v):
    return exported[fmt][0].scenes[v.video_id]


def test_answers_match_the_scene_by_hand(exported, records):
    checked = set()
    for fmt, task, v, r in records:
        scene = _scene(exported, fmt, v)
        start, end = r["curation"]["clip"]
        answer = r["conversations"][1]["value"]
        info = r["struc_info"][0] if r["struc_info"] else {}
        if task == "stg":
            # the first key's box is the scene's own box at that time, through normalized tlwh and back
            seg = scene.segments[int(info["track_id"]) - 1]
            key = next(iter(info["bbox_dict"]))
            t = start + float(key)
            x, y, w, h = tlwh(seg.track.box(t), scene.size)
            W, H = scene.size
            assert info["object"] == scene.spec.instruments[seg.label]
            for got, want in zip(info["bbox_dict"][key], seg.track.box(t)):
                assert abs(got - want) <= 0.01
            got = info["bbox_dict"][key]
            assert abs(x * W - got[0]) <= 0.01 and abs((y + h) * H - got[3]) <= 0.01
            assert answer.startswith(f"{key} seconds: [")
        elif task == "tal":
            vocab = {"CholecTrack20": cholectrack20.PHASES, "NurViD": scene.spec.labels,
                     "JIGSAWS": JIGSAWS_GESTURES}[fmt]
            names = [vocab[s.label] for s in scene.segments]
            want = [(round(max(s.start, start) - start, 1), round(min(s.end, end) - start, 1))
                    for s, name in zip(scene.segments, names)
                    if name == info["action"] and min(s.end, end) > max(s.start, start)]
            assert [(x["start"], x["end"]) for x in info["spans"]] == want and want
            assert answer == ", ".join(f"{a:.1f}-{b:.1f}" for a, b in want) + " seconds."
        elif task == "next_action":
            now = scene.segment_at(end - 1e-6)
            k = scene.segments.index(now)
            assert answer == scene.spec.labels[scene.segments[k + 1].label]
        elif task == "skill_assessment":
            assert answer == ", ".join(f"{a}: {s}/5" for a, s in zip(SKILL_ASPECTS, scene.skill))
            assert (start, end) == (0.0, float(scene.duration))
        elif task == "cvs_assessment":
            assert scene.cvs_at(start) == scene.cvs_at(end - 1e-6)  # the clip stays inside one CVS state
            a, b, c = scene.cvs_at(start)
            assert answer == f"Two structures: {a}, Cystic plate: {b}, Hepatocystic triangle: {c}"
        checked.add(task)
    assert len(checked) == 5


def test_export_is_deterministic():
    a, b = make_scenes("CholecTrack20", 3, 2), make_scenes("CholecTrack20", 3, 2)
    assert list(a) == ["VID01", "VID02"]
    assert [cholectrack20_json(s) for s in a.values()] == [cholectrack20_json(s) for s in b.values()]
    assert list(make_scenes("NurViD", 3, 2)) == list(make_scenes("NurViD", 3, 2))
    with pytest.raises(ValueError, match="unknown export format"):
        export("/nonexistent", formats=("AVOS",))


# --- the converters' video pick-up (hand-made fixtures) -----------------------------------------------------------

def _track20_file(folder, name):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"annotations": {"25": [
        {"instrument": 0, "phase": 1, "tool_bbox": [0.1, 0.2, 0.3, 0.4], "intraoperative_track": 1}]}}))


def test_cholectrack20_picks_up_the_mp4_beside_the_json(tmp_path):
    _track20_file(tmp_path / "Training" / "VID05", "VID05")
    (tmp_path / "Training" / "VID05" / "VID05.mp4").write_bytes(b"x")
    _track20_file(tmp_path / "Testing" / "VID06", "VID06")  # no video
    report = ConversionReport("CholecTrack20")
    videos = {v.video_id: v for v in cholectrack20.load(tmp_path, report)}
    assert videos["VID05"].video_path == "Training/VID05/VID05.mp4" and videos["VID06"].video_path is None
    assert videos["VID05"].boxes[1.0][0].xyxy == pytest.approx((85.4, 96.0, 341.6, 288.0))
    assert not report.skipped


def test_cholec80_cvs_picks_up_the_cholec80_video(tmp_path):
    csv = tmp_path / "cvs.csv"
    csv.write_text("video,initial_minute,initial_second,final_minute,final_second,two_structures,cystic_plate,"
                   "hepatocystic_triangle\n1,1,5,2,10,1,0,2\n2,0,0,0,30,0,0,0\n")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "video01.mp4").write_bytes(b"x")
    videos = {v.video_id: v for v in cholec80_cvs.load(tmp_path, ConversionReport("Cholec80-CVS"))}
    assert videos["video01"].video_path == "videos/video01.mp4" and videos["video02"].video_path is None
    assert [v.video_path for v in cholec80_cvs.load(csv, ConversionReport("Cholec80-CVS"))] == [None, None]
