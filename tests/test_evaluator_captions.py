"""Caption-judge columns (dvc_llm, vs_llm, rc_llm) with a fake CaptionJudge, and "not computed" without one."""
import pytest

from medgrpo_ray.evaluation import evaluate, to_markdown
from medgrpo_ray.judge.types import ASPECTS, JudgeResult


class FakeJudge:
    """All five aspects 5 when prediction == reference, 2 otherwise; the prediction "fail" is a failed call.
    The prediction "graded" gets aspects 5, 4, 3, 2, 1 (mean 3)."""

    def __init__(self):
        self.calls = []

    def score_pairs(self, pairs, task):
        self.calls.append((task, list(pairs)))
        out = []
        for pred, ref in pairs:
            if pred == "fail":
                out.append(JudgeResult(error="timeout after 3 attempts"))
            elif pred == "graded":
                out.append(JudgeResult(scores=dict(zip(ASPECTS, (5, 4, 3, 2, 1)))))
            else:
                out.append(JudgeResult(scores={a: 5 if pred == ref else 2 for a in ASPECTS}))
        return out


def dvc(answer, segments, dataset):
    return {"qa_type": "dense_captioning_gpt", "answer": answer, "data_source": dataset, "gnd": "", "metadata": {"fps": "1.0"},
            "struc_info": [{"start": s, "end": e, "caption": c} for s, e, c in segments]}


def caption(qa_type, answer, gnd, dataset):
    return {"qa_type": qa_type, "answer": answer, "gnd": gnd, "data_source": dataset, "metadata": {"fps": "1.0"}, "struc_info": []}


DVC_RECORDS = [
    # (0,10)-(0,10) IoU 1 -> pair (x, x) at every tau; (10,16)-(10,20) IoU 0.6 -> pair (z, y) at 0.3 and 0.5
    dvc("0.0-10.0 seconds: x\n10.0-16.0 seconds: z", [(0, 10, "x"), (10, 20, "y")], "CoPESD"),
    # no overlap with GT -> no pair
    dvc("20.0-30.0 seconds: a", [(0, 10, "a")], "NurViD"),
    # IoU 1 -> pair (fail, x) at every tau, but the judge call fails -> left out
    dvc("0.0-10.0 seconds: fail", [(0, 10, "x")], "CoPESD"),
]


def test_dvc_llm_aggregation():
    """tau 0.3 and 0.5: pairs (x,x) = 5 and (z,y) = 2 on every aspect -> aspect means 3.5 -> 3.5.
    tau 0.7: only (x,x) -> 5. dvc_llm = (3.5 + 3.5 + 5) / 3 = 4.0. NurViD has no pair: 0.0.
    Unique pairs sent once: (x,x), (z,y), (fail,x) = 3, of which 2 succeed."""
    judge = FakeJudge()
    m = evaluate(DVC_RECORDS, judge=judge).metrics["dvc_llm"]
    assert m.value == pytest.approx(4.0)
    assert m.per_dataset == pytest.approx({"CoPESD": 4.0, "NurViD": 0.0})
    assert (m.details["pairs_judged"], m.details["judge_ok"]) == (3, 2)
    assert [task for task, _ in judge.calls] == ["dense_captioning"]


def test_vs_and_rc_pool_over_records():
    """VS: CoPESD two exact (5, 5), AVOS one wrong (2); empty answer and empty GT skipped.
    vs_llm = per-aspect mean (5 + 5 + 2) / 3 = 4.0 on every aspect -> 4.0; CoPESD 5.0, AVOS 2.0.
    RC: one 'graded' pair (5,4,3,2,1) -> mean of the five aspect means = 3.0; a failed call is left out."""
    records = [
        caption("video_summary_gpt", "forceps lift the flap", "forceps lift the flap", "CoPESD"),
        caption("video_summary_gemini", "the knife dissects", "the knife dissects", "CoPESD"),
        caption("video_summary_gpt", "a tool moves", "the grasper retracts", "AVOS"),
        caption("video_summary_gpt", "", "the grasper retracts", "AVOS"),
        caption("video_summary_gpt", "something", " ", "AVOS"),
        caption("region_caption_gpt", "graded", "the needle driver", "EgoSurgery"),
        caption("region_caption_gemini", "fail", "the needle driver", "EgoSurgery"),
    ]
    judge = FakeJudge()
    report = evaluate(records, judge=judge)
    vs, rc = report.metrics["vs_llm"], report.metrics["rc_llm"]
    assert vs.value == pytest.approx(4.0) and vs.per_dataset == pytest.approx({"AVOS": 2.0, "CoPESD": 5.0})
    assert vs.details["skipped_empty"] == 2
    assert rc.value == pytest.approx(3.0) and (rc.counted, rc.total) == (1, 2)
    assert sorted(task for task, _ in judge.calls) == ["region_caption", "video_summary"]


def test_without_judge_caption_columns_are_not_computed_never_zero():
    records = DVC_RECORDS + [caption("video_summary_gpt", "a", "b", "CoPESD"), caption("region_caption_gpt", "a", "b", "CoPESD")]
    report = evaluate(records)
    for name in ("dvc_llm", "vs_llm", "rc_llm"):
        assert report.metrics[name].value is None
        assert "no judge configured" in report.metrics[name].note
    payload = report.to_json()
    assert payload["leaderboard_row"]["vs_llm"] is None
    assert {"dvc_llm", "vs_llm", "rc_llm"} <= set(payload["not_computed"])
    assert "dvc_f1" not in payload["not_computed"]  # computed without a judge
    overall = next(line for line in to_markdown(report).splitlines() if line.startswith("| overall"))
    assert overall.endswith("| n/c | n/c | n/c |")


def test_all_judge_calls_failing_is_not_computed():
    records = [caption("video_summary_gpt", "fail", "the grasper", "CoPESD")]
    m = evaluate(records, judge=FakeJudge()).metrics["vs_llm"]
    assert m.value is None and "no successful judge score" in m.note
