"""The CAMMA-family source converters (curation/sources/cholect50, cholectrack20, cholec80_cvs) on hand-made
fixtures in each native format, with the expected values worked by hand in the comments."""
from __future__ import annotations

import json

import pytest

from medgrpo_ray.curation.schema import Box, ConversionReport, CvsInterval, Segment, SourceVideo, Triplet
from medgrpo_ray.curation.sources import cholec80_cvs, cholect50, cholectrack20, converters
from medgrpo_ray.curation.sources._common import as_int, runs_to_segments, tlwh_to_xyxy
from medgrpo_ray.medvidbench.tasks import DATASETS

NULL = [-1] * 14  # a 15-vector's first 14 slots all null; append the phase id


def roundtrip(video: SourceVideo) -> SourceVideo:
    return SourceVideo.from_json(json.loads(json.dumps(video.to_json())))


def test_registry_lists_the_three_converters_under_canonical_names():
    found = converters()
    for name in ("CholecT50", "CholecTrack20", "Cholec80-CVS"):
        assert name in DATASETS and name in found
    assert found["CholecT50"] is cholect50.load and found["Cholec80-CVS"] is cholec80_cvs.load


# --- shared helpers ------------------------------------------------------------------------------------------------

def test_tlwh_to_xyxy_and_runs():
    # [0.1, 0.2, 0.3, 0.4] on 854x480: x1 = 85.4, y1 = 96, x2 = 0.4*854 = 341.6, y2 = 0.6*480 = 288
    assert tlwh_to_xyxy([0.1, 0.2, 0.3, 0.4], (854, 480)) == pytest.approx((85.4, 96.0, 341.6, 288.0))
    with pytest.raises(ValueError, match="4 numbers"):
        tlwh_to_xyxy([0.1, 0.2], (854, 480))
    with pytest.raises(ValueError, match="not a number: 'x'"):
        tlwh_to_xyxy(["x", 0, 0, 0], (854, 480))
    with pytest.raises(ValueError, match="not an integer"):
        as_int(2.5)
    # frames 0-2 label a, frame 3 b, frame 5 b after a missing frame 4, frame 6 None: [0,3) a, [3,4) b, [5,6) b
    segs = runs_to_segments([(3, "b"), (0, "a"), (1, "a"), (2, "a"), (5, "b"), (6, None)], 1.0)
    assert segs == [Segment(0, 3, "a", "phase"), Segment(3, 4, "b", "phase"), Segment(5, 6, "b", "phase")]


# --- CholecT50 -----------------------------------------------------------------------------------------------------

T50_CATEGORIES = {
    "triplet": {"0": "grasper,retract,gallbladder", "1": "hook,dissect,cystic_plate"},
    "instrument": {"0": "grasper", "1": "bipolar", "2": "hook"},
    "verb": {"0": "retract", "1": "dissect"},
    "target": {"0": "gallbladder", "1": "cystic_plate"},
    "phase": {"0": "preparation", "1": "calot-triangle-dissection", "2": "clipping-and-cutting"},
}


def write_t50(root, frame_files=True):
    annotations = {
        # grasper retracting the gallbladder, box tlwh [0.1, 0.2, 0.3, 0.4] -> (85.4, 96, 341.6, 288); phase 1
        "0": [[0, 0, 1.0, 0.1, 0.2, 0.3, 0.4, 0, 0, -1, -1, -1, -1, -1, 1]],
        # no triplet, boxes all -1 (as in Release 2.0): only the phase
        "1": [NULL + [1]],
        # hook dissecting, no box; a truncated instance (3 numbers) -> counted skip
        "2": [[1, 2, 1.0, -1, -1, -1, -1, 1, 1, -1, -1, -1, -1, -1, 1], [0, 0, 1]],
        # phase 2; an unknown triplet id 42 and a non-numeric verb slot -> two counted skips
        "3": [NULL + [2], [42, 0, 1, -1, -1, -1, -1, 0, 0, -1, -1, -1, -1, -1, 2],
              [0, 0, 1, -1, -1, -1, -1, "x", 0, -1, -1, -1, -1, -1, 2]],
    }
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "VID01.json").write_text(json.dumps(
        {"video": 1, "fps": 1, "num_frames": 4, "categories": T50_CATEGORIES, "annotations": annotations}))
    if frame_files:
        (root / "videos" / "VID01").mkdir(parents=True)
        for i in range(4):
            (root / "videos" / "VID01" / f"{i:06d}.png").write_bytes(b"not a png")  # unreadable: default size


