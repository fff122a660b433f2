"""Leaderboard TAG (tag_miou_03/05) and STG (stg_miou): matching rules, which records count, pooling."""
import pytest

from medgrpo_ray.evaluation import evaluate
from medgrpo_ray.evaluation.tal import match_at


def tal(answer, spans, dataset="NurViD", fps="1.0"):
    return {
        "qa_type": "tal",
        "answer": answer,
        "struc_info": [{"spans": [{"start": s, "end": e} for s, e in spans]}] if spans else [],
        "metadata": {"fps": fps},
        "data_source": dataset,
        "gnd": "",
    }


def stg(answer, boxes, dataset="CoPESD"):
    return {
        "qa_type": "stg",
        "answer": answer,
        "struc_info": [{"bbox_dict": boxes}] if boxes is not None else [],
        "metadata": {"fps": "1.0"},
        "data_source": dataset,
        "gnd": "",
    }


SQ = [0, 0, 100, 100]


def test_tal_matching_counts_matched_pairs_only():
    """GT (0,10),(0,10); one prediction (0,10): the first GT takes it (IoU 1), the second finds nothing.
    meanIoU = 1.0 (matched pairs only), recall = 1/2."""
    assert match_at([(0, 10)], [(0, 10), (0, 10)], 0.5) == (1.0, 0.5)


def test_tal_ties_go_to_the_first_prediction():
    """GT (0,10), (0,5); predictions (0,5) and (5,10) both have IoU 0.5 with GT (0,10); strictly-greater keeps
    the first, (0,5). GT (0,5) is left with (5,10): IoU 0 -> unmatched. meanIoU@0.5 = 0.5, recall 1/2.
    (Had the tie gone to (5,10), GT (0,5) would match (0,5) with IoU 1: meanIoU 0.75, recall 1.)"""
    assert match_at([(0, 5), (5, 10)], [(0, 10), (0, 5)], 0.5) == (0.5, 0.5)


def test_tag_aggregate_over_all_records():
    """A: GT (0,10),(20,30); pred (0,10),(22,30),(40,50): IoUs 1 and 8/10 -> meanIoU 0.9 at both tau
       (the extra (40,50) is ignored).
    B (fps 0.5): GT (0,10); pred (0,4): IoU 4/10 = 0.4 -> 0.4 at tau 0.3, unmatched (0) at 0.5.
    C: empty answer -> 0.  D (CholecT50): reversed (9.5,4) vs GT (4,9.5) -> IoU 0 -> 0.
    E: no GT spans -> 0 (it still counts).
    tag_miou_03 = (0.9 + 0.4 + 0 + 0 + 0) / 5 = 0.26; tag_miou_05 = 0.9 / 5 = 0.18.
    NurViD (A, B, C, E): 0.3 -> 1.3 / 4 = 0.325; 0.5 -> 0.9 / 4 = 0.225. CholecT50: 0."""
    records = [
        tal("0-10, 22-30, 40-50 seconds", [(0, 10), (20, 30)]),
        tal("0.0-4.0 seconds", [(0, 10)], fps="0.5"),
        tal("", [(0, 10)]),
        tal("9.5-4.0 seconds", [(4, 9.5)], dataset="CholecT50"),
        tal("1-2 seconds", None),
    ]
    report = evaluate(records)
    m03, m05 = report.metrics["tag_miou_03"], report.metrics["tag_miou_05"]
    assert m03.value == pytest.approx(0.26) and m05.value == pytest.approx(0.18)
    assert m03.per_dataset == pytest.approx({"CholecT50": 0.0, "NurViD": 0.325})
    assert m05.per_dataset == pytest.approx({"CholecT50": 0.0, "NurViD": 0.225})
    assert m03.counted == 5 and m03.details["records_without_gt"] == 1
    # recall@0.3: A 1, B 1, others 0 -> 2 / 5
    assert m03.details["recall"]["0.3"] == pytest.approx(0.4)


def test_stg_aggregate_and_quirks():
    """1 (CoPESD): GT at 1.0 and 2.0, answer only 1.0 -> 2.0 copies the previous box -> IoU 1, 1 -> 1.0.
    2 (CoPESD): GT key '1.25' looked up as '1.2' -> missing -> [0,0,0,0] -> 0.
    3 (EgoSurgery): [-100,-100,100,100] vs [0,0,100,100] unclipped: 10000 / (40000 + 10000 - 10000) = 0.25.
    4 (EgoSurgery): struc_info [] -> not counted.   5 (EgoSurgery): unparseable -> 0, counted.
    stg_miou = (1 + 0 + 0.25 + 0) / 4 = 0.3125; CoPESD 0.5; EgoSurgery 0.25 / 2 = 0.125."""
    records = [
        stg("1.0 seconds: [0, 0, 100, 100]", {"1.0": SQ, "2.0": SQ}),
        stg("1.25 seconds: [0, 0, 100, 100]", {"1.25": SQ}),
        stg("1 seconds: [-100, -100, 100, 100]", {"1": SQ}, "EgoSurgery"),
        stg("1.0 seconds: [0, 0, 100, 100]", None, "EgoSurgery"),
        stg("no idea", {"1.0": SQ}, "EgoSurgery"),
    ]
    m = evaluate(records).metrics["stg_miou"]
    assert m.value == pytest.approx(0.3125)
    assert m.per_dataset == pytest.approx({"CoPESD": 0.5, "EgoSurgery": 0.125})
    assert (m.counted, m.total, m.details["skipped_empty_gt"]) == (4, 5, 1)


def test_stg_invalid_entry_takes_last_valid_box_and_inverted_box_scores_zero():
    """'2.0 seconds: [5, 5]' takes [0,0,100,100] -> IoUs 1, 1 -> 1.0. Inverted [100,100,0,0] -> 0."""
    r = evaluate([stg("1.0 seconds: [0, 0, 100, 100] 2.0 seconds: [5, 5]", {"1.0": SQ, "2.0": SQ})])
    assert r.metrics["stg_miou"].value == 1.0
    r = evaluate([stg("1.0 seconds: [100, 100, 0, 0]", {"1.0": SQ})])
    assert r.metrics["stg_miou"].value == 0.0


def test_stg_fallback_boxes_and_bare_box_dict():
    """[[0, 0, 100, 100]] fills GT time 1.0; 2.0 has no box -> [0,0,0,0] -> copies the previous -> 1.0.
    struc_info [{"1.0": box}] (no bbox_dict) is read as the box dict itself."""
    rec = stg("[[0, 0, 100, 100]]", {"1.0": SQ, "2.0": SQ})
    assert evaluate([rec]).metrics["stg_miou"].value == 1.0
    bare = {**rec, "answer": "1.0 seconds: [0, 0, 50, 100]", "struc_info": [{"1.0": SQ}]}
    assert evaluate([bare]).metrics["stg_miou"].value == 0.5  # overlap 5000 / union 10000
