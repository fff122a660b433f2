"""Evaluate model outputs exactly as the MedVidBench leaderboard does; print Markdown, write JSON.

    launch/evaluate.py (or medgrpo-eval) results.json [--out eval.json]
    launch/evaluate.py submission.json --gt ground_truth.json      # leaderboard submission format
    launch/evaluate.py results.json --embedder /models/all-MiniLM-L6-v2 --judge-config PRESET.yaml [judge.KEY=VALUE ...]

`results.json` is the published merged format (dict keyed "0".."N-1" with qa_type, answer, gnd, struc_info,
metadata, data_source); a submission is a list of {id, qa_type, prediction} matched to the GT file by list
position. Without --judge-config the caption columns are "not computed"; without --embedder NAP answers that
are not an exact class are counted wrong (the report says how many).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from medgrpo_ray.cli.common import SETTINGS_HELP, parser_for


def load_embedder(path: str):
    """medgrpo_ray.models.embedding.SentenceEmbedder(path), imported only when asked for."""
    try:
        from medgrpo_ray.models.embedding import SentenceEmbedder
    except ImportError as err:
        raise SystemExit(
            f"--embedder needs medgrpo_ray.models.embedding.SentenceEmbedder and sentence-transformers ({err}); "
            "install them or run without --embedder (non-exact NAP answers are then counted wrong)"
        ) from None
    try:
        return SentenceEmbedder(path)
    except (OSError, ValueError) as err:
        raise SystemExit(f"--embedder {path!r}: {err}") from None


def load_judge(config_path: str, overrides: list[str]):
    """The caption judge from the `judge:` section of an experiment config preset (plus dotlist overrides)."""
    from medgrpo_ray.config import load_config
    from medgrpo_ray.judge.client import build_judge

    try:
        cfg = load_config(config_path, overrides)
    except ValueError as err:
        raise SystemExit(f"--judge-config: {err}") from None
    return build_judge(cfg.judge)


def load_nurvid_table(path: str) -> dict[str, tuple[str, ...]]:
    """A JSON object {procedure name: [action, ...]} in the order procedures should be tried."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise SystemExit(f"{path}: expected a JSON object {{procedure: [action, ...]}}")
    return {str(k): tuple(str(a) for a in v) for k, v in data.items()}


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(None, __doc__, config=False, overrides=False,
                        epilog="exit status: 0 evaluated, 2 unreadable input.\n\njudge " + SETTINGS_HELP.replace(
                            "--config PRESET.yaml", "--judge-config PRESET.yaml"))
    parser.add_argument("results", help="merged results JSON, or a leaderboard submission JSON (then --gt)")
    parser.add_argument("--gt", help="GT records (merged format or a list) for a submission file")
    parser.add_argument("--out", help="JSON output path (default: <results>.eval.json)")
    parser.add_argument("--embedder", help="sentence-embedding model path for the NAP fallback (all-MiniLM-L6-v2)")
    parser.add_argument("--judge-config", help="experiment config preset whose judge: section is used (computes dvc_llm, vs_llm, rc_llm)")
    parser.add_argument("overrides", nargs="*", help="dotlist overrides for the judge config, e.g. judge.base_url=http://127.0.0.1:8000/v1")
    parser.add_argument("--nurvid-table", help="JSON {procedure: [actions]} replacing the built-in NurViD table")
    args = parser.parse_intermixed_args(argv)
    from medgrpo_ray.evaluation import evaluate, to_markdown
    from medgrpo_ray.evaluation.inputs import load_results
    from medgrpo_ray.io.atomic import atomic_write_json

    try:
        items, warnings = load_results(args.results, args.gt)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    embedder = load_embedder(args.embedder) if args.embedder else None
    judge = load_judge(args.judge_config, args.overrides) if args.judge_config else None
    table = load_nurvid_table(args.nurvid_table) if args.nurvid_table else None
    report = evaluate(dict(items), judge=judge, embedder=embedder, nurvid_table=table)

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