def test_cholect50_converts_phases_triplets_boxes_and_counts_skips(tmp_path):
    write_t50(tmp_path)
    report = ConversionReport("CholecT50")
    [video] = list(cholect50.load(tmp_path, report))
    assert (video.source, video.video_id, video.native_fps, video.frame_size) == ("CholecT50", "VID01", 1.0, (854, 480))
    assert video.duration_s == 4.0  # num_frames / fps
    # frames 0-2 phase 1, frame 3 phase 2, at 1 fps -> [0, 3) and [3, 4)
    assert video.segments == [Segment(0.0, 3.0, "calot-triangle-dissection", "phase"),
                              Segment(3.0, 4.0, "clipping-and-cutting", "phase")]
    assert video.triplets == {0.0: [Triplet("grasper", "retract", "gallbladder")],
                              2.0: [Triplet("hook", "dissect", "cystic_plate")]}
    assert list(video.boxes) == [0.0]
    [box] = video.boxes[0.0]
    assert box.label == "grasper" and box.xyxy == pytest.approx((85.4, 96.0, 341.6, 288.0))
    assert video.frame_paths == {i: f"videos/VID01/{i:06d}.png" for i in range(4)}
    assert report.videos == 1 and report.skipped == {"malformed instance": 3}
    assert "VID01.json: frame 2: instance 1: expected 15 numbers" in report.examples["malformed instance"]
    back = roundtrip(video)
    assert back == video and back.boxes[0.0][0].extra == {"score": 1.0}


def test_cholect50_parse_instance_nulls_and_errors():
    tables = {k: {int(i): n for i, n in v.items()} for k, v in T50_CATEGORIES.items()}
    inst = cholect50.parse_instance(NULL + [-1], tables, (854, 480))
    assert inst == cholect50.Instance(None, None, None)
    with pytest.raises(ValueError, match="partly null instrument box"):
        cholect50.parse_instance([0, 0, 1, 0.1, -1, 0.3, 0.4, 0, 0, -1, -1, -1, -1, -1, 1], tables, (854, 480))
    with pytest.raises(ValueError, match=r"unknown phase id 9 at \[14\]"):
        cholect50.parse_instance(NULL + [9], tables, (854, 480))


def test_cholect50_without_frames_unreadable_label_and_missing_dir(tmp_path):
    write_t50(tmp_path, frame_files=False)
    (tmp_path / "labels" / "VID02.json").write_text("{not json")
    report = ConversionReport("CholecT50")
    [video] = list(cholect50.load(tmp_path, report))
    assert video.frame_paths == {} and video.frame_size == (854, 480)
    assert report.skipped["unreadable label file"] == 1 and "VID02.json" in report.examples["unreadable label file"]
    with pytest.raises(FileNotFoundError, match="labels"):
        list(cholect50.load(tmp_path / "nowhere", ConversionReport("CholecT50")))


