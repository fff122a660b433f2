"""Bootstrap intervals and paired comparisons (evaluation/bootstrap.py, compare.py) on hand-worked cases, and the
per-record statistics of every metric checked against the metric's own value on the synthetic benchmark."""
import json
import math
import re

import numpy as np
import pytest

from medgrpo_ray.evaluation import evaluate, to_markdown
from medgrpo_ray.evaluation.bootstrap import draw_counts, interval, paired, resampled_values, rng_for
from medgrpo_ray.evaluation.compare import compare_reports, comparison_markdown, record_keys
from medgrpo_ray.evaluation.evaluator import with_intervals
from medgrpo_ray.judge.types import ASPECTS, JudgeResult

CVS_KEYS = ("two_structures", "cystic_plate", "hepatocystic_triangle")


def nap(answer, gnd, dataset="AVOS"):
    return {"qa_type": "next_action", "answer": answer, "gnd": gnd, "data_source": dataset, "question": "next?",
            "metadata": {"fps": "1.0"}}


def cvs(scores_pred, scores_gt, dataset):
    fmt = lambda s: ", ".join(f"{name}: {v}" for name, v in zip(("Two structures", "Cystic plate",  # noqa: E731
                                                                "Hepatocystic triangle"), s))
    return {"qa_type": "cvs_assessment", "answer": fmt(scores_pred), "gnd": fmt(scores_gt), "data_source": dataset,
            "question": "cvs?", "metadata": {"fps": "1.0"}, "struc_info": [{"cvs_scores": dict(zip(CVS_KEYS, scores_gt))}]}


def test_a_proportion_interval_contains_its_mean_and_has_the_binomial_width():
    """12 of 20 NAP answers right: mean 0.6; the bootstrap SE is about sqrt(0.6 * 0.4 / 20) = 0.11, so the 95 %
    interval is about 0.6 -/+ 0.21 (0.38, 0.81) - it must contain 0.6 and be roughly that wide."""
    records = [nap("cutting", "cutting") for _ in range(12)] + [nap("tying", "cutting") for _ in range(8)]
    ci = with_intervals(evaluate(records), resamples=4000).intervals["nap_acc"]
    assert ci.mean == pytest.approx(0.6) and ci.n == 20
    assert ci.low < 0.6 < ci.high
    assert 0.33 <= ci.low <= 0.43 and 0.77 <= ci.high <= 0.86
    assert re.fullmatch(r"0\.600 \[0\.\d\d, 0\.\d\d\] n=20", ci.cell())


@pytest.mark.parametrize("answer,expected", [("cutting", 1.0), ("tying", 0.0)])
def test_all_records_equal_gives_a_zero_width_interval(answer, expected):
    ci = with_intervals(evaluate([nap(answer, "cutting") for _ in range(15)])).intervals["nap_acc"]
    assert (ci.mean, ci.low, ci.high, ci.n) == (expected, expected, expected, 15)


def test_a_mean_of_dataset_means_is_resampled_within_each_dataset():
    """cvs_acc = mean over datasets of the component-balanced accuracy. Dataset A: two records, all components
    right (1.0 in every resample). Dataset B: one record all right, one all wrong: drawing B's two records with
    replacement gives (2 right) p=1/4 -> 1.0, (one each) p=1/2 -> 0.5, (2 wrong) p=1/4 -> 0.0. So cvs_acc takes
    1.0, 0.75, 0.5 with probabilities 1/4, 1/2, 1/4 and never less than 0.5 (a pooled resample could leave A out and
    reach 0)."""
    right, wrong = (2, 1, 2), (0, 0, 0)
    records = [cvs(right, right, "A"), cvs(right, right, "A"), cvs(right, right, "B"), cvs(wrong, right, "B")]
    report = evaluate(records)
    m = report.metrics["cvs_acc"]
    assert m.value == pytest.approx(0.75) and m.per_dataset == pytest.approx({"A": 1.0, "B": 0.5})
    sample = m.sample
    counts = draw_counts({k: len(v) for k, v in sample.strata().items()}, 8000, rng_for("cvs_acc", 0))
    values = resampled_values(sample, counts)
    assert set(np.round(values, 6)) == {0.5, 0.75, 1.0}
    shares = {v: float(np.mean(np.isclose(values, v))) for v in (0.5, 0.75, 1.0)}
    assert shares == pytest.approx({0.5: 0.25, 0.75: 0.5, 1.0: 0.25}, abs=0.02)
    ci = interval(sample, "cvs_acc", 8000)
    assert (ci.low, ci.high, ci.n) == (0.5, 1.0, 4)


