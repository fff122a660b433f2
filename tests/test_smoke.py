"""README's smoke demo end to end, as a user runs it: fresh cache, no hub access."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_demo_runs_offline(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-m", "medgrpo_ray.cli.smoke", "--config", str(ROOT / "configs/quickstart_cpu.yaml"),
         f"model.cache_dir={tmp_path}", "algorithm.group_size=3"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "smoke demo OK: 3 samples" in out.stdout
    assert (tmp_path / "tiny_models").is_dir() and (tmp_path / "demo" / "demo.mp4").stat().st_size > 0
