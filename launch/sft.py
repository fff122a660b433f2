"""Supervised fine-tuning: launch/sft.py (or medgrpo-sft) --config configs/sft_cpu.yaml [KEY=VALUE ...] [resume=auto]

The command lives in medgrpo_ray/cli/sft.py (also installed as a console script; see setup.py); `--help` lists
its options and how settings are overridden."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from medgrpo_ray.cli.sft import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
