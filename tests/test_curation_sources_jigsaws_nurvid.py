"""The JIGSAWS and NurViD converters on hand-made native files (written into tmp_path); expected values worked by
hand in the comments."""
import json

import pytest

from medgrpo_ray.curation.schema import ConversionReport, Segment, SourceVideo
from medgrpo_ray.curation.sources import converters, jigsaws, nurvid
from medgrpo_ray.data.synthetic import SKILL_ASPECTS


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------- JIGSAWS: pure parsers

def test_transcription_line_frames_to_seconds_end_inclusive():
    # "0 89 G1": frames 0..89 inclusive at 30 Hz -> [0/30, 90/30) = [0.0, 3.0)
    assert jigsaws.parse_transcription_line("0 89 G1") == Segment(0.0, 3.0, "G1", "gesture")
    # "90 134 G5 " -> [3.0, 135/30 = 4.5)
    assert jigsaws.parse_transcription_line("90 134 G5 ") == Segment(3.0, 4.5, "G5", "gesture")
    assert jigsaws.parse_transcription_line("   ") is None


@pytest.mark.parametrize("line, words", [("0 89", "2 fields"), ("a 89 G1", "not integers"),
                                         ("90 80 G1", "start <= end"), ("0 89 X1", "not G<n>"),
                                         ("0 89 G1 extra", "4 fields")])
def test_transcription_line_malformed(line, words):
    with pytest.raises(jigsaws.LineError, match=words):
        jigsaws.parse_transcription_line(line)


def test_meta_line_columns():
    # "Suturing_B001 N 13 2 2 2 2 3 2": level N, GRS 13, then the six aspects in order; 2+2+2+2+3+2 = 13
    trial, skill = jigsaws.parse_meta_line("Suturing_B001\tN\t13\t2\t2\t2\t2\t3\t2")
    assert trial == "Suturing_B001" and skill.level == "N" and skill.grs == 13
    assert skill.scores["Respect for tissue"] == 2 and skill.scores["Overall performance"] == 3
    assert list(skill.scores) == list(SKILL_ASPECTS)
    assert jigsaws.parse_meta_line("") is None


@pytest.mark.parametrize("line, words", [("Suturing_B001 N 13 2 2 2 2 3", "expected 9 columns, got 8"),
                                         ("Suturing_B001 N 13 2 2 2 2 3 6", "Quality of final product score 6"),
                                         ("Suturing_B001 X 13 2 2 2 2 3 2", "skill level 'X'"),
                                         ("Suturing_B001 N x 2 2 2 2 3 2", "integers")])
def test_meta_line_malformed(line, words):
    with pytest.raises(jigsaws.LineError, match=words):
        jigsaws.parse_meta_line(line)


def test_aspects_and_gestures_tables():
    assert jigsaws.SKILL_ASPECTS == SKILL_ASPECTS
    assert list(jigsaws.GESTURE_NAMES) == [f"G{i}" for i in range(1, 16)]


# ---------------------------------------------------------------- JIGSAWS: a tree

def _jigsaws_tree(root):
    s = root / "Suturing"
    _write(s / "meta_file_Suturing.txt",
           "Suturing_B001\tN\t13\t2\t2\t2\t2\t3\t2\n"
           "\n"
           "Suturing_B002 E 25 5 4 4 4 4 4\n"        # line 3: no transcription, no video -> skill only
           "Suturing_B003 N 13 2 2 2 2 3\n"          # line 4: 8 columns -> skip
           "Suturing_B004 I 20 3 3 3 3 3 9\n")       # line 5: score 9 -> skip
    # unsorted on purpose; line 3 is malformed
    _write(s / "transcriptions" / "Suturing_B001.txt", "90 134 G5\n0 89 G1 \nbad line\n")
    _write(s / "video" / "Suturing_B001_capture1.avi", "")
    _write(s / "video" / "Suturing_B001_capture2.avi", "")
    _write(s / "video" / "Suturing_B005_capture2.avi", "")      # a video with no labels -> skip
    k = root / "Knot_Tying"
    _write(k / "meta_file_Knot_Tying.txt", "Knot_Tying_C001 I 18 3 3 3 3 3 3\n")
    _write(k / "transcriptions" / "Knot_Tying_C001.txt", "30 59 G12\n")
    _write(k / "video" / "Knot_Tying_C001_capture2.avi", "")    # capture2 only
    # no Needle_Passing folder -> counted


