"""The optional scorers of the evaluation commands (launch/evaluate.py, launch/compare.py): the sentence embedder
for the NAP fallback, the caption judge, the NurViD procedure table, and the bootstrap settings."""
from __future__ import annotations

import argparse
import json


def add_scorer_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embedder", help="sentence-embedding model path for the NAP fallback (all-MiniLM-L6-v2)")
    parser.add_argument("--judge-config", help="experiment config preset whose judge: section is used (computes "
                        "dvc_llm, vs_llm, rc_llm)")
    parser.add_argument("overrides", nargs="*", help="dotlist overrides for the judge config, e.g. "
                        "judge.base_url=http://127.0.0.1:8000/v1")
    parser.add_argument("--nurvid-table", help="JSON {procedure: [actions]} replacing the built-in NurViD table")


def add_bootstrap_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--level", type=float, default=0.95, help="interval coverage (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0; same seed, same intervals)")


def scorers_from_args(args: argparse.Namespace) -> dict:
    """evaluate()'s judge / embedder / nurvid_table keyword arguments from the parsed options."""
    return {"embedder": load_embedder(args.embedder) if args.embedder else None,
            "judge": load_judge(args.judge_config, args.overrides) if args.judge_config else None,
            "nurvid_table": load_nurvid_table(args.nurvid_table) if args.nurvid_table else None}


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
