"""The quiet console: repeats shown once, known-harmless CPU-route warnings dropped, errors always shown, and the
step line says why nothing was trained instead of printing nan."""
from __future__ import annotations

import io
import logging

from medgrpo_ray.tracking.console import KnownHarmlessFilter, OnceFilter, engine_env
from medgrpo_ray.tracking.metrics import console_line


def _logger(*filters) -> tuple[logging.Logger, io.StringIO]:
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    for f in filters:
        h.addFilter(f)
    lg = logging.getLogger(f"test-console-{id(buf)}")
    lg.propagate = False
    lg.addHandler(h)
    lg.setLevel(logging.DEBUG)
    return lg, buf


def test_a_repeated_warning_is_shown_once_numbers_ignored_errors_always():
    once = OnceFilter()
    lg, buf = _logger(once)
    for i in range(1000):
        lg.warning("CPU backend doesn't allow to use `torch.set_num_threads` after the thread binding, skip it.")
        lg.info("Reloading and processing weights took %.2f seconds", 0.01 * i)
    lg.error("engine died")
    lg.error("engine died")
    lines = buf.getvalue().splitlines()
    assert lines.count("engine died") == 2
    assert len(lines) == 4 and once.dropped == 1998


def test_known_harmless_warnings_are_dropped_and_others_kept():
    lg, buf = _logger(KnownHarmlessFilter())
    lg.warning("RotaryEmbedding: Failed to load weights")
    lg.warning("libtcmalloc is not found in LD_PRELOAD. For best performance, ...")
    lg.warning("record X: video file missing.mp4 does not exist")
    lg.error("RotaryEmbedding: Failed to load weights")  # an error is never hidden
    assert buf.getvalue().splitlines() == ["record X: video file missing.mp4 does not exist",
                                           "RotaryEmbedding: Failed to load weights"]


def test_engine_env_hands_vllm_logging_to_the_process():
    env = engine_env("WARNING")
    assert env["VLLM_LOGGING_LEVEL"] == "WARNING" and env["VLLM_CONFIGURE_LOGGING"] == "0"
    assert engine_env("debug")["VLLM_LOGGING_LEVEL"] == "DEBUG"


def test_step_line_without_trained_samples_says_so():
    m = {"reward/raw_mean": 1.0, "reward/AVOS/next_action/raw": 1.0, "algorithm/samples_trained": 0,
         "algorithm/zero_variance_groups": 8, "timing_s/step": 0.2}
    line = console_line(55, 60, m)
    assert "nan" not in line and "no samples trained (8 zero-variance groups)" in line
    m2 = {"algorithm/samples_trained": 0, "rollout/failed_groups": 4, "timing_s/step": 1.0}
    line2 = console_line(3, 6, m2)
    assert "nan" not in line2 and "reward=none" in line2 and "4 failed groups" in line2 and "failed=4" in line2
    m3 = {"reward/raw_mean": 0.5, "algorithm/samples_trained": 64, "learner/loss": 0.01, "learner/kl": 0.0,
          "eval/nap_acc": 0.5, "eval/records": 16, "timing_s/step": 1.0}
    assert "loss=0.0100" in console_line(20, 60, m3) and "eval nap_acc=0.500" in console_line(20, 60, m3)
