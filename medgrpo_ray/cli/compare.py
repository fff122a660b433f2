"""Compare two evaluations of the same records, paired: per leaderboard number (and per dataset) the change B - A,
its paired-bootstrap interval, and the share of resamples in which B is better.

    launch/compare.py (or medgrpo-compare) runs/sft/results.json runs/grpo/results.json --names SFT GRPO
    launch/compare.py a.json b.json --out cmp.json --resamples 2000 --seed 1
    launch/compare.py a_submission.json b_submission.json --gt ground_truth.json

A and B are merged results files (launch/infer.py's results.json) or leaderboard submissions with --gt. Records are
matched by key; a key holding different records in the two files is an error, and keys in one file only are
listed, not silently dropped. Rows whose interval excludes 0 are marked `*` (docs/evaluation.md: how to read it).
"""
from __future__ import annotations

import sys
from pathlib import Path

from medgrpo_ray.cli.common import SETTINGS_HELP, parser_for
from medgrpo_ray.cli.scorers import add_bootstrap_args, add_scorer_args, scorers_from_args


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(None, __doc__, config=False, overrides=False,
                        epilog="exit status: 0 compared, 2 unreadable input or not the same records.\n\njudge "
                        + SETTINGS_HELP.replace("--config PRESET.yaml", "--judge-config PRESET.yaml"))
    parser.add_argument("a", help="results of A (merged results JSON, or a submission with --gt)")
    parser.add_argument("b", help="results of B, the same records")
    parser.add_argument("--gt", help="GT records for submission files")
    parser.add_argument("--names", nargs=2, default=("A", "B"), metavar=("NAME_A", "NAME_B"), help="column names")
    parser.add_argument("--out", help="JSON output (default: <b>.compare.json)")
    parser.add_argument("--no-per-dataset", action="store_true", help="only the leaderboard numbers")
    add_bootstrap_args(parser)
    add_scorer_args(parser)
    args = parser.parse_intermixed_args(argv)
    from medgrpo_ray.evaluation.compare import compare_results
    from medgrpo_ray.evaluation.inputs import load_results
    from medgrpo_ray.io.atomic import atomic_write_json

    try:
        (items_a, warn_a), (items_b, warn_b) = load_results(args.a, args.gt), load_results(args.b, args.gt)
        payload, md = compare_results(items_a, items_b, tuple(args.names), args.resamples, args.level, args.seed,
                                      not args.no_per_dataset, **scorers_from_args(args))
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.b).with_suffix(".compare.json")
    atomic_write_json(out, {"a": str(args.a), "b": str(args.b), **payload, "input_warnings": warn_a + warn_b},
                      indent=1)
    print(md, end="")
    for w in warn_a + warn_b:
        print(f"- {w}")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