def test_the_same_seed_gives_the_same_intervals_and_another_seed_does_not():
    records = [nap("cutting" if i % 3 else "tying", "cutting") for i in range(30)]
    report = evaluate(records)
    a, b = with_intervals(report, seed=7), with_intervals(report, seed=7)
    assert a.intervals == b.intervals
    draws = [resampled_values(report.metrics["nap_acc"].sample,
                              draw_counts({"": 30}, 50, rng_for("nap_acc", s))) for s in (7, 7, 8)]
    assert np.array_equal(draws[0], draws[1]) and not np.array_equal(draws[0], draws[2])


def test_a_file_compared_with_itself_changes_by_exactly_zero():
    records = [nap("cutting" if i % 3 else "tying", "cutting") for i in range(30)]
    records += [cvs((2, i % 2, 2), (2, 1, 2), "Cholec80-CVS") for i in range(10)]
    report = evaluate(records)
    cmp = compare_reports(report, report)
    for row in cmp.rows:
        d = row.diff
        assert (d.delta, d.low, d.high, d.b_better, d.excludes_zero) == (0.0, 0.0, 0.0, 0.0, False), row
    assert {r.metric for r in cmp.rows if r.dataset is None} == {"nap_acc", "cvs_acc"}
    assert "not computed on both sides" in cmp.not_compared["stg_miou"]


def test_a_clear_improvement_is_marked_and_b_wins_every_resample():
    """A: 2 of 20 right, B: 18 of 20 right on the same records: +0.8, every resample favours B."""
    gnd = ["cutting"] * 20
    a = evaluate([nap("cutting" if i < 2 else "tying", g) for i, g in enumerate(gnd)])
    b = evaluate([nap("cutting" if i < 18 else "tying", g) for i, g in enumerate(gnd)])
    d = compare_reports(a, b).overall()["nap_acc"].diff
    assert d.delta == pytest.approx(0.8) and d.b_better == 1.0 and d.excludes_zero and 0.5 < d.low < 0.8 < d.high
    md = comparison_markdown(compare_reports(a, b), "SFT", "GRPO")
    assert re.search(r"\| nap_acc \| 0\.100 \| 0\.900 \| \+0\.800 \[\+0\.\d\d, \+\d\.\d\d\] \* \| 1\.00 \| 20 \|", md)


def test_paired_resampling_is_tighter_than_two_independent_intervals():
    """B = A plus two more right answers out of 40: the marginal intervals overlap widely, the paired one is narrow
    (the records' shared difficulty cancels) - the reason for pairing."""
    rng = np.random.default_rng(0)
    right = rng.random(40) < 0.5
    better = right.copy()
    better[np.flatnonzero(~right)[:2]] = True
    a = with_intervals(evaluate([nap("cutting" if r else "tying", "cutting") for r in right]))
    b = with_intervals(evaluate([nap("cutting" if r else "tying", "cutting") for r in better]))
    d = compare_reports(a, b).overall()["nap_acc"].diff
    assert d.delta == pytest.approx(0.05)
    assert (d.high - d.low) < 0.5 * (a.intervals["nap_acc"].high - a.intervals["nap_acc"].low)
    assert d.low >= 0.0  # B is never worse on any resample: it only adds right answers


def test_several_seeds_on_one_side_are_averaged_under_the_same_resamples():
    gnd = ["cutting"] * 10
    sft = evaluate([nap("tying", g) for g in gnd])
    seeds = [evaluate([nap("cutting" if i < k else "tying", g) for i, g in enumerate(gnd)]) for k in (2, 4)]
    d = compare_reports(sft, seeds).overall()["nap_acc"].diff
    assert d.a == 0.0 and d.b == pytest.approx(0.3) and d.delta == pytest.approx(0.3)
    single = paired([sft.metrics["nap_acc"].sample], [s.metrics["nap_acc"].sample for s in seeds], "nap_acc")
    assert single.delta == pytest.approx(0.3)


def test_records_in_one_file_only_are_reported_and_different_records_refused():
    a = {"0": nap("cutting", "cutting"), "1": nap("tying", "cutting"), "2": nap("cutting", "cutting")}
    b = {"0": nap("tying", "cutting"), "1": nap("cutting", "cutting"), "3": nap("cutting", "cutting")}
    only_a, only_b = record_keys(list(a.items()), list(b.items()))
    assert (only_a, only_b) == (["2"], ["3"])
    cmp = compare_reports(evaluate(a), evaluate(b), only_a=only_a, only_b=only_b)
    d = cmp.overall()["nap_acc"].diff
    assert d.n == 2 and (d.a, d.b) == (0.5, 0.5)  # paired on keys 0 and 1 only
    assert "Records in one file only" in comparison_markdown(cmp) and "['2']" in comparison_markdown(cmp)
    b["1"] = nap("cutting", "suturing")
    with pytest.raises(ValueError, match="different records"):
        record_keys(list(a.items()), list(b.items()))