def test_cholect50_frame_size_from_the_first_image(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    write_t50(tmp_path)
    Image.new("RGB", (100, 50)).save(tmp_path / "videos" / "VID01" / "000000.png")
    [video] = list(cholect50.load(tmp_path, ConversionReport("CholecT50")))
    # box tlwh [0.1, 0.2, 0.3, 0.4] on 100x50 -> (10, 10, 40, 30)
    assert video.frame_size == (100, 50)
    assert video.boxes[0.0][0].xyxy == pytest.approx((10.0, 10.0, 40.0, 30.0))


# --- CholecTrack20 -------------------------------------------------------------------------------------------------

def track_instance(**kw):
    inst = {"instrument": 0, "phase": 1, "operator": 1, "tool_bbox": [0.1, 0.2, 0.3, 0.4],
            "intraoperative_track": 1, "intracorporeal_track": 3, "visibility_track": 7, "visible": 1,
            "occluded": 0, "verb": -1, "target": -1, "triplet": -1}
    inst.update(kw)
    return inst


def write_track(root):
    annotations = {
        "4326": [track_instance()],                                          # 173.04 s, phase 1
        "4351": [track_instance(instrument=2, operator=3, tool_bbox=[0.5, 0.5, 0.25, 0.25], intraoperative_track=2),
                 track_instance(tool_bbox=[0.1, 0.2])],                      # 174.04 s; truncated box -> skip
        "4376": [],                                                          # 175.04 s, no tool: no phase
        "4401": [track_instance(instrument="hook", phase="ClippingCutting", intraoperative_track=2,
                                operator="abc")],                            # names as-is; 176.04 s
    }
    path = root / "Training" / "VID31" / "VID31.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"info": {"bbox format": "tlwh = [top_left_x, top_left_y, box_width, box_height]"},
                                "annotations": annotations}))
    other = root / "Testing" / "VID12" / "VID12.json"  # its own category table (1-based ids)
    other.parent.mkdir(parents=True)
    other.write_text(json.dumps({"categories": {"instrument": [{"id": 1, "name": "Grasper"}]},
                                 "annotations": {"25": [track_instance(instrument=1, phase=0)],
                                                 "50": [track_instance(instrument=9)]}}))  # unknown id -> skip
    bad = root / "Validation" / "VID30" / "VID30.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")


def test_cholectrack20_converts_boxes_tracks_phases_and_counts_skips(tmp_path):
    write_track(tmp_path)
    report = ConversionReport("CholecTrack20")
    videos = {v.video_id: v for v in cholectrack20.load(tmp_path, report)}
    assert sorted(videos) == ["VID12", "VID31"] and report.videos == 2
    v = videos["VID31"]
    assert (v.source, v.native_fps, v.frame_size, v.split) == ("CholecTrack20", 25.0, (854, 480), "train")
    assert sorted(v.boxes) == [173.04, 174.04, 176.04]  # "4351" / 25 = 174.04
    [b0] = v.boxes[173.04]
    assert (b0.label, b0.track_id) == ("grasper", "1")
    assert b0.xyxy == pytest.approx((85.4, 96.0, 341.6, 288.0))
    assert b0.extra["operator"] == "MSLH" and b0.extra["intracorporeal_track"] == 3 and b0.extra["visible"] == 1
    [b1] = v.boxes[174.04]  # [0.5, 0.5, 0.25, 0.25] -> (427, 240, 640.5, 360)
    assert (b1.label, b1.track_id, b1.extra["operator"]) == ("hook", "2", "MSRH")
    assert b1.xyxy == pytest.approx((427.0, 240.0, 640.5, 360.0))
    assert v.boxes[176.04][0].label == "hook" and v.boxes[176.04][0].extra["operator"] == "abc"
    # phase 1 on 173.04 and 174.04, none on 175.04, ClippingCutting on 176.04
    assert [(s.start, s.end, s.label) for s in v.segments] == [
        (173.04, pytest.approx(175.04), "CalotTriangleDissection"), (176.04, pytest.approx(177.04), "ClippingCutting")]
    assert [t for t, _ in v.tracks()["2"]] == [174.04, 176.04]
    w = videos["VID12"]
    assert w.split == "test" and w.boxes[1.0][0].label == "Grasper" and 2.0 not in w.boxes
    assert w.segments == [Segment(1.0, 2.0, "Preparation", "phase")]
    assert report.skipped == {"malformed instance": 2, "unreadable label file": 1}
    # the first example comes from Testing/ (path order): the unknown instrument id
    assert "VID12.json: frame 50: instance 0: instrument: unknown id 9" in report.examples["malformed instance"]
    assert roundtrip(v) == v


