"""Build MedVidBench-format training data from local copies of the source datasets (docs/curation.md).

    launch/curate.py (or medgrpo-curate) --config configs/curation/synthetic.yaml --out runs/curated
    launch/curate.py --config configs/curation/sources.yaml --out runs/curated --dry-run    # units, tokens, cost

Converts each configured source to one schema, builds the template tasks (TAG, STG, NAP, SA, CVS) with seeded
clips and versioned question templates, keeps only records this project's evaluator scores perfectly against
themselves; the caption tasks (DVC, VS, RC), when listed in `tasks`, go to the two configured `providers` and are
kept, regenerated once, dropped or sent to OUT/review.jsonl by the validation rule. Then it dedups, excludes the
test videos, splits by video and balances: OUT/large.parquet, OUT/standard.parquet, OUT/val.parquet,
OUT/manifest.json (written last; decisions and rejects counted). Rerun the same command to resume: units already
in OUT/units.jsonl are not rebuilt and no finished caption unit is sent again. API keys are read from the
variables the providers' `api_key_env` name, never from the command line. Settings: `python -m medgrpo_ray.config` does not list these; see
medgrpo_ray/config/curation.py (every field with its default and meaning).
"""
from __future__ import annotations

import json
import sys

from medgrpo_ray.cli.common import add_overrides, parser_for


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(None, __doc__, overrides=False, config=False,
                        epilog="exit status: 0 written (or planned with --dry-run), 2 usage or config error")
    parser.add_argument("--config", "-c", metavar="PRESET.yaml", help="curation preset (configs/curation/)")
    parser.add_argument("--out", required=True, help="output directory (also the resume log)")
    parser.add_argument("--dry-run", action="store_true", help="convert the sources and plan only: units per task, caption requests, tokens and cost per provider")
    add_overrides(parser)
    args = parser.parse_intermixed_args(argv)
    from medgrpo_ray.config.curation import load_curation_config
    from medgrpo_ray.workflows.curation import run_curation

    try:
        cfg = load_curation_config(args.config, args.overrides)
        result = run_curation(cfg, args.out, dry_run=args.dry_run)
    except (OSError, ValueError) as err:
        print(f"curation error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
