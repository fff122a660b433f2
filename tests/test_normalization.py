"""Logistic cross-dataset normalization: the paper's properties, the zero-IQR floor, the missing-statistics
policies, checkpoint state, and the statistics command on synthetic baseline files written here."""
import importlib
import json
import math

import numpy as np
import pytest

from medgrpo_ray.rewards.normalization import RewardNormalizer, compute_stats, load_stats, logistic


# Synthetic baseline rollout log. numpy's linear percentiles on 5 sorted values sit exactly on values 2, 3, 4:
# CoPESD stg   [0.3, 0.4, 0.5, 0.6, 0.7]       -> p25 0.4,  p50 0.5,  p75 0.6  -> IQR 0.2
# EgoSurgery   [0.02, 0.08, 0.12, 0.16, 0.22]  -> p25 0.08, p50 0.12, p75 0.16 -> IQR 0.08
# Cholec80-CVS [1, 1, 1, 1, 1]                  -> p50 1, IQR 0 (floored to iqr_floor, default 0.05)
BASELINE = {
    ("CoPESD", "stg"): [0.5, 0.3, 0.7, 0.4, 0.6],
    ("EgoSurgery", "stg"): [0.12, 0.02, 0.22, 0.08, 0.16],
    ("Cholec80_CVS", "cvs_assessment"): [1.0] * 5,
}


def load_command(name):
    """The command behind launch/<name>.py (medgrpo_ray/cli/<name>.py)."""
    return importlib.import_module(f"medgrpo_ray.cli.{name}")


@pytest.fixture
def stats_file(tmp_path):
    log = tmp_path / "rollouts.jsonl"
    lines = [json.dumps({"dataset": d, "task": t, "raw_reward": x}) for (d, t), xs in BASELINE.items() for x in xs]
    lines.append(json.dumps({"dataset": "CoPESD", "task": "video_summary", "raw_reward": None}))  # left out
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "stats.json"
    assert load_command("norm_stats").main([str(log), "--out", str(out)]) == 0
    return out


def test_stats_from_rollout_log(stats_file):
    stats = load_stats(stats_file)
    assert set(stats) == {("CoPESD", "stg"), ("EgoSurgery", "stg"), ("Cholec80-CVS", "cvs_assessment")}
    assert (stats[("CoPESD", "stg")].p50, stats[("CoPESD", "stg")].iqr) == pytest.approx((0.5, 0.2))
    assert (stats[("EgoSurgery", "stg")].p50, stats[("EgoSurgery", "stg")].iqr) == pytest.approx((0.12, 0.08))
    assert stats[("Cholec80-CVS", "cvs_assessment")].iqr == 0.0 and stats[("CoPESD", "stg")].n == 5


def test_median_maps_to_half_for_every_dataset(stats_file):
    """CoPESD's median mIoU 0.5 and EgoSurgery's 0.12 both map to 0.5 (the paper's 'median fairness')."""
    norm = RewardNormalizer(load_stats(stats_file))
    assert norm("CoPESD", "stg", 0.5) == 0.5
    assert norm("EgoSurgery", "stg", 0.12) == 0.5
    assert norm("Cholec80_CVS", "cvs_assessment", 1.0) == 0.5


def test_worked_values(stats_file):
    """k = 1: CoPESD x = 0.7 -> z = (0.7 - 0.5) / 0.2 = 1 -> 1 / (1 + e^-1) = 0.7310586.
    EgoSurgery x = 0.2 -> z = 0.08 / 0.08 = 1 -> 0.7310586: the same raw gain above median is worth more on the
    harder dataset. k = 2 doubles z: 1 / (1 + e^-2) = 0.8807971."""
    norm = RewardNormalizer(load_stats(stats_file))
    assert norm("CoPESD", "stg", 0.7) == pytest.approx(0.7310586, abs=1e-7)
    assert norm("EgoSurgery", "stg", 0.2) == pytest.approx(0.7310586, abs=1e-7)
    assert RewardNormalizer(load_stats(stats_file), k=2.0)("CoPESD", "stg", 0.7) == pytest.approx(0.8807971, abs=1e-7)


def test_monotone_bounded_and_nonzero_gradient(stats_file):
    """On raw rewards in [0, 1]: strictly increasing, strictly inside (0, 1), finite-difference slope > 0."""
    norm = RewardNormalizer(load_stats(stats_file))
    xs = np.linspace(0.0, 1.0, 1001)
    for dataset, task in (("CoPESD", "stg"), ("EgoSurgery", "stg"), ("Cholec80-CVS", "cvs_assessment")):
        ys = np.array([norm(dataset, task, x) for x in xs])
        assert np.all((ys > 0) & (ys < 1))
        assert np.all(np.diff(ys) > 0)
        h = 1e-6
        slopes = [(norm(dataset, task, x + h) - norm(dataset, task, x)) / h for x in xs]
        assert min(slopes) > 0