def test_jigsaws_load_tree(tmp_path):
    _jigsaws_tree(tmp_path)
    report = ConversionReport("JIGSAWS")
    videos = {v.video_id: v for v in jigsaws.load(tmp_path, report)}
    assert sorted(videos) == ["Knot_Tying_C001", "Suturing_B001", "Suturing_B002"]
    assert report.videos == 3

    b1 = videos["Suturing_B001"]
    assert b1.source == "JIGSAWS" and b1.native_fps == 30.0 and b1.procedure == "Suturing"
    assert b1.video_path == "Suturing/video/Suturing_B001_capture1.avi"
    assert b1.extra["captures"]["capture2"] == "Suturing/video/Suturing_B001_capture2.avi"
    # sorted: "0 89 G1" -> [0, 3.0), "90 134 G5" -> [3.0, 4.5)
    assert b1.segments == [Segment(0.0, 3.0, "G1", "gesture"), Segment(3.0, 4.5, "G5", "gesture")]
    assert b1.extra["gesture_names"] == {"G1": "Reaching for needle with right hand",
                                         "G5": "Moving to center with needle in grip"}
    assert b1.skill.level == "N" and b1.skill.grs == 13 and b1.skill.scores["Respect for tissue"] == 2

    b2 = videos["Suturing_B002"]  # skill only
    assert b2.video_path is None and b2.extra["no_video"] and b2.segments == [] and b2.skill.level == "E"

    k1 = videos["Knot_Tying_C001"]
    assert k1.procedure == "Knot Tying" and k1.video_path == "Knot_Tying/video/Knot_Tying_C001_capture2.avi"
    assert k1.segments == [Segment(1.0, 2.0, "G12", "gesture")]  # frames 30..59 -> [1.0, 2.0)

    assert report.skipped == {"jigsaws_bad_meta_line": 2, "jigsaws_bad_transcription_line": 1,
                              "jigsaws_trial_without_labels": 1, "jigsaws_task_folder_missing": 1}
    assert report.examples["jigsaws_bad_meta_line"] == \
        "Suturing/meta_file_Suturing.txt line 4: expected 9 columns, got 8"
    assert report.examples["jigsaws_bad_transcription_line"].startswith(
        "Suturing/transcriptions/Suturing_B001.txt line 3:")
    assert "Suturing_B005" in report.examples["jigsaws_trial_without_labels"]

    for v in videos.values():
        assert SourceVideo.from_json(json.loads(json.dumps(v.to_json()))) == v