def test_cholectrack20_frame_size_and_missing_input(tmp_path):
    write_track(tmp_path)
    v = next(cholectrack20.load(tmp_path / "Training", ConversionReport("CholecTrack20"), frame_size=(1000, 500)))
    assert v.split == "train" and v.boxes[173.04][0].xyxy == pytest.approx((100.0, 100.0, 400.0, 300.0))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no VID"):
        list(cholectrack20.load(tmp_path / "empty", ConversionReport("CholecTrack20")))
    with pytest.raises(FileNotFoundError, match="no directory"):
        list(cholectrack20.load(tmp_path / "nowhere", ConversionReport("CholecTrack20")))
    report = ConversionReport("CholecTrack20")
    list(cholectrack20.load(tmp_path / "Training", report))
    assert report.examples["malformed instance"].endswith("frame 4351: instance 1: tool_bbox: expected 4 numbers "
                                                          "[x, y, w, h], got [0.1, 0.2]")
    with pytest.raises(ValueError, match="instrument: unknown id 9"):
        cholectrack20.parse_instance(track_instance(instrument=9), cholectrack20.tables_for({}), (854, 480))


# --- Cholec80-CVS --------------------------------------------------------------------------------------------------

CVS_HEADER = ("video,initial_minute,initial_second,final_minute,final_second,two_structures,cystic_plate,"
              "hepatocystic_triangle,Total,critical_view")


def test_cholec80_cvs_intervals_and_counted_skips(tmp_path):
    rows = [
        "1,1,5,2,10,2,1,2,5,1",     # video01, 1:05 to 2:10 -> 65.0 - 130.0 s
        "1.0,0,30,0,50,0,0,1,1,0",  # video01, 30.0 - 50.0 s (sorted first)
        "12,3,0,2,0,1,1,1,3,0",     # final 2:00 < initial 3:00 -> skip "final before initial"
        "12,4,0,5,0,3,0,0,3,0",     # score 3 -> skip "score out of range"
        "12,4,0,five,0,1,0,0,1,0",  # non-numeric final_minute -> skip
        "video13,0,0,0,2,1,2,0,3,0",
        ",,,,,,,,,",                # a blank export row: ignored
    ]
    (tmp_path / "surgeons_annotations.csv").write_text("\ufeff" + CVS_HEADER + "\n" + "\n".join(rows) + "\n")
    report = ConversionReport("Cholec80-CVS")
    videos = list(cholec80_cvs.load(tmp_path, report))
    assert [v.video_id for v in videos] == ["video01", "video13"] and report.videos == 2
    assert videos[0].native_fps == 25.0
    assert videos[0].cvs == [CvsInterval(30.0, 50.0, 0, 0, 1), CvsInterval(65.0, 130.0, 2, 1, 2)]
    assert videos[1].cvs == [CvsInterval(0.0, 2.0, 1, 2, 0)]
    assert report.skipped == {"final before initial": 1, "score out of range": 1, "non-numeric field": 1}
    assert "row 4: final 2:0 (120 s) before initial 3:0 (180 s)" in report.examples["final before initial"]
    assert "'five'" in report.examples["non-numeric field"]
    assert roundtrip(videos[0]) == videos[0]


def test_cholec80_cvs_xlsx_only_missing_column_and_missing_dir(tmp_path):
    (tmp_path / "surgeons_annotations.xlsx").write_bytes(b"PK")
    with pytest.raises(FileNotFoundError, match="surgeons_annotations.xlsx.*export"):
        list(cholec80_cvs.load(tmp_path, ConversionReport("Cholec80-CVS")))
    (tmp_path / "a.csv").write_text("video,initial_minute\n1,0\n")
    with pytest.raises(ValueError, match="a.csv: missing column"):
        list(cholec80_cvs.load(tmp_path, ConversionReport("Cholec80-CVS")))
    with pytest.raises(FileNotFoundError, match="no file or directory"):
        list(cholec80_cvs.load(tmp_path / "nowhere", ConversionReport("Cholec80-CVS")))
    assert cholec80_cvs.video_id("Video1") == "video01"
    with pytest.raises(ValueError, match="not a Cholec80 video"):
        cholec80_cvs.video_id("clip-3")


def test_box_roundtrip_keeps_extra():
    v = SourceVideo("CholecTrack20", "VID01", 25.0, boxes={0.04: [Box("hook", 1, 2, 3, 4, "5", {"operator": "MSLH"})]})
    assert roundtrip(v).boxes[0.04][0].extra == {"operator": "MSLH"}