def test_zero_iqr_uses_the_floor(stats_file):
    """Cholec80-CVS IQR 0 -> floor 0.05: x = 0.9 -> z = -0.1 / 0.05 = -2 -> 1 / (1 + e^2) = 0.1192029.
    With iqr_floor 0.5: z = -0.2 -> 0.4501660. The floor also lifts a small non-zero IQR: EgoSurgery's 0.08
    with iqr_floor 0.1: x = 0.2 -> z = 0.08 / 0.1 = 0.8 -> 0.6899745."""
    assert RewardNormalizer(load_stats(stats_file))("Cholec80-CVS", "cvs_assessment", 0.9) == pytest.approx(0.1192029, abs=1e-7)
    norm = RewardNormalizer(load_stats(stats_file), iqr_floor=0.5)
    assert norm("Cholec80-CVS", "cvs_assessment", 0.9) == pytest.approx(0.4501660, abs=1e-7)
    assert RewardNormalizer(load_stats(stats_file), iqr_floor=0.1)("EgoSurgery", "stg", 0.2) == pytest.approx(0.6899745, abs=1e-7)


def test_logistic_never_overflows():
    assert logistic(-1e6, 0.0, 0.1, 1.0) == 0.0 and logistic(1e6, 0.0, 0.1, 1.0) == 1.0  # float limits far outside [0, 1]
    assert logistic(0.3, 0.3, 0.2, 1.0) == 0.5


def test_online_policy_passes_raw_through_warmup_then_freezes():
    """warmup_count 5 on (AVOS, next_action): [0, 1, 1, 0, 1] come back unchanged; then p25 0, p50 1, p75 1
    -> IQR 1, frozen: x = 1 -> 0.5, x = 0 -> 1 / (1 + e) = 0.2689414."""
    norm = RewardNormalizer({}, warmup_count=5)
    assert [norm("AVOS", "next_action", x) for x in (0.0, 1.0, 1.0, 0.0, 1.0)] == [0.0, 1.0, 1.0, 0.0, 1.0]
    s = norm.stats[("AVOS", "next_action")]
    assert (s.p50, s.iqr, s.n, s.source) == (1.0, 1.0, 5, "online")
    assert norm("AVOS", "next_action", 1.0) == 0.5
    assert norm("AVOS", "next_action", 0.0) == pytest.approx(0.2689414, abs=1e-7)


def test_raw_and_error_policies():
    assert RewardNormalizer({}, missing_policy="raw")("AVOS", "next_action", 0.3) == 0.3
    with pytest.raises(KeyError, match="AVOS.*next_action.*norm_stats"):
        RewardNormalizer({}, missing_policy="error")("AVOS", "next_action", 0.3)
    with pytest.raises(ValueError, match="missing_policy"):
        RewardNormalizer({}, missing_policy="median")
    with pytest.raises(ValueError, match="finite"):
        RewardNormalizer({})("AVOS", "next_action", math.nan)


def test_state_round_trip_mid_warmup(stats_file):
    """A normalizer restored from JSON gives the same outputs, including finishing a warm-up it had begun."""
    a = RewardNormalizer(load_stats(stats_file), warmup_count=4)
    for x in (0.2, 0.9):
        a("NurViD", "tal", x)
    state = json.loads(json.dumps(a.state_dict()))
    b = RewardNormalizer({}, warmup_count=4)
    b.load_state_dict(state)
    rows = [("NurViD", "tal", 0.4), ("NurViD", "tal", 0.6), ("NurViD", "tal", 0.5), ("CoPESD", "stg", 0.65)]
    assert b.normalize_many(rows) == a.normalize_many(rows)
    assert b.stats == a.stats and b.stats[("NurViD", "tal")].source == "online"


def test_state_load_rejects_other_settings(stats_file):
    state = RewardNormalizer(load_stats(stats_file), k=2.0).state_dict()
    with pytest.raises(ValueError, match="settings"):
        RewardNormalizer({}, k=1.0).load_state_dict(state)


def test_stats_from_results_file(tmp_path):
    """Three NurViD TAL records scored with the training reward: exact 1.0, (6,12) vs (4,9.5) 0.4375, empty 0.
    Sorted [0, 0.4375, 1]: p50 0.4375, p25 0.21875, p75 0.71875 -> IQR 0.5. A video_summary record has no
    rule-based reward and is left out."""
    tal = {"qa_type": "tal", "struc_info": [{"spans": [{"start": 4.0, "end": 9.5}]}], "metadata": {"fps": "1.0"},
           "data_source": "NurViD", "gnd": ""}
    results = {
        "0": {**tal, "answer": "4.0-9.5 seconds"},
        "1": {**tal, "answer": "6.0-12.0 seconds"},
        "2": {**tal, "answer": ""},
        "3": {"qa_type": "video_summary_gpt", "answer": "a", "gnd": "b", "data_source": "NurViD", "metadata": {"fps": "1.0"}},
    }
    path, out = tmp_path / "sft_results.json", tmp_path / "stats.json"
    path.write_text(json.dumps(results))
    assert load_command("norm_stats").main([str(path), "--out", str(out)]) == 0
    s = load_stats(out)[("NurViD", "tal")]
    assert (s.p50, s.iqr, s.n) == pytest.approx((0.4375, 0.5, 3))


def test_compute_stats_canonicalises_names():
    stats = compute_stats([("Cholec80_CVS", "cvs_assessment", 1.0), ("cholec80-cvs", "cvs_assessment", 0.0)])
    assert list(stats) == [("Cholec80-CVS", "cvs_assessment")] and stats[("Cholec80-CVS", "cvs_assessment")].n == 2
