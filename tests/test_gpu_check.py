"""benchmarks/gpu_check.py, the prepared GPU check, on CPU: its smoke mode runs every part's code path at the tiny
shape (the colocated hand-over between two CPU processes through shared memory), prints a skip line for each CUDA
part, writes a JSON in which every part is measured or skipped with a
reason, and imports no engine (Ray, vLLM, DeepSpeed, OpenAI); the kit's "3b" size is Qwen2.5-VL-3B's shape."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
CUDA_PARTS = ("matmul_peak", "build_model", "learner_step", "completion_only_logits", "hf_rollout",
              "colocated_handover")
PARTS = CUDA_PARTS


def _gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--cpu-smoke", "--out", str(out), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_cpu_smoke_measures_every_part_and_skips_the_cuda_ones(tmp_path):
    proc, res = _run(tmp_path)
    assert res["mode"] == "cpu_smoke" and res["engines_imported"] == []
    built = res["parts"]["build_model"]
    for name in CUDA_PARTS:
        assert f"skip: {name}: no CUDA device" in proc.stdout
        assert res["cuda_parts"][name] == {"status": "skipped", "reason": "no CUDA device"}
    assert set(res["parts"]) == set(PARTS)
    for name, part in res["parts"].items():
        assert part["status"] == "measured", (name, part)
    parts = res["parts"]
    hand = parts["colocated_handover"]
    assert hand["exact"] and hand["buckets"] >= 2 and hand["bytes_per_s"] > 0
    assert "shared-memory" in hand["mechanism"]
    assert hand["bytes_per_version"] == built["params"] * 4  # every fp32 parameter, none frozen in the check
    assert built["vocab_size"] == res["shape"]["vocab"] > built["tokenizer_tokens"] and built["video"]["video_tokens"] > 0
    ls = parts["learner_step"]
    assert ls["tokens_per_s"] > 0 and ls["reps"] == 1 and "6 x" in ls["flops_formula"]
    logits = parts["completion_only_logits"]
    assert logits["max_abs_logprob_diff"] < 1e-5  # fp32 on CPU: the same log-probs either way
    assert {"all_positions", "completion_only"} <= set(logits)
    roll = parts["hf_rollout"]
    assert roll["generated_tokens"] > 0 and roll["new_tokens_per_s"] > 0


def test_the_time_guard_skips_parts_with_a_reason(tmp_path):
    proc, res = _run(tmp_path, "--time-limit-s", "0")
    for name in CUDA_PARTS:
        assert res["parts"][name]["status"] == "skipped"
        assert "time guard" in res["parts"][name]["reason"] or "did not run" in res["parts"][name]["reason"]
    assert "skip: build_model:" in proc.stdout


def test_synthetic_frames_stand_in_for_a_decoded_video(tmp_path):
    clip, source = _gpu_check_module().make_clip(4, 56, 84, tmp_path, synthetic=True)
    assert clip.frames.shape == (4, 56, 84, 3) and clip.frames.dtype.name == "uint8" and clip.fps == 8.0
    assert source.startswith("synthetic")


def test_the_kit_3b_size_is_qwen2_5_vl_3b():
    """Built on the meta device (no memory): the released checkpoint's parameter count (planning/models.py)."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForImageTextToText

    from medgrpo_ray.models.tiny_vlm import kit_parts
    from medgrpo_ray.planning.models import KNOWN

    cfg, _, _ = kit_parts("qwen2_5_vl", "3b", vocab_size=151936)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(cfg, dtype=torch.bfloat16)
    shape = KNOWN["qwen2.5-vl-3b"]
    assert sum(p.numel() for p in model.parameters()) == shape.params
    assert sum(p.numel() for p in model.model.visual.parameters()) == shape.vision_params
    assert cfg.vision_config.fullatt_block_indexes == [7, 15, 23, 31] and cfg.vision_config.window_size == 112
