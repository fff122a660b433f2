"""Step metrics: per-(dataset, task) means, missing rewards, the JSONL log and its truncation on resume."""
import json

from medgrpo_ray.tracking.metrics import MetricsLogger, console_line, reward_metrics


def test_reward_metrics_by_dataset_and_task():
    """AVOS/tal raw 1.0 and 0.0 -> 0.5; EgoSurgery/tal raw 0.25; one sample without reward (None): 1/4 missing.
    task tal over both datasets: (1 + 0 + 0.25) / 3 = 0.41666..."""
    m = reward_metrics([("AVOS", "tal", 1.0, 0.9), ("AVOS", "tal", 0.0, 0.1), ("EgoSurgery", "tal", 0.25, 0.5),
                        ("EgoSurgery", "tal", None, None)])
    assert m["reward/AVOS/tal/raw"] == 0.5 and m["reward/AVOS/tal/norm"] == 0.5
    assert m["reward/EgoSurgery/tal/raw"] == 0.25
    assert abs(m["reward/task/tal/raw"] - 1.25 / 3) < 1e-12
    assert m["reward/no_reward_frac"] == 0.25
    line = console_line(2, 5, m)
    assert "AVOS/tal=0.500" in line and "EgoSurgery/tal=0.250" in line and line.startswith("step 2/5")


def test_jsonl_log_and_truncate(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=True)
    for step in (1, 2, 3):
        log.log(step, {"a": float(step), "nan_is_dropped": float("nan")})
    log.truncate_after(2)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "a": 1.0}, {"step": 2, "a": 2.0}]
    log.close()
    assert any((tmp_path / "tensorboard").iterdir())


def test_rollout_log_feeds_norm_stats(tmp_path):
    """rollouts.jsonl as the trainer writes it is the rollout-log input of launch/norm_stats.py.
    AVOS/tal raw rewards 0.2, 0.4, 0.6, 0.8 (plus one with no reward, left out): p50 = 0.5,
    IQR = q75 - q25 = 0.65 - 0.35 = 0.3 (linear interpolation)."""
    import subprocess
    import sys
    from pathlib import Path

    log = MetricsLogger(tmp_path, tensorboard=False)
    rows = [{"group": 0, "dataset": "AVOS", "task": "tal", "raw_reward": v, "reason": "ok", "completion": "1-2 s"}
            for v in (0.2, 0.4, 0.6, 0.8)]
    rows.append({"group": 0, "dataset": "AVOS", "task": "tal", "raw_reward": None, "reason": "needs judge", "completion": ""})
    log.log_rollouts(1, rows[:2])
    log.log_rollouts(2, rows[2:])
    log.log_rollouts(3, [{"group": 9, "dataset": "AVOS", "task": "tal", "raw_reward": 0.0, "reason": "ok", "completion": ""}])
    log.truncate_after(2)  # step 3 was logged by a run that died after its step-2 checkpoint
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "launch/norm_stats.py"), str(tmp_path / "rollouts.jsonl"),
                          "--out", str(tmp_path / "stats.json")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())["stats"]["AVOS"]["tal"]
    assert stats["n"] == 4 and abs(stats["p50"] - 0.5) < 1e-12 and abs(stats["iqr"] - 0.3) < 1e-12