def test_jigsaws_missing_root_or_tasks(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        list(jigsaws.load(tmp_path / "nope", ConversionReport("JIGSAWS")))
    report = ConversionReport("JIGSAWS")
    with pytest.raises(FileNotFoundError, match="none of the task folders"):
        list(jigsaws.load(tmp_path, report))
    assert report.skipped["jigsaws_task_folder_missing"] == 3


# ---------------------------------------------------------------- NurViD: pure parsers

def test_nurvid_parsers():
    assert nurvid.parse_resolution("854x480") == (854, 480)
    with pytest.raises(nurvid.EntryError, match="WxH"):
        nurvid.parse_resolution("854 by 480")
    assert [nurvid.normalize_split(s) for s in (None, "training", "validation", "testing", "Other")] == \
        [None, "train", "val", "test", "Other"]
    assert nurvid.parse_segment({"actionID": 4, "segment": [3.0, 7.5]}, 60.0) == (4, 3.0, 7.5, False)
    # duration 9 (whole seconds), end 9.53 is within END_SLACK_S -> clamped to 9.0
    assert nurvid.parse_segment({"actionID": 49, "segment": [0.33, 9.53]}, 9.0) == (49, 0.33, 9.0, True)
    assert nurvid.parse_segment({"actionID": 1, "segment": [0, 500]}, None) == (1, 0.0, 500.0, False)


@pytest.mark.parametrize("entry, words", [
    ({"actionID": 1, "segment": [30, 25]}, "end <= start"),
    ({"actionID": 1, "segment": [5, 5]}, "end <= start"),
    ({"actionID": 1, "segment": [-1, 5]}, "before 0"),
    ({"actionID": 1, "segment": [60, 65]}, "at or after duration 60"),
    ({"actionID": 1, "segment": [50, 61.5]}, "more than 1.0 s past duration 60"),
    ({"actionID": "1", "segment": [1, 2]}, "actionID '1'"),
    ({"actionID": 1, "segment": [1]}, "not \\[start_s, end_s\\]"),
    ({"actionID": 1, "segment": ["1", 2]}, "not \\[start_s, end_s\\]"),
    ([1, 2], "not an object")])
def test_nurvid_segment_malformed(entry, words):
    with pytest.raises(nurvid.EntryError, match=words):
        nurvid.parse_segment(entry, 60.0)


# ---------------------------------------------------------------- NurViD: a tree

_ANN = {
    "vidA": {"operationID": 3, "duration": 60, "resolution": "1920x1080", "fps": 29, "subset": "training",
             "url": "https://www.youtube.com/watch?v=vidA",
             "annotations": [{"actionID": 29, "segment": [12.5, 20.0]},
                             {"actionID": 4, "segment": [3.0, 7.5]},
                             {"actionID": 4, "segment": [18.0, 25.0]},   # overlaps the first: kept
                             {"actionID": 7, "segment": [30, 25]},       # end < start: skipped
                             {"actionID": 99, "segment": [59.2, 60.4]}]},  # end clamped to 60; id 99 unnamed
    "vidB": {"operationID": 37, "duration": 10, "resolution": "bad", "fps": 30, "subset": None,
             "url": "u", "annotations": []},
    "vidC": {"operationID": "x", "fps": 30, "annotations": []},          # skipped: bad operationID
    "vidD": {"operationID": 3, "fps": 0, "annotations": []},             # skipped: fps 0
}


def _nurvid_tree(root, names=True):
    _write(root / "annotations" / "NurViD_annotations.json", json.dumps(_ANN))
    if names:
        _write(root / "annotations" / "procedures.csv", "id,name\n3,Handwashing Procedure\n37,Oral Care\n")
        _write(root / "annotations" / "actions.csv",
               "\ufeffID,Name,procedure_id\n4,Handwashing,3\n29,Check,3\nseven,Document,3\n")
    _write(root / "videos" / "vidA.mp4", "")


def test_nurvid_load_tree(tmp_path):
    _nurvid_tree(tmp_path)
    report = ConversionReport("NurViD")
    videos = {v.video_id: v for v in nurvid.load(tmp_path, report)}
    assert sorted(videos) == ["vidA", "vidB"] and report.videos == 2

    a = videos["vidA"]
    assert (a.source, a.native_fps, a.frame_size, a.duration_s, a.split) == ("NurViD", 29.0, (1920, 1080), 60.0,
                                                                             "train")
    assert a.video_path == "videos/vidA.mp4" and a.procedure == "Handwashing Procedure"
    # sorted by (start, end): [3.0, 7.5], [12.5, 20.0], [18.0, 25.0], [59.2, 60.0 clamped]
    assert [(s.start, s.end, s.label, s.level) for s in a.segments] == [
        (3.0, 7.5, "Handwashing", "action"), (12.5, 20.0, "Check", "action"), (18.0, 25.0, "Handwashing", "action"),
        (59.2, 60.0, "action 99", "action")]
    assert a.extra["action_ids"] == [4, 29, 4, 99] and a.extra["operation_id"] == 3

    b = videos["vidB"]
    assert b.frame_size is None and b.split is None and b.video_path is None and b.procedure == "Oral Care"

    assert report.skipped == {"nurvid_bad_segment": 1, "nurvid_segment_end_clamped": 1,
                              "nurvid_unknown_action_id": 1, "nurvid_bad_resolution": 1,
                              "nurvid_bad_video_entry": 2, "nurvid_bad_name_row": 1}
    assert report.examples["nurvid_bad_segment"] == \
        "annotations/NurViD_annotations.json ['vidA'].annotations[3]: segment [30, 25] has end <= start"
    assert report.examples["nurvid_bad_name_row"] == "annotations/actions.csv line 4: id 'seven' is not an integer"
    assert "vidC" in report.examples["nurvid_bad_video_entry"]

    for v in videos.values():
        assert SourceVideo.from_json(json.loads(json.dumps(v.to_json()))) == v


def test_nurvid_names_fallback_and_xlsx_error(tmp_path):
    _nurvid_tree(tmp_path, names=False)
    report = ConversionReport("NurViD")
    a = next(v for v in nurvid.load(tmp_path, report) if v.video_id == "vidA")
    assert a.procedure == "procedure 3" and a.segments[0].label == "action 4"
    assert report.skipped["nurvid_names_missing"] == 2 and "nurvid_unknown_action_id" not in report.skipped

    _write(tmp_path / nurvid.XLSX, "not really a workbook")
    with pytest.raises(FileNotFoundError, match="export the sheets"):
        list(nurvid.load(tmp_path, ConversionReport("NurViD")))


def test_nurvid_missing_or_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="NurViD annotations not found"):
        list(nurvid.load(tmp_path, ConversionReport("NurViD")))
    _write(tmp_path / nurvid.ANNOTATIONS, "[]")
    with pytest.raises(ValueError, match="expected an object"):
        list(nurvid.load(tmp_path, ConversionReport("NurViD")))
    _write(tmp_path / nurvid.ANNOTATIONS, "{}")
    _write(tmp_path / nurvid.PROCEDURES_CSV, "key,label\n1,x\n")
    with pytest.raises(ValueError, match="lacks the columns 'id' and 'name'"):
        list(nurvid.load(tmp_path, ConversionReport("NurViD")))


def test_registry_lists_both():
    found = converters()
    assert found["JIGSAWS"] is jigsaws.load and found["NurViD"] is nurvid.load
