"""VideoRecord: the published MedVidBench format read exactly, typed views, validation errors, lossless writes."""
from __future__ import annotations

import copy
import json

import pytest

from medgrpo_ray.data.records import RecordError, VideoRecord
from medgrpo_ray.data.records_io import load_records, write_json, write_parquet


def _frames(video_id: str, n: int) -> list[str]:
    return [f"/data/frames/{video_id}/{i:06d}.jpg" for i in range(n)]


def _rec(qa_type: str, source: str, question: str, answer: str | None, struc_info=None, n: int = 10,
         fps="1.0", **more) -> dict:
    """A record written by hand in the published layout (frame-list video, string metadata)."""
    vid = f"{source.lower()}_v01"
    conv = [{"from": "human", "value": "<video>\n" + question}]
    if answer is not None:
        conv.append({"from": "gpt", "value": answer})
    d = {"conversations": conv, "video": _frames(vid, n),
         "metadata": {"fps": fps, "video_id": vid, "input_video_start_frame": "120", "input_video_end_frame": "360"},
         "qa_type": qa_type, "data_source": source}
    if struc_info is not None:
        d["struc_info"] = struc_info
    d.update(more)
    return d


def published_records() -> list[dict]:
    """One hand-written record per qa_type variant (11), both Cholec80-CVS spellings, the published test layout
    (no answer, no struc_info), numeric fps and the dataset_name fallback."""
    rc_frames = _frames("egosurgery_v01", 10)
    return [
        _rec("tal", "NurViD", "In this Intravenous Blood Sampling procedure video, possible actions are: Check, "
             "Disinfect skin. Find the segment(s) where Disinfect skin happens.", "4.0-9.5, 20.0-26.0 seconds.",
             [{"spans": [{"start": 4.0, "end": 9.5}, {"start": 20.0, "end": 26.0}]}], n=30),
        _rec("stg", "CoPESD", "What are the bounding boxes of the forceps sampled every 4 seconds from 1 to 9 seconds?",
             "1.0 seconds: [240, 260, 560, 990] 5.0 seconds: [270, 262, 565, 1000] 9.0 seconds: [300, 270, 580, 1004]",
             [{"object": "forceps", "start": 1.0, "end": 9.0, "stride": 4, "bbox_dict": {
                 "1.0": [240, 260, 560, 990], "5.0": [270, 262, 565, 1000], "9.0": [300, 270, 580, 1004]}}]),
        _rec("next_action", "AVOS", "The procedure includes the following step list: ['cutting', 'tying', "
             "'suturing']. What comes next after the current video?", "suturing", []),
        _rec("dense_captioning_gpt", "NurViD", "Describe each step with its time span.",
             "12.0-31.0 seconds: check: the nurse reads the order sheet\n31.0-40.0 seconds: disinfect skin",
             [{"dc_segments": [{"start": 12.0, "end": 31.0, "caption": "check: the nurse reads the order sheet"},
                               {"start": 31.0, "end": 40.0, "caption": "disinfect skin"}]}], n=40),
        _rec("dense_captioning_gemini", "CholecT50", "Describe each step with its time span.",
             "0.0-8.0 seconds: the hook dissects", [[{"start": 0.0, "end": 8.0, "caption": "the hook dissects"}]],
             fps="0.5"),
        _rec("video_summary_gpt", "AVOS", "Summarize the video.", "Scissors cut the suture.", []),
        _rec("video_summary_gemini", "CoPESD", "Summarize the video.",
             "Forceps lift the mucosal flap while the knife dissects.", []),
        _rec("region_caption_gpt", "EgoSurgery", "Describe the activity of the object inside the bounding box at "
             "8.0 seconds, over the interval from 8.0 to 9.0 seconds.", "The scalpel incises the skin.", [],
             is_RC=True, RC_info={"start_frame": rc_frames[8], "start_frame_bbox": [410, 220, 690, 515]}),
        _rec("region_caption_gemini", "CholecT50", "Describe the boxed object.", "A grasper retracts the fundus.",
             None, is_RC=True, RC_info={"start_frame": _frames("cholect50_v01", 10)[0],
                                         "start_frame_bbox": [10, 20, 30, 40]}),
        _rec("skill_assessment", "JIGSAWS", "Assess the skill.",
             "Respect for tissue: 3/5, Suture/needle handling: 2/5, Time and motion: 3/5, Flow of operation: 3/5, "
             "Overall performance: 3/5, Quality of final product: 2/5",
             [{"skill_level": "I", "skill_scores": {"Respect for tissue": 3, "Suture/needle handling": 2,
                                                    "Time and motion": 3, "Flow of operation": 3,
                                                    "Overall performance": 3, "Quality of final product": 2}}]),
        _rec("cvs_assessment", "Cholec80_CVS", "Assess the critical view of safety.",
             "Two structures: 1, Cystic plate: 0, Hepatocystic triangle: 1",
             [{"cvs_scores": {"two_structures": 1, "cystic_plate": 0, "hepatocystic_triangle": 1}}]),
        _rec("cvs_assessment", "Cholec80-CVS", "Assess the critical view of safety.",
             "Two structures: 2, Cystic plate: 2, Hepatocystic triangle: 2",
             [{"cvs_scores": {"two_structures": 2, "cystic_plate": 2, "hepatocystic_triangle": 2}}], fps=2.0),
        _rec("tal", "AVOS", "Find the segment(s) where cutting happens.", None, fps=0.5),  # public test layout
        {**_rec("next_action", "X", "What comes next?", "tying"), "data_source": None, "dataset_name": "AVOS"},
    ]


