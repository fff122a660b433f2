"""Check a records file before training on it: validate every record, decode every video with the training budget.

The command lives in medgrpo_ray/cli/check_data.py (also installed as a console script; see setup.py); `--help` lists
its options and how settings are overridden."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from medgrpo_ray.cli.check_data import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
