"""Every entry point answers `--help` (the first thing a newcomer types): the launch/ scripts, the installed console
scripts, the `python -m` commands and the benchmarks exit 0 and print a usage line and how settings are given; a bad override
is a usage error (exit 2) naming the key, not a traceback."""
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = sorted(p.name for p in (ROOT / "launch").glob("*.py"))
CONSOLE_SCRIPTS = {
    "medgrpo-train": "train", "medgrpo-sft": "sft", "medgrpo-infer": "infer", "medgrpo-eval": "evaluate",
    "medgrpo-compare": "compare", "medgrpo-curate": "curate",
    "medgrpo-norm-stats": "norm_stats", "medgrpo-check-data": "check_data", "medgrpo-pipeline": "pipeline",
    "medgrpo-ablate": "ablate", "medgrpo-smoke": "smoke", "medgrpo-config": "config",
}
MODULES = ["medgrpo_ray.config", "medgrpo_ray.cli.smoke", "medgrpo_ray.data.convert", "medgrpo_ray.data.synthetic"]
BENCHMARKS = sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py")) + ["gpu_check.py"]
TAKE_A_CONFIG = {"train.py", "sft.py", "infer.py", "check_data.py", "medgrpo-train", "medgrpo-sft", "medgrpo-infer",
                 "medgrpo-check-data", "medgrpo-smoke", "medgrpo_ray.cli.smoke"}


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)


def _script(name: str) -> str:
    path = Path(sys.executable).parent / name
    assert path.is_file(), f"{path}: console script missing; reinstall the project (bash launch/install_cpu.sh)"
    return str(path)


def test_the_console_scripts_are_the_ones_setup_py_declares():
    declared = dict(re.findall(r'"(medgrpo-[\w-]+)=medgrpo_ray\.([\w.]+):main"', (ROOT / "setup.py").read_text()))
    assert {name: target.rsplit(".", 1)[-1] for name, target in declared.items()} == {
        name: "__main__" if module == "config" else module for name, module in CONSOLE_SCRIPTS.items()}
    assert len(LAUNCH) >= 8 and all("medgrpo_ray.cli." in (ROOT / "launch" / f).read_text() for f in LAUNCH)


def test_every_entry_point_answers_help():
    commands = {f: [sys.executable, str(ROOT / "launch" / f), "--help"] for f in LAUNCH}
    commands.update({name: [_script(name), "--help"] for name in CONSOLE_SCRIPTS})
    commands.update({m: [sys.executable, "-m", m, "--help"] for m in MODULES})
    commands.update({b: [sys.executable, str(ROOT / "benchmarks" / b), "--help"] for b in BENCHMARKS})
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(commands, pool.map(_run, commands.values())))
    for name, out in results.items():
        assert out.returncode == 0, f"{name} --help: exit {out.returncode}\n{out.stdout[-1500:]}{out.stderr[-1500:]}"
        assert out.stdout.startswith("usage: "), f"{name} --help printed no usage line:\n{out.stdout[:500]}"
        assert "-h, --help" in out.stdout
        if name in TAKE_A_CONFIG:
            usage = " ".join(out.stdout.split("\n\n", 1)[0].split())  # the usage block, unwrapped
            assert "[--config PRESET.yaml]" in usage and "[KEY=VALUE ...]" in usage, f"{name}: {usage}"
            assert "python -m medgrpo_ray.config" in out.stdout, f"{name}: --help must say where settings are listed"


@pytest.mark.parametrize("cmd", [["launch/train.py"], ["launch/sft.py"], ["launch/infer.py", "tiny:qwen2_5_vl",
                                                                           "--records", "x.json", "--out", "o"]])
def test_a_bad_override_is_a_usage_error_naming_the_key(cmd):
    out = _run([sys.executable, *cmd, "--config", "configs/quickstart_cpu.yaml", "algorithm.grup_size=4"])
    assert out.returncode == 2, out.stderr[-2000:]
    assert "config error: unknown config key 'algorithm.grup_size'" in out.stderr
    assert "Traceback" not in out.stderr
