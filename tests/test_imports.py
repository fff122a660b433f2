"""The layout's rules hold (docs/architecture.md, "Tiers"; checked by tests/layer_rules.py) and the core stays light:
importing every module of tiers 0-2 loads none of ray, vllm, deepspeed, openai."""
import shutil
import subprocess
import sys
from pathlib import Path

from layer_rules import TIERS, module_name, package_of, python_files, violations

ROOT = Path(__file__).resolve().parents[1]


def test_the_tree_follows_the_layer_rules():
    problems = violations(ROOT)
    assert problems == [], "layer rules broken:\n" + "\n".join(problems)


def _plant(path: Path, text: str, *, top: bool = False) -> None:
    body = path.read_text() if path.exists() else ""
    path.write_text(text + "\n" + body if top else body + "\n\n" + text + "\n")


def test_the_checker_fails_on_planted_forbidden_imports(tmp_path):
    for top in ("medgrpo_ray", "actors", "launch"):
        shutil.copytree(ROOT / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    assert violations(tmp_path) == []  # the copy is clean before anything is planted
    pkg = tmp_path / "medgrpo_ray"
    # an upward import hidden in a function (tier 1 grpo -> tier 4 driver)
    _plant(pkg / "grpo" / "step_data.py", "def _planted():\n    from medgrpo_ray.driver.cluster import split\n")
    # ray in the pure core, and an engine outside its home and at module level
    _plant(pkg / "rewards" / "tal.py", "def _planted():\n    import ray\n")
    _plant(pkg / "judge" / "prompt.py", "import openai  # planted", top=True)
    # a cycle inside tier 1: evaluation already imports rewards
    _plant(pkg / "rewards" / "stg.py", "def _planted():\n    from medgrpo_ray.evaluation import evaluate\n")
    # a loose module, tier 0 pulling in numpy, and a launch script that skips the cli
    (pkg / "helpers.py").write_text("X = 1\n")
    _plant(pkg / "medvidbench" / "tasks.py", "def _planted():\n    import numpy\n")
    _plant(tmp_path / "launch" / "train.py", "from medgrpo_ray.driver.train_loop import train  # planted", top=True)

    problems = "\n".join(violations(tmp_path))
    expected = [
        "medgrpo_ray/grpo/step_data.py:", "grpo (tier 1) imports medgrpo_ray.driver.cluster.split (driver, tier 4)",
        "medgrpo_ray/rewards/tal.py:", "imports ray in tier 1 (rewards)",
        "medgrpo_ray/judge/prompt.py:1: imports openai outside medgrpo_ray/llm/",
        "medgrpo_ray/judge/prompt.py:1: imports openai at module level",
        "import cycle between packages of one tier: evaluation -> rewards -> evaluation",
        "medgrpo_ray/helpers.py: a loose module",
        "tier 0 (medvidbench) imports numpy",
        "launch/train.py:1: imports medgrpo_ray.driver.train_loop.train; a launch script only runs a command",
    ]
    missing = [e for e in expected if e not in problems]
    assert not missing, f"not reported: {missing}\nreported:\n{problems}"


def test_every_package_has_a_tier_and_the_tiers_match_the_docs():
    packages = {package_of(module_name(ROOT, p)) for p in python_files(ROOT)} - {""}
    assert packages == set(TIERS)
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for name, tier in TIERS.items():
        assert f"`{name}/`" in doc, f"docs/architecture.md does not place {name}/ (tier {tier})"


def test_importing_tiers_0_to_2_loads_no_engine():
    modules = sorted(module_name(ROOT, p) for p in python_files(ROOT)
                     if TIERS.get(package_of(module_name(ROOT, p)) or "", 0) <= 2 and p.parts[-2] != "actors")
    assert len(modules) > 60 and "medgrpo_ray.rollout.vllm_engine" in modules and "medgrpo_ray.llm.chat" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(','.join(m for m in ('ray', 'vllm', 'deepspeed', 'openai') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "", f"importing tiers 0-2 pulled in: {out.stdout.strip()}"
