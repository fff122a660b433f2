"""TAL answer parser and training reward (soft F1 of one-to-one matched IoUs, seconds).

reward = 2 * sum(matched IoU) / (#pred + #GT). Every expected number is worked out in the test's docstring.
"""
import pytest

from medgrpo_ray.evaluation.tal import match_at
from medgrpo_ray.rewards import RewardSettings, compute_reward
from medgrpo_ray.rewards.parsers import parse_segments
from medgrpo_ray.rewards.types import Segments, Unparseable


def tal_record(spans, fps="1.0"):
    return {
        "qa_type": "tal",
        "struc_info": [{"spans": [{"start": s, "end": e} for s, e in spans]}],
        "metadata": {"fps": fps},
        "data_source": "NurViD",
        "question": "Find the segment(s) where Disinfect skin happens.",
        "gnd": "",
    }


GT = tal_record([(4.0, 9.5)])


def test_parser_reads_every_range_and_keeps_order():
    assert parse_segments("4.0-9.5, 20.0-26.0 seconds.") == Segments(((4.0, 9.5), (20.0, 26.0)), "range")
    # quirk: any a-b is a segment, spaces around '-' allowed
    assert parse_segments("Step 1 - 2, in 2023-2024").items == ((1.0, 2.0), (2023.0, 2024.0))


def test_parser_prose_fallback_including_bogus_hms_segment():
    assert parse_segments("from 4 seconds to 9.5 seconds").items == ((4.0, 9.5),)
    assert parse_segments("It happens 5s to 10s.").items == ((5.0, 10.0),)
    # "10 to 00" inside the clock times also matches the X-to-Y pattern: bogus (10, 0) before (10, 20)
    assert parse_segments("00:00:10 to 00:00:20") == Segments(((10.0, 0.0), (10.0, 20.0)), "prose")


def test_parser_unparseable_and_empty():
    assert isinstance(parse_segments("somewhere in the middle"), Unparseable)
    assert isinstance(parse_segments(""), Unparseable)


def test_exact_match_is_one():
    """IoU((4, 9.5), (4, 9.5)) = 1 -> 2 * 1 / (1 + 1) = 1."""
    r = compute_reward(GT, "4.0-9.5 seconds.")
    assert r.value == 1.0 and r.components["n_pred"] == 1


def test_partial_overlap():
    """pred (6, 12) vs GT (4, 9.5): overlap 9.5 - 6 = 3.5, union 5.5 + 6 - 3.5 = 8 -> IoU 0.4375;
    2 * 0.4375 / 2 = 0.4375."""
    assert compute_reward(GT, "6.0-12.0 seconds.").value == pytest.approx(0.4375)


def test_two_gt_segments():
    """GT (0,10),(20,30); pred (0,10),(20,25): IoUs 1 and 5/10 = 0.5 -> 2 * 1.5 / 4 = 0.75."""
    r = compute_reward(tal_record([(0, 10), (20, 30)]), "0-10, 20-25 seconds")
    assert r.value == pytest.approx(0.75)


def test_reversed_segment_scores_zero_but_parses():
    """(9.5, 4.0) is kept reversed; plain IoU of a reversed interval is 0 -> 0."""
    r = compute_reward(GT, "9.5-4.0 seconds.")
    assert r.value == 0.0 and r.components["parsed"] == 1.0


def test_malformed_and_empty_answers_score_zero_with_reason():
    for answer in ("around the middle of the clip", ""):
        r = compute_reward(GT, answer)
        assert r.value == 0.0 and r.reason.startswith("unparseable")


def test_correct_segment_plus_ten_junk_is_lower_than_correct_alone():
    """Alone: 2 * 1 / (1 + 1) = 1. With ten disjoint junk segments: 2 * 1 / (11 + 1) = 1/6.
    The leaderboard's meanIoU@0.3 is 1.0 in both cases (it ignores unmatched predictions)."""
    junk = ", ".join(f"{50 + 2 * i}-{51 + 2 * i}" for i in range(10))
    alone = compute_reward(GT, "4.0-9.5 seconds.").value
    spammed = compute_reward(GT, f"4.0-9.5, {junk} seconds.").value
    assert spammed == pytest.approx(1 / 6)
    assert spammed < alone
    junk_segments = [(50.0 + 2 * i, 51.0 + 2 * i) for i in range(10)]
    assert match_at([(4.0, 9.5)] + junk_segments, [(4.0, 9.5)], 0.3) == (1.0, 1.0)


def test_duplicates_are_extra_predictions():
    """The same segment twice: one match (IoU 1) -> 2 * 1 / (2 + 1) = 2/3."""
    assert compute_reward(GT, "4.0-9.5, 4.0-9.5 seconds").value == pytest.approx(2 / 3)


def test_stray_number_range_costs_reward():
    """'Step 1-2' parses as a segment (1, 2) (leaderboard quirk): 2 * 1 / (2 + 1) = 2/3."""
    assert compute_reward(GT, "Step 1-2: it is 4.0-9.5 seconds").value == pytest.approx(2 / 3)


def test_prose_times_are_rewarded():
    """'from 4 seconds to 9.5 seconds' -> (4, 9.5) -> 1."""
    assert compute_reward(GT, "The action runs from 4 seconds to 9.5 seconds.").value == 1.0


def test_format_weight_blend():
    """w = 0.1: exact 0.9 * 1 + 0.1 = 1.0; partial 0.9 * 0.4375 + 0.1 = 0.49375; unparseable 0."""
    s = RewardSettings(format_weight=0.1)
    assert compute_reward(GT, "4.0-9.5 seconds", s).value == pytest.approx(1.0)
    assert compute_reward(GT, "6.0-12.0 seconds", s).value == pytest.approx(0.49375)
    assert compute_reward(GT, "no idea", s).value == 0.0


def test_record_without_gt_spans_gives_no_reward():
    r = compute_reward({**GT, "struc_info": []}, "4.0-9.5 seconds")
    assert r.value is None and "no GT spans" in r.reason