@pytest.mark.parametrize("d", published_records(), ids=lambda d: f"{d['qa_type']}-{d.get('data_source')}")
def test_published_record_reads_and_round_trips(d):
    original = copy.deepcopy(d)
    rec = VideoRecord.from_dict(d, source="hand.json", index=3)
    assert rec.to_dict() == original and list(rec.to_dict()) == list(original)  # same values, same key order
    assert d == original  # the input is not modified
    assert rec.question == original["conversations"][0]["value"][len("<video>\n"):]
    assert rec.answer == (original["conversations"][1]["value"] if len(original["conversations"]) > 1 else None)
    assert rec.fps == float(original["metadata"]["fps"])
    assert not rec.is_video_file and rec.frame_paths == original["video"] and rec.video_path is None
    assert (rec.start_s, rec.end_s) == (0.0, len(original["video"]) / rec.fps)


def test_canonical_names_and_variants():
    recs = [VideoRecord.from_dict(d) for d in published_records()]
    assert sorted({r.qa_type for r in recs}) == sorted(
        ["tal", "stg", "next_action", "dense_captioning_gpt", "dense_captioning_gemini", "video_summary_gpt",
         "video_summary_gemini", "region_caption_gpt", "region_caption_gemini", "skill_assessment", "cvs_assessment"])
    assert {r.task for r in recs} == {"tal", "stg", "next_action", "dense_captioning", "video_summary",
                                      "region_caption", "skill_assessment", "cvs_assessment"}
    cvs = [r for r in recs if r.task == "cvs_assessment"]
    assert [r.data_source for r in cvs] == ["Cholec80_CVS", "Cholec80-CVS"]
    assert {r.dataset for r in cvs} == {"Cholec80-CVS"}
    assert recs[-1].dataset == "AVOS"  # data_source null -> dataset_name
    assert recs[-1].to_dict()["data_source"] is None  # the explicit null is written back


def test_region_caption_box_and_frame():
    d = published_records()[7]
    rec = VideoRecord.from_dict(d)
    assert rec.rc_box == (410.0, 220.0, 690.0, 515.0)
    assert rec.rc_frame_index == 8 and rec.rc_time == 8.0
    assert VideoRecord.from_dict(published_records()[0]).rc_box is None


def test_video_file_extension():
    d = _rec("region_caption_gpt", "CoPESD", "Describe the boxed object.", "The knife cuts.", [], fps="0.5",
             is_RC=True, RC_info={"start_time": 6.0, "start_frame_bbox": [1, 2, 30, 40]})
    d["video"] = "videos/copesd_v01.mp4"
    d["metadata"].update(start_time=10.0, end_time=30.0)
    rec = VideoRecord.from_dict(d)
    assert rec.is_video_file and rec.video_path == "videos/copesd_v01.mp4" and rec.frame_paths == []
    assert (rec.start_s, rec.end_s) == (10.0, 30.0)
    assert rec.rc_time == 6.0 and rec.rc_frame_index == 3  # 6 s at 0.5 fps: the 4th sampled frame
    del d["metadata"]["end_time"], d["metadata"]["start_time"]
    whole = VideoRecord.from_dict(d)
    assert (whole.start_s, whole.end_s) == (0.0, None)


