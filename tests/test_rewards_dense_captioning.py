"""Dense-caption parser and training reward: mean over tau in (0.3, 0.5, 0.7) of one-to-one F1_tau =
2 * matches(IoU >= tau) / (#pred + #GT), plain IoU in seconds."""
import pytest

from medgrpo_ray.rewards import compute_reward
from medgrpo_ray.rewards.parsers import parse_caption_segments
from medgrpo_ray.rewards.types import CaptionSegment, Unparseable


def dvc_record(segments, nurvid=True):
    segs = [{"start": s, "end": e, "caption": c} for s, e, c in segments]
    return {
        "qa_type": "dense_captioning_gpt",
        "struc_info": [{"dc_segments": segs}] if nurvid else segs,
        "metadata": {"fps": "1.0"},
        "data_source": "NurViD",
        "gnd": "",
    }


GT = dvc_record([(0, 10, "check the order"), (10, 20, "wash hands")])


def test_parser_lines_and_one_line_swallow():
    p = parse_caption_segments("12.0-31.0 seconds: check: the nurse reads the order sheet\n31.0-40.0 seconds: wash hands")
    assert p.items == (CaptionSegment(12.0, 31.0, "check: the nurse reads the order sheet"), CaptionSegment(31.0, 40.0, "wash hands"))
    one_line = parse_caption_segments("0.0-10.0 seconds: a 10.0-20.0 seconds: b")
    assert one_line.items == (CaptionSegment(0.0, 10.0, "a 10.0-20.0 seconds: b"),)


def test_parser_drops_duplicates_and_flattens_overlaps():
    """(0,10,'long') and (5,8,'short') overlap: cut at 0,5,8,10; every piece is covered by 'long' (length
    10 > 3), so pieces (0,5), (5,8), (8,10) all take 'long'. The repeated (0,10) is dropped first."""
    p = parse_caption_segments("0.0-10.0 seconds: long\n0.0-10.0 seconds: again\n5.0-8.0 seconds: short")
    assert p.flattened
    assert [(s.start, s.end, s.caption) for s in p.items] == [(0.0, 5.0, "long"), (5.0, 8.0, "long"), (8.0, 10.0, "long")]


def test_parser_zero_shot_fallback_and_unparseable():
    p = parse_caption_segments("1. 0 - 5 seconds - the nurse washes\nTime Range: 5-9s: gloves on")
    assert p.source == "zero_shot"
    assert [(s.start, s.end, s.caption) for s in p.items] == [(0.0, 5.0, "the nurse washes"), (5.0, 9.0, "gloves on")]
    assert isinstance(parse_caption_segments("the nurse washes hands"), Unparseable)


def test_exact_segments_score_one():
    """Both GT matched at every tau: F1 = 2 * 2 / 4 = 1."""
    assert compute_reward(GT, "0.0-10.0 seconds: check the order\n10.0-20.0 seconds: wash hands").value == 1.0


def test_segments_on_one_line_merge_into_one():
    """One parsed segment (0,10) matching GT1 at every tau: F1 = 2 * 1 / (1 + 2) = 2/3."""
    assert compute_reward(GT, "0.0-10.0 seconds: check the order 10.0-20.0 seconds: wash hands").value == pytest.approx(2 / 3)


def test_partial_overlap():
    """pred (0,6) vs GT (0,10): IoU 0.6 -> matched at 0.3 and 0.5, not 0.7. F1: 1, 1, 2*1/4 = 0.5 -> mean 2.5/3."""
    assert compute_reward(GT, "0.0-6.0 seconds: check\n10.0-20.0 seconds: wash").value == pytest.approx(2.5 / 3)


def test_overlapping_predictions_are_flattened_then_scored():
    """(0,10) and (5,20) overlap -> pieces (0,5), (5,10), (10,20). IoU with GT (0,10): 0.5, 0.5; (10,20) with
    GT (10,20): 1. One-to-one: (10,20)-GT2 and (0,5)-GT1. tau 0.3 and 0.5: 2 matches -> 2*2/5 = 0.8;
    tau 0.7: 1 match -> 2/5 = 0.4. Mean (0.8 + 0.8 + 0.4) / 3 = 2/3."""
    r = compute_reward(GT, "0.0-10.0 seconds: check\n5.0-20.0 seconds: wash")
    assert r.value == pytest.approx(2 / 3) and r.components["flattened"] == 1.0


def test_splitting_one_gt_into_pieces_is_not_paid():
    """Three pieces (0,3.4), (3.4,6.7), (6.7,10) of GT1 plus GT2 exact: IoUs 0.34, 0.33, 0.33 with GT1.
    tau 0.3: one-to-one gives 2 matches -> 2*2/(4+2) = 2/3; tau 0.5, 0.7: 1 match -> 2/6 = 1/3.
    Mean (2/3 + 1/3 + 1/3) / 3 = 4/9 < 1 for the exact answer."""
    answer = "0.0-3.4 seconds: a\n3.4-6.7 seconds: b\n6.7-10.0 seconds: c\n10.0-20.0 seconds: wash"
    assert compute_reward(GT, answer).value == pytest.approx(4 / 9)


def test_flat_gt_list_form_and_missing_captions():
    """struc_info as a flat list; a GT segment without caption is ignored -> GT is only (0,10):
    pred (0,10) -> 1."""
    rec = dvc_record([(0, 10, "a")], nurvid=False)
    rec["struc_info"].append({"start": 10, "end": 20})
    assert compute_reward(rec, "0.0-10.0 seconds: a").value == 1.0


def test_malformed_empty_and_no_gt():
    assert compute_reward(GT, "the nurse checks and washes").value == 0.0
    assert compute_reward(GT, "").value == 0.0
    none = compute_reward(dvc_record([]), "0.0-10.0 seconds: a")
    assert none.value is None and "no GT segments" in none.reason
