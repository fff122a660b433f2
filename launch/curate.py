"""Build MedVidBench-format training data from local copies of the source datasets (docs/curation.md).

The command lives in medgrpo_ray/cli/curate.py (also installed as a console script; see setup.py); `--help` lists
its options and how settings are overridden."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from medgrpo_ray.cli.curate import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