def test_eval_dict_shape():
    rec = VideoRecord.from_dict(published_records()[1])
    ev = rec.to_eval_dict("1.0 seconds: [0, 0, 1, 1]")
    assert set(ev) == {"metadata", "qa_type", "struc_info", "question", "answer", "gnd", "data_source"}
    assert ev["gnd"] == rec.answer and ev["answer"] == "1.0 seconds: [0, 0, 1, 1]"
    assert ev["metadata"]["fps"] == "1.0" and ev["struc_info"][0]["bbox_dict"]["5.0"] == [270, 262, 565, 1000]
    assert not ev["question"].startswith("<video>")
    no_gt = VideoRecord.from_dict(published_records()[12]).to_eval_dict()
    assert no_gt["gnd"] == "" and no_gt["struc_info"] == [] and no_gt["answer"] == ""
    assert VideoRecord.from_dict(published_records()[13]).to_eval_dict()["data_source"] == "AVOS"


def test_uid_is_stable_and_distinct():
    recs = [VideoRecord.from_dict(d) for d in published_records()]
    again = [VideoRecord.from_dict(json.loads(json.dumps(d))) for d in published_records()]
    assert [r.uid for r in recs] == [r.uid for r in again]
    assert len({r.uid for r in recs}) == len(recs)
    assert recs[0].uid.startswith("nurvid_v01:tal:")


def test_explicit_nulls_survive_every_format(tmp_path):
    d = {**_rec("tal", "AVOS", "Find cutting.", None), "struc_info": None, "is_RC": False, "RC_info": None,
         "data_source": None, "gnd": None}
    rec = VideoRecord.from_dict(d)
    assert rec.struc_info is None and rec.rc_box is None and rec.dataset == "Unknown"
    write_parquet([rec], tmp_path / "n.parquet")
    write_json([rec], tmp_path / "n.jsonl")
    for name in ("n.parquet", "n.jsonl"):
        (back,), _ = load_records(tmp_path / name, on_bad="raise")
        assert back.to_dict() == d and list(back.to_dict()) == list(d)


def test_unknown_keys_and_spellings_survive(tmp_path):
    d = _rec("video_summary_gemini", "AVOS", "Summarize.", "Text.", [], fps="0.50", id=7, notes={"a": [1, None]})
    d["metadata"]["custom"] = {"x": 1}
    rec = VideoRecord.from_dict(d)
    assert rec.extra == {"id": 7, "notes": {"a": [1, None]}} and rec.fps == 0.5
    write_parquet([rec], tmp_path / "r.parquet")
    (back,), report = load_records(tmp_path / "r.parquet")
    assert back.to_dict() == d and back.metadata["fps"] == "0.50" and report.skipped == 0


@pytest.mark.parametrize("fmt", ["json", "jsonl", "parquet"])
def test_every_loader_accepts_the_published_records(tmp_path, fmt):
    dicts = published_records()
    path = tmp_path / f"records.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(dicts, indent=2))  # as published: one indented JSON list
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(d) + "\n" for d in dicts))
    else:
        write_parquet([VideoRecord.from_dict(d) for d in dicts], path, batch_size=4)
    records, report = load_records(path, on_bad="raise")
    assert [r.to_dict() for r in records] == dicts
    assert [r.index for r in records] == list(range(len(dicts))) and records[0].source == str(path)
    assert (report.loaded, report.skipped) == (len(dicts), 0)


def _bad(mutate) -> dict:
    d = published_records()[1]  # stg, the richest struc_info
    mutate(d)
    return d


def _with(qa_type_index: int, mutate) -> dict:
    d = published_records()[qa_type_index]
    mutate(d)
    return d


