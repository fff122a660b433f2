"""The decode benchmark runs end to end at a tiny size and reports real behaviour (not timings)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("decord")
pytest.importorskip("av")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_decode.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_decode", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_decode_tiny(tmp_path):
    out = tmp_path / "decode.json"
    rc = _load_bench().main(["--seconds", "4", "--repeats", "1", "--group", "8", "--cache-dir", str(tmp_path / "clips"),
                             "--out", str(out)])
    assert rc == 0
    d = json.loads(out.read_text())
    for key in ("benchmark", "video", "group", "repeats", "budget", "baseline", "settings", "machine", "versions",
                "notes"):
        assert key in d, key
    assert d["video"]["width"] == 640 and d["video"]["height"] == 480 and d["video"]["src_fps"] == 25
    assert d["video"]["decord_frames"] == 4 * 25 and not d["video"]["reused_from_cache_dir"]
    assert d["baseline"]["frames_decoded"] == 100
    assert {"decode_fps", "wall_s_per_decode", "wall_s_per_prompt_G"} <= set(d["baseline"])
    assert d["machine"]["cpu_count"] and "decord" in d["versions"]

    rows = {(r["sample_fps"], r["cache"]): r for r in d["settings"]}
    assert set(rows) == {(f, c) for f in (0.5, 1.0, 2.0) for c in ("off", "on")}
    for (fps, cache), r in rows.items():
        for key in ("frames_delivered_per_s", "wall_s_per_prompt", "naive_frames_delivered_per_s",
                    "speedup_delivered_per_s_vs_naive", "speedup_wall_vs_naive_G", "speedup_wall_vs_naive_once"):
            assert r[key] > 0, key
        assert r["frames_per_request"] == int(4 * fps)  # 4 s at 0.5/1/2 fps: 2/4/8 frames, not capped, even
        assert r["used_fps"] == fps
        assert r["frames_delivered_per_prompt"] == 8 * r["frames_per_request"]
        assert r["hw"] == r["source_hw"] == [480, 640]  # factor 32 keeps 640x480
        assert r["pixels_equal_naive"]  # the seek-and-sample path returns the naive decode's pixels
        if cache == "on":  # G=8 samples share one ClipCache: one decode, seven hits
            assert (r["cache_misses"], r["cache_hits"]) == (1, 7)
        else:
            assert "cache_hits" not in r

