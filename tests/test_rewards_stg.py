"""STG answer parser and training reward (mean clipped-box IoU over GT timestamps, missing = 0)."""
import pytest

from medgrpo_ray.evaluation.stg import record_miou
from medgrpo_ray.rewards import compute_reward
from medgrpo_ray.rewards.parsers import parse_timed_boxes
from medgrpo_ray.rewards.types import TimedBoxes, Unparseable


def stg_record(boxes, **meta):
    return {
        "qa_type": "stg",
        "struc_info": [{"object": "forceps", "bbox_dict": boxes}],
        "metadata": {"fps": "1.0", **meta},
        "data_source": "CoPESD",
        "gnd": "",
    }


SQUARE = [0, 0, 100, 100]


def test_parser_keys_carry_and_drop():
    """'5.0 seconds: [1, 2, 3]' is not four numbers -> takes the last valid box and is marked carried;
    a first invalid entry with nothing before it is dropped; '9 seconds' is keyed '9.0'."""
    p = parse_timed_boxes("3.0 seconds: [1, 2] 1.0 seconds: [240, 260, 560, 990] 5.0 seconds: [1, 2, 3] 9 seconds: [300, 270, 580, 1004]")
    assert isinstance(p, TimedBoxes)
    assert p.as_dict() == {"1.0": (240, 260, 560, 990), "5.0": (240, 260, 560, 990), "9.0": (300, 270, 580, 1004)}
    assert p.carried == frozenset({"5.0"})


def test_parser_fallback_and_unparseable():
    p = parse_timed_boxes("[[1, 2, 3, 4]] then [[5, 6, 7, 8]]")
    assert p.fallback and p.ordered == ((1, 2, 3, 4), (5, 6, 7, 8))
    assert isinstance(parse_timed_boxes("the forceps are at the top"), Unparseable)
    assert isinstance(parse_timed_boxes(""), Unparseable)


def test_exact_boxes_score_one():
    rec = stg_record({"1.0": SQUARE, "5.0": [100, 100, 200, 200]})
    assert compute_reward(rec, "1.0 seconds: [0, 0, 100, 100] 5.0 seconds: [100, 100, 200, 200]").value == 1.0


def test_partial_overlap():
    """[50, 0, 150, 100] vs [0, 0, 100, 100]: overlap 50 * 100 = 5000, union 10000 + 10000 - 5000 = 15000 -> 1/3."""
    assert compute_reward(stg_record({"1.0": SQUARE}), "1.0 seconds: [50, 0, 150, 100]").value == pytest.approx(1 / 3)


def test_missing_timestamp_counts_zero_where_leaderboard_copies_forward():
    """GT at 1.0 and 2.0 (same box); answer only at 1.0. Reward (1 + 0) / 2 = 0.5.
    Leaderboard: 2.0 is missing -> [0,0,0,0] -> previous predicted box -> IoU 1 -> 1.0."""
    rec = stg_record({"1.0": SQUARE, "2.0": SQUARE})
    answer = "1.0 seconds: [0, 0, 100, 100]"
    r = compute_reward(rec, answer)
    assert r.value == 0.5 and r.components["n_missing"] == 1
    assert record_miou("0", {**rec, "answer": answer}) == 1.0


def test_malformed_entry_scores_zero_for_its_timestamp():
    """'2.0 seconds: [5, 5]' is carried by the parser, but the reward counts it as missing: (1 + 0) / 2."""
    rec = stg_record({"1.0": SQUARE, "2.0": SQUARE})
    assert compute_reward(rec, "1.0 seconds: [0, 0, 100, 100] 2.0 seconds: [5, 5]").value == 0.5


def test_box_outside_frame_is_clipped_when_frame_size_known():
    """Frame 200x200: [100, 100, 300, 300] clips to [100, 100, 200, 200] = GT -> 1.
    Unknown frame: overlap 100 * 100 = 10000, union 40000 + 10000 - 10000 = 40000 -> 0.25."""
    boxes = {"1.0": [100, 100, 200, 200]}
    answer = "1.0 seconds: [100, 100, 300, 300]"
    assert compute_reward(stg_record(boxes, width=200, height=200), answer).value == 1.0
    assert compute_reward(stg_record(boxes, frame_size=[200, 200]), answer).value == 1.0
    assert compute_reward(stg_record(boxes), answer).value == pytest.approx(0.25)


def test_negative_coordinates_clip_to_zero_without_frame_size():
    """[-100, -100, 100, 100] -> [0, 0, 100, 100] = GT -> 1 (leaderboard, unclipped: 10000 / 40000 = 0.25)."""
    rec = stg_record({"1.0": SQUARE})
    answer = "1.0 seconds: [-100, -100, 100, 100]"
    assert compute_reward(rec, answer).value == 1.0
    # box values are comma-split floats, so the sign is kept; the leaderboard does not clip: 0.25
    assert record_miou("0", {**rec, "answer": answer}) == pytest.approx(0.25)


def test_inverted_box_scores_zero():
    assert compute_reward(stg_record({"1.0": SQUARE}), "1.0 seconds: [100, 100, 0, 0]").value == 0.0


def test_two_decimal_timestamp_matches_numerically():
    """GT key '1.25': the reward matches '1.25 seconds' (1.0); the leaderboard looks up '1.2' and scores 0."""
    rec = stg_record({"1.25": SQUARE})
    answer = "1.25 seconds: [0, 0, 100, 100]"
    assert compute_reward(rec, answer).value == 1.0
    assert record_miou("0", {**rec, "answer": answer}) == 0.0


def test_fallback_boxes_assigned_in_gt_order():
    """Two [[...]] boxes for GT times 1.0 and 5.0, in order: IoUs 1 and 1 -> 1."""
    rec = stg_record({"1.0": SQUARE, "5.0": [100, 100, 200, 200]})
    assert compute_reward(rec, "[[0, 0, 100, 100]] [[100, 100, 200, 200]]").value == 1.0


def test_unparseable_empty_and_no_gt():
    rec = stg_record({"1.0": SQUARE})
    assert compute_reward(rec, "top left").value == 0.0
    assert compute_reward(rec, "").value == 0.0
    none = compute_reward({**rec, "struc_info": []}, "1.0 seconds: [0, 0, 100, 100]")
    assert none.value is None and "no GT boxes" in none.reason