MALFORMED = [
    ("missing conversations", _bad(lambda d: d.pop("conversations")), "conversations"),
    ("gpt turn first", _bad(lambda d: d["conversations"].reverse()), "conversations[0]"),
    ("empty video list", _bad(lambda d: d.update(video=[])), "video"),
    ("frame path not text", _bad(lambda d: d["video"].__setitem__(2, 5)), "video[2]"),
    ("missing fps", _bad(lambda d: d["metadata"].pop("fps")), "metadata.fps"),
    ("fps not a number", _bad(lambda d: d["metadata"].update(fps="fast")), "metadata.fps"),
    ("fps zero", _bad(lambda d: d["metadata"].update(fps="0")), "metadata.fps"),
    ("start frame not digits", _bad(lambda d: d["metadata"].update(input_video_start_frame="x1")),
     "metadata.input_video_start_frame"),
    ("unknown qa_type", _bad(lambda d: d.update(qa_type="triage")), "qa_type"),
    ("stg box of 3 numbers", _bad(lambda d: d["struc_info"][0]["bbox_dict"].update({"5.0": [1, 2, 3]})),
     "struc_info[0].bbox_dict['5.0']"),
    ("stg time key not a number", _bad(lambda d: d["struc_info"][0]["bbox_dict"].update({"later": [1, 2, 3, 4]})),
     "struc_info[0].bbox_dict key 'later'"),
    ("stg inverted box", _bad(lambda d: d["struc_info"][0]["bbox_dict"].update({"1.0": [9, 2, 3, 4]})),
     "struc_info[0].bbox_dict['1.0']"),
    ("tal spans missing", _with(0, lambda d: d.update(struc_info=[{"segments": []}])), "struc_info[0].spans"),
    ("tal end before start", _with(0, lambda d: d["struc_info"][0]["spans"][1].update(end=3.0)),
     "struc_info[0].spans[1].end"),
    ("tal start text", _with(0, lambda d: d["struc_info"][0]["spans"][0].update(start="soon")),
     "struc_info[0].spans[0].start"),
    ("dc segment without end", _with(3, lambda d: d["struc_info"][0]["dc_segments"][1].pop("end")),
     "struc_info[0].dc_segments[1]"),
    ("dc caption not text", _with(4, lambda d: d["struc_info"][0][0].update(caption=3)), "struc_info[0][0].caption"),
    ("skill score not int", _with(9, lambda d: d["struc_info"][0]["skill_scores"].update({"Time and motion": "3/5"})),
     "struc_info[0].skill_scores['Time and motion']"),
    ("skill struc_info a dict", _with(9, lambda d: d.update(struc_info={"skill_level": "I"})), "struc_info"),
    ("cvs component missing", _with(10, lambda d: d["struc_info"][0]["cvs_scores"].pop("cystic_plate")),
     "struc_info[0].cvs_scores.cystic_plate"),
    ("cvs score out of range", _with(10, lambda d: d["struc_info"][0]["cvs_scores"].update(two_structures=3)),
     "struc_info[0].cvs_scores.two_structures"),
    ("RC_info missing", _with(7, lambda d: d.pop("RC_info")), "RC_info"),
    ("RC box of 2 numbers", _with(7, lambda d: d["RC_info"].update(start_frame_bbox=[1, 2])),
     "RC_info.start_frame_bbox"),
    ("RC frame not in video", _with(7, lambda d: d["RC_info"].update(start_frame="/elsewhere/0.jpg")),
     "RC_info.start_frame"),
    ("is_RC not a bool", _with(7, lambda d: d.update(is_RC="yes")), "is_RC"),
    ("RC on a video file without start_time", _with(7, lambda d: d.update(video="v.mp4")), "RC_info.start_time"),
]


@pytest.mark.parametrize("name,d,field", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_record_names_file_index_and_field(name, d, field):
    with pytest.raises(RecordError) as info:
        VideoRecord.from_dict(d, source="data/train.json", index=17)
    err = info.value
    assert (err.source, err.index, err.field) == ("data/train.json", 17, field)
    assert str(err).startswith(f"data/train.json record 17: field {field}: ")
    assert "expected" in err.problem  # every message says what a valid value looks like


def test_not_a_mapping():
    with pytest.raises(RecordError, match=r"x.json record 2: field <record>: is a list; expected a JSON object"):
        VideoRecord.from_dict([1, 2], source="x.json", index=2)


def test_empty_struc_info_is_accepted_for_every_task():
    for d in published_records():
        d["struc_info"] = []
        assert VideoRecord.from_dict(d).struc_info == []


def test_write_json_round_trip(tmp_path):
    recs = [VideoRecord.from_dict(d) for d in published_records()]
    for name in ("out.json", "out.jsonl"):
        assert write_json(recs, tmp_path / name) == len(recs)
        back, _ = load_records(tmp_path / name, on_bad="raise")
        assert [r.to_dict() for r in back] == published_records()
    assert json.loads((tmp_path / "out.json").read_text()) == published_records()
