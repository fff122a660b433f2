"""The normalization ablation's machinery end to end at a tiny size: launch/ablate_normalization.py as a user runs
it (real subprocesses, a local Ray cluster per stage, SFT, statistics, two GRPO arms, vLLM inference), then a
rerun that skips every finished stage. It checks the arms ran as configured and the curves and table were
written, not what they show (docs/normalization_ablation.md has the result of the documented default)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_two_arms_run_from_one_sft_and_write_curves_and_table(tmp_path):
    out = tmp_path / "abl"
    cmd = [sys.executable, str(ROOT / "launch" / "ablate_normalization.py"), "--out", str(out),
           "--arms", "norm", "raw_nostd", "--seeds", "0", "--steps", "2", "--train", "18", "--test", "9",
           "--sft", "sft.max_steps=2", "checkpoint.every_n_steps=0",
           "--grpo", "algorithm.prompts_per_step=3", "algorithm.group_size=4", "rollout.max_new_tokens=24",
           "--infer", "rollout.max_new_tokens=24"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["difficulty"]["CoPESD"]["d"] == 0.0 and manifest["difficulty"]["EgoSurgery"]["d"] == 1.0
    assert set(manifest["splits"]["train"]["by_task"]) == {"stg", "tal", "cvs_assessment"}
    assert json.loads((out / "norm_stats.json").read_text())["stats"]  # from the SFT model's answers
    for arm, norm_on, std_on in (("norm", True, True), ("raw_nostd", False, False)):
        run = out / "arms" / f"{arm}_s0"
        cfg = (run / "config.yaml").read_text()
        assert f"adv_std_normalize: {str(std_on).lower()}" in cfg
        assert f"stats_path: {out / 'norm_stats.json'}" in cfg and "/sft/checkpoints/step_000002/hf" in cfg
        rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2]
        assert any(k.startswith("signal/") and k.endswith("/adv_share") for k in rows[0])
        if not norm_on:  # raw rewards pass through unchanged
            pairs = {k[:-len("/raw")] for k in rows[0] if k.startswith("reward/") and k.endswith("/raw")
                     and k.count("/") == 3 and not k.startswith("reward/task/")}
            assert all(rows[0][p + "/norm"] == pytest.approx(rows[0][p + "/raw"]) for p in pairs)
        assert json.loads((out / "infer" / f"{arm}_s0" / "eval.json").read_text())["n_records"] == 9
    summary = json.loads((out / "ablation.json").read_text())
    assert set(summary["arms"]) == {"norm", "raw_nostd"} and summary["rows"]
    for row in summary["rows"]:
        assert set(row["arms"]) == {"norm", "raw_nostd"}
        assert all(set(v["per_seed"]) == {"0"} for v in row["arms"].values())
    md = (out / "ablation.md").read_text()
    assert "| dataset | metric | SFT | norm (change) | raw_nostd (change) |" in md
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"

    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    # every stage skipped: data, sft, 2 inferences, stats, 2 x (grpo, infer)
    assert len(re.findall(r"\] \w+: done earlier \(.*\), skipped", again.stdout)) == 9
