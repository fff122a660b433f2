"""Compute the per-(dataset, task) normalization statistics file (p50, IQR) from a baseline's raw rewards.

    launch/norm_stats.py (or medgrpo-norm-stats) sft_results.json --out stats/norm_stats.json   # merged results
    launch/norm_stats.py rollouts.jsonl --out stats/norm_stats.json                              # rollout log

A results file (published merged format) is scored with the training rewards (compute_reward on each
record's `answer`; records with no reward, e.g. caption tasks before the judge, are left out). A rollout log
has one JSON object per line with `dataset`, `task` and `raw_reward` (null lines are left out). Use the same
reward settings (--format-weight) as the training run, or the statistics will not match its raw rewards.
"""
from __future__ import annotations

import json
import sys
from typing import Iterable

from medgrpo_ray.cli.common import parser_for
from medgrpo_ray.evaluation.inputs import load_results
from medgrpo_ray.evaluation.types import Item
from medgrpo_ray.rewards.normalization import compute_stats, save_stats
from medgrpo_ray.rewards import RewardSettings, compute_reward
from medgrpo_ray.rewards.fields import record_dataset, record_task


def rows_from_results(items: list[Item], settings: RewardSettings) -> tuple[list[tuple[str, str, float]], int]:
    """(dataset, task, raw reward) for every record that gets a reward, and the number left out."""
    rows, left_out = [], 0
    for rid, rec in items:
        result = compute_reward(rec, str(rec.get("answer") or ""), settings, rid)
        if result.value is None:
            left_out += 1
            continue
        rows.append((record_dataset(rec), record_task(rec, rid), result.value))
    return rows, left_out


def rows_from_rollouts(lines: Iterable[str], source: str = "rollout log") -> tuple[list[tuple[str, str, float]], int]:
    """(dataset, task, raw_reward) from JSONL lines; lines with a null raw_reward are left out."""
    rows, left_out = [], 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            raw = entry["raw_reward"]
            dataset, task = entry["dataset"], entry["task"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{source} line {n}: {err!r}; expected {{\"dataset\", \"task\", \"raw_reward\"}}") from None
        if raw is None:
            left_out += 1
            continue
        rows.append((str(dataset), str(task), float(raw)))
    return rows, left_out


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(None, __doc__, config=False, overrides=False,
                        epilog="exit status: 0 written, 2 unreadable input or no rewards in it")
    parser.add_argument("input", help="merged results JSON or rollout log JSONL")
    parser.add_argument("--out", required=True, help="statistics JSON to write")
    parser.add_argument("--format", choices=("auto", "results", "rollouts"), default="auto", help="input kind (auto: .jsonl = rollouts)")
    parser.add_argument("--format-weight", type=float, default=RewardSettings().format_weight, help="RewardSettings.format_weight used to score a results file")
    args = parser.parse_args(argv)

    kind = args.format if args.format != "auto" else ("rollouts" if args.input.endswith(".jsonl") else "results")
    try:
        if kind == "rollouts":
            with open(args.input, encoding="utf-8") as f:
                rows, left_out = rows_from_rollouts(f, args.input)
        else:
            items, _ = load_results(args.input)
            rows, left_out = rows_from_results(items, RewardSettings(format_weight=args.format_weight))
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: {args.input} yielded no raw rewards ({left_out} left out)", file=sys.stderr)
        return 2
    stats = compute_stats(rows)
    save_stats(stats, args.out)
    print("| dataset | task | n | p50 | IQR |\n|---|---|---|---|---|")
    for (dataset, task), s in stats.items():
        print(f"| {dataset} | {task} | {s.n} | {s.p50:.4f} | {s.iqr:.4f} |")
    print(f"\n{len(rows)} rewards, {left_out} left out; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
