"""The core package stays light: heavy engines load only where they are used."""
import subprocess
import sys

CORE_MODULES = [
    "medgrpo_ray", "medgrpo_ray.config", "medgrpo_ray.medvidbench.tasks", "medgrpo_ray.data.video", "medgrpo_ray.data.prompts",
    "medgrpo_ray.models.loading", "medgrpo_ray.models.tiny_vlm", "medgrpo_ray.grpo.logprobs",
    "medgrpo_ray.rollout.vllm_engine", "medgrpo_ray.rewards", "medgrpo_ray.evaluation", "medgrpo_ray.rewards.normalization",
    "medgrpo_ray.judge.types", "medgrpo_ray.grpo.advantages", "medgrpo_ray.grpo.loss", "medgrpo_ray.data.sampler",
    "medgrpo_ray.checkpoint.local", "medgrpo_ray.driver.trainer", "medgrpo_ray.learner.policy", "medgrpo_ray.driver.cluster", "medgrpo_ray.rollout.core",
    "medgrpo_ray.data.clips", "medgrpo_ray.data.records_io",
]


def test_core_imports_no_heavy_engines():
    code = (
        "import importlib, sys\n"
        f"for m in {CORE_MODULES!r}: importlib.import_module(m)\n"
        "heavy = [m for m in ('vllm', 'deepspeed', 'openai') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing the core pulled in: {out.stdout.strip()}"