class ScriptedJudge:
    """Aspect scores from the prediction's length and whether it equals the reference; "fail" fails."""

    def score_pairs(self, pairs, task):
        out = []
        for pred, ref in pairs:
            if pred.startswith("fail"):
                out.append(JudgeResult(error="timeout"))
            else:
                base = 5 if pred == ref else 1 + len(pred) % 4
                out.append(JudgeResult(scores={a: max(1, base - i % 2) for i, a in enumerate(ASPECTS)}))
        return out


def _answer(rec: dict, i: int) -> str:
    """Perfect, perturbed (digits shifted), empty or a failed-judge answer, in turn."""
    gnd = rec["gnd"]
    return [gnd, re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), gnd), "", "fail " + gnd][i % 4]


def test_every_metrics_statistics_reproduce_its_value_overall_and_per_dataset(synthetic_bench):
    """The bootstrap aggregates recompute each number from per-record statistics: on the synthetic test split (all
    tasks, eight datasets) with mixed answers and a scripted judge, they give the evaluator's own values."""
    from medgrpo_ray.data.records_io import load_records

    records = [r.to_eval_dict() for r in load_records(synthetic_bench / "test.json")[0]]
    merged = {str(i): {**r, "answer": _answer(r, i)} for i, r in enumerate(records)}
    report = with_intervals(evaluate(merged, judge=ScriptedJudge()), resamples=200)
    computed = [m for m, metric in report.metrics.items() if metric.value is not None]
    assert len(computed) == 10, report.to_json()["not_computed"]
    for name in computed:
        metric = report.metrics[name]
        assert metric.sample.value() == pytest.approx(metric.value, abs=1e-12), name
        for dataset, v in metric.per_dataset.items():
            got = metric.sample.restrict(dataset).value()
            assert (v is None and math.isnan(got)) or got == pytest.approx(v, abs=1e-12), (name, dataset)
        ci = report.intervals[name]
        assert ci.low <= ci.high and ci.n == metric.sample.n
    payload = json.loads(json.dumps(report.to_json()))
    assert set(payload["metrics"]["cvs_acc"]["ci"]) >= {"mean", "low", "high", "n"}
    assert re.search(r"\| cvs_acc \| \d\.\d{3} \[\d\.\d\d, \d\.\d\d\] n=\d+ \|", to_markdown(report))


def test_the_commands_write_intervals_and_paired_rows(tmp_path, capsys):
    from medgrpo_ray.cli import compare as compare_cmd
    from medgrpo_ray.cli import evaluate as evaluate_cmd

    gnd = ["cutting"] * 20
    a = {str(i): nap("cutting" if i < 5 else "tying", g) for i, g in enumerate(gnd)}
    b = {str(i): nap("cutting" if i < 15 else "tying", g) for i, g in enumerate(gnd)}
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    assert evaluate_cmd.main([str(pa), "--ci", "--out", str(tmp_path / "a.eval.json")]) == 0
    ci = json.loads((tmp_path / "a.eval.json").read_text())["metrics"]["nap_acc"]["ci"]
    assert ci["mean"] == 0.25 and ci["n"] == 20 and ci["low"] < 0.25 < ci["high"]
    assert "| nap_acc | 0.250 [" in capsys.readouterr().out

    assert compare_cmd.main([str(pa), str(pb), "--names", "SFT", "GRPO", "--out", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| nap_acc \| 0\.250 \[0\.\d\d, 0\.\d\d\] n=20 \| 0\.750 \[0\.\d\d, 0\.\d\d\] n=20 \| "
                     r"\+0\.500 \[\+0\.\d\d, \+0\.\d\d\] \* \| 1\.00 \| 20 \|", out), out
    payload = json.loads((tmp_path / "c.json").read_text())
    row = next(r for r in payload["rows"] if r["metric"] == "nap_acc" and r["dataset"] is None)
    assert row["delta"] == 0.5 and row["excludes_zero"] and payload["only_in_a"] == [] == payload["only_in_b"]

    b["3"] = nap("cutting", "suturing")
    pb.write_text(json.dumps(b))
    assert compare_cmd.main([str(pa), str(pb)]) == 2
    assert "different records" in capsys.readouterr().err
