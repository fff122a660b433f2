"""Leaderboard dvc_f1: int(t * fps) frames, strict IoU > tau, many-to-many coverage, dataset weighting."""
import pytest

from medgrpo_ray.evaluation import evaluate
from medgrpo_ray.evaluation.dvc import coverage_f1, to_frames


def dvc(answer, segments, dataset, fps="1.0"):
    return {
        "qa_type": "dense_captioning_gemini",
        "answer": answer,
        "struc_info": [{"start": s, "end": e, "caption": c} for s, e, c in segments],
        "metadata": {"fps": fps},
        "data_source": dataset,
        "gnd": "",
    }


def test_fps_half_truncates_to_frames():
    """At fps 0.5: 3.0 s -> int(1.5) = 1 and 2.0 s -> 1; 4.0 s -> 2; 10.0 s -> 5."""
    assert to_frames([(2.0, 3.0), (4.0, 10.0)], 0.5) == [(1, 1), (2, 5)]


def test_record_f1_at_fps_half():
    """GT (0,4),(4,10) s -> frames (0,2),(2,5); pred (0,3),(4,10) s -> (0,1),(2,5).
    IoU (0,1)-(0,2) = 1 / (min(hull 2, lens 1 + 2) + 1e-8) = 0.5; (2,5)-(2,5) ~ 1; cross pairs 0.
    tau 0.3: P = 2/2, R = 2/2; tau 0.5 and 0.7 (strict >): P = 1/2, R = 1/2.
    P = R = (1 + 0.5 + 0.5) / 3 = 2/3 -> F1 = 2/3. (In seconds IoU would be 0.75 and F1 1.)"""
    rec = dvc("0.0-3.0 seconds: a\n4.0-10.0 seconds: b", [(0, 4, "a"), (4, 10, "b")], "NurViD", fps="0.5")
    assert evaluate([rec]).metrics["dvc_f1"].value == pytest.approx(2 / 3)


def test_strict_threshold():
    """IoU exactly 0.5 is not > 0.5: pred (0,5) vs GT (0,10) at fps 1: IoU 5/10 = 0.5 (minus 1e-8 effect).
    tau 0.3: P = R = 1; tau 0.5, 0.7: 0 -> P = R = 1/3 -> F1 = 1/3."""
    assert coverage_f1([(0, 5)], [(0, 10)]) == pytest.approx(1 / 3)


def test_overlapping_predictions_many_to_many():
    """Pred (0,10),(5,20) overlap -> flattened (0,5),(5,10),(10,20); GT (0,10),(10,20).
    IoUs with GT1: 0.5, 0.5, 0; with GT2: 0, 0, 1.
    tau 0.3: P = 3/3, R = 2/2; tau 0.5 and 0.7: P = 1/3, R = 1/2.
    P = (1 + 1/3 + 1/3) / 3 = 5/9, R = (1 + 1/2 + 1/2) / 3 = 2/3, F1 = 2 * (5/9)(2/3) / (5/9 + 2/3) = 20/33."""
    rec = dvc("0.0-10.0 seconds: x\n5.0-20.0 seconds: y", [(0, 10, "x"), (10, 20, "y")], "CoPESD")
    assert evaluate([rec]).metrics["dvc_f1"].value == pytest.approx(20 / 33)


def test_dataset_weighting_counts_records_without_f1():
    """NurViD: the fps-0.5 record (F1 2/3) and an empty answer (no F1, but N counts) -> F1_d = 2/3, N = 2.
    CoPESD: exact (F1 1) and the overlap record (20/33) -> F1_d = 53/66, N = 2.
    EgoSurgery: one record with struc_info [] (no GT -> no F1) -> F1_d = 0, N = 1.
    dvc_f1 = (2/3 * 2 + 53/66 * 2 + 0 * 1) / 5 = (88/66 + 106/66) / 5 = 194/330."""
    records = [
        dvc("0.0-3.0 seconds: a\n4.0-10.0 seconds: b", [(0, 4, "a"), (4, 10, "b")], "NurViD", fps="0.5"),
        dvc("", [(0, 4, "a")], "NurViD"),
        dvc("0.0-10.0 seconds: x", [(0, 10, "x")], "CoPESD"),
        dvc("0.0-10.0 seconds: x\n5.0-20.0 seconds: y", [(0, 10, "x"), (10, 20, "y")], "CoPESD"),
        dvc("0.0-10.0 seconds: x", [], "EgoSurgery"),
    ]
    m = evaluate(records).metrics["dvc_f1"]
    assert m.value == pytest.approx(194 / 330)
    assert m.per_dataset == pytest.approx({"CoPESD": 53 / 66, "EgoSurgery": 0.0, "NurViD": 2 / 3})
    assert (m.counted, m.total) == (3, 5)


def test_one_line_answer_is_one_segment():
    """'0.0-10.0 seconds: x 10.0-20.0 seconds: y' on one line -> one segment (0,10).
    vs GT (0,10),(10,20): P = 1 at every tau, R = 1/2 -> F1 = 2 * 1 * 0.5 / 1.5 = 2/3."""
    rec = dvc("0.0-10.0 seconds: x 10.0-20.0 seconds: y", [(0, 10, "x"), (10, 20, "y")], "CoPESD")
    assert evaluate([rec]).metrics["dvc_f1"].value == pytest.approx(2 / 3)
