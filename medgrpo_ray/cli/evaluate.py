"""Evaluate model outputs exactly as the MedVidBench leaderboard does; print Markdown, write JSON.

    launch/evaluate.py (or medgrpo-eval) results.json [--out eval.json]
    launch/evaluate.py submission.json --gt ground_truth.json      # leaderboard submission format
    launch/evaluate.py results.json --embedder /models/all-MiniLM-L6-v2 --judge-config PRESET.yaml [judge.KEY=VALUE ...]
    launch/evaluate.py results.json --ci                 # each number with its bootstrap 95 % interval and n

`results.json` is the published merged format (dict keyed "0".."N-1" with qa_type, answer, gnd, struc_info,
metadata, data_source); a submission is a list of {id, qa_type, prediction} matched to the GT file by list
position. Without --judge-config the caption columns are "not computed"; without --embedder NAP answers that
are not an exact class are counted wrong (the report says how many).
"""
from __future__ import annotations

import sys
from pathlib import Path

from medgrpo_ray.cli.common import SETTINGS_HELP, parser_for
from medgrpo_ray.cli.scorers import add_bootstrap_args, add_scorer_args, scorers_from_args


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(None, __doc__, config=False, overrides=False,
                        epilog="exit status: 0 evaluated, 2 unreadable input.\n\njudge " + SETTINGS_HELP.replace(
                            "--config PRESET.yaml", "--judge-config PRESET.yaml"))
    parser.add_argument("results", help="merged results JSON, or a leaderboard submission JSON (then --gt)")
    parser.add_argument("--gt", help="GT records (merged format or a list) for a submission file")
    parser.add_argument("--out", help="JSON output path (default: <results>.eval.json)")
    parser.add_argument("--ci", action="store_true", help="bootstrap interval and n for each number (docs/evaluation.md)")
    add_bootstrap_args(parser)
    add_scorer_args(parser)
    args = parser.parse_intermixed_args(argv)
    from medgrpo_ray.evaluation import evaluate, to_markdown
    from medgrpo_ray.evaluation.evaluator import with_intervals
    from medgrpo_ray.evaluation.inputs import load_results
    from medgrpo_ray.io.atomic import atomic_write_json

    try:
        items, warnings = load_results(args.results, args.gt)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = evaluate(dict(items), **scorers_from_args(args))
    if args.ci:
        report = with_intervals(report, args.resamples, args.level, args.seed)

    out = Path(args.out) if args.out else Path(args.results).with_suffix(".eval.json")
    payload = {**report.to_json(), "input": str(args.results), "input_warnings": warnings}
    atomic_write_json(out, payload, indent=2)
    print(to_markdown(report), end="")
    for w in warnings:
        print(f"- {w}")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
