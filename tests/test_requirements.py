"""Settings against the machine (config/machine.py): each setting that needs a package or a CUDA device is named
with its fix, `rollout.enforce_eager` resolves auto/true/false (booleans of older configs too), and a run with
flash_attention_2 but no flash-attn stops before Ray, the run directory or any model."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medgrpo_ray.config import load_config
from medgrpo_ray.config.loader import from_yaml_text
from medgrpo_ray.config.machine import needs_cuda, requirement_problems, resolve_enforce_eager

ROOT = Path(__file__).resolve().parents[1]


def cfg_with(*overrides: str):
    return load_config(None, list(overrides))


def problems(cfg, versions=None, modules=("vllm",), cuda=None):
    versions = versions or {}
    return requirement_problems(cfg, version_of=versions.get, has_module=lambda m: m in modules, cuda=cuda)


def test_the_defaults_need_nothing_more():
    cfg = cfg_with()
    assert cfg.model.attn_implementation == "sdpa" and cfg.rollout.enforce_eager == "auto"
    assert not needs_cuda(cfg)
    assert problems(cfg, cuda=False) == []


def test_flash_attention_without_the_package_names_the_setting_and_both_fixes():
    cfg = cfg_with("model.attn_implementation=flash_attention_2", "model.dtype=bfloat16", "learner.num_gpus_per_rank=1")
    [msg] = problems(cfg, cuda=True)
    assert msg.startswith("model.attn_implementation=flash_attention_2 needs the flash-attn package")
    assert ".[gpu]" in msg and "model.attn_implementation=sdpa" in msg
    assert problems(cfg, versions={"flash-attn": "2.8.3.post2"}, cuda=True) == []
    [old] = problems(cfg, versions={"flash-attn": "2.3.2"}, cuda=True)
    assert "older than 2.3.3" in old


def test_flash_attention_needs_a_gpu_and_half_precision():
    on_cpu = problems(cfg_with("model.attn_implementation=flash_attention_2"), versions={"flash-attn": "2.8.3"})
    assert any("learner.num_gpus_per_rank=0" in p for p in on_cpu)
    assert any("model.dtype=float32" in p for p in on_cpu)
    no_cuda = problems(cfg_with("model.attn_implementation=flash_attention_2", "model.dtype=bfloat16",
                                "learner.num_gpus_per_rank=1"), versions={"flash-attn": "2.8.3"}, cuda=False)
    assert any(p.startswith("model.attn_implementation=flash_attention_2 needs a CUDA GPU") for p in no_cuda)


@pytest.mark.parametrize("setting", ["rollout.num_gpus_per_worker", "learner.num_gpus_per_rank"])
def test_gpus_without_cuda_name_the_setting(setting):
    cfg = cfg_with(f"{setting}=1")
    assert needs_cuda(cfg)
    [msg] = problems(cfg, cuda=False)
    assert msg.startswith(f"{setting}=1 asks for GPUs") and f"{setting}=0" in msg and "RAY_ADDRESS" in msg
    assert problems(cfg, cuda=True) == [] and problems(cfg, cuda=None) == []  # None: a remote cluster's to say


def test_missing_engines_and_loggers_are_named():
    assert any(p.startswith("rollout.backend=vllm needs vLLM") for p in problems(cfg_with(), modules=()))
    assert problems(cfg_with("rollout.backend=hf"), modules=()) == []
    assert any(p.startswith("logging.wandb=true") for p in problems(cfg_with("logging.wandb=true")))


@pytest.mark.parametrize("setting, cuda, eager", [
    ("auto", False, True), ("auto", True, False), ("true", True, True), ("false", False, False),
    (True, True, True), (False, True, False), ("True", False, True)])
def test_enforce_eager_resolves(setting, cuda, eager):
    assert resolve_enforce_eager(setting, cuda) is eager


def test_enforce_eager_accepts_old_booleans_and_rejects_others(tmp_path):
    preset = tmp_path / "old.yaml"
    preset.write_text("rollout:\n  enforce_eager: true\n")
    assert load_config(preset, []).rollout.enforce_eager == "true"
    assert load_config(None, ["rollout.enforce_eager=false"]).rollout.enforce_eager == "false"
    assert from_yaml_text("rollout:\n  enforce_eager: false\n").rollout.enforce_eager == "false"
    with pytest.raises(ValueError, match=r"rollout\.enforce_eager"):
        load_config(None, ["rollout.enforce_eager=sometimes"])
    with pytest.raises(ValueError, match="rollout.enforce_eager"):
        resolve_enforce_eager("sometimes", True)


@pytest.mark.parametrize("preset", ["qwen2_5_vl_7b.yaml", "qwen3_vl_4b.yaml"])
def test_gpu_presets_start_without_extra_packages(preset):
    cfg = load_config(ROOT / "configs" / preset, [])
    assert cfg.model.attn_implementation == "sdpa" and cfg.rollout.enforce_eager == "auto"
    assert problems(cfg, cuda=True) == []


def test_flash_attention_without_flash_attn_stops_the_run_before_ray_or_a_model(tmp_path):
    if subprocess.run([sys.executable, "-c", "import flash_attn"], capture_output=True).returncode == 0:
        pytest.skip("flash-attn is installed here")
    code = (
        "import json, sys\n"
        "from medgrpo_ray.cli.train import main\n"
        f"rc = main(['--config', 'configs/quickstart_cpu.yaml', 'model.attn_implementation=flash_attention_2', "
        f"'logging.output_dir={tmp_path / 'runs'}'])\n"
        "print(json.dumps({'rc': rc, 'loaded': [m for m in ('ray', 'transformers', 'vllm', 'deepspeed') "
        "if m in sys.modules]}))\n"
    )
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "RAY_ADDRESS": ""})
    elapsed = time.monotonic() - start
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"rc": 2, "loaded": []}, out.stderr
    assert "config error: model.attn_implementation=flash_attention_2 needs the flash-attn package" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists()  # no run directory, so no checkpoint and no model
    assert elapsed < 30, f"the check took {elapsed:.1f} s"
