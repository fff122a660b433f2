"""Greedy inference over a split, resumable: launch/infer.py (or medgrpo-infer) MODEL --records TEST.json --out DIR
    [--config PRESET.yaml] [--chunk-size 8] [--in-flight 2] [--video-root DIR] [--no-eval] [KEY=VALUE ...]

MODEL: an HF directory (e.g. a checkpoint's hf/ export), a training checkpoint directory (its hf/), a checkpoint
root or run directory (the checkpoint `latest` names), or tiny:qwen2_5_vl / tiny:qwen3_vl. Generation runs on a
pool of `rollout.num_workers` rollout workers (rollout.backend: vllm, or hf). Restart with the same --out to
resume. Writes DIR/predictions.jsonl (as it goes), then DIR/results.json, DIR/submission.json,
DIR/bad_records.jsonl and, when the records carry ground truth, DIR/eval.json (the table is printed).
Exit status: 0 done, 2 usage, config or input error.
"""
from __future__ import annotations

import argparse
import sys

from medgrpo_ray.cli.common import add_overrides, argv_or_sys, load_config_or_none, parser_for


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = parser_for(None, __doc__, overrides=False)
    parser.add_argument("model", help="HF model directory, checkpoint directory, run directory or tiny:qwen2_5_vl")
    add_overrides(parser)
    parser.add_argument("--records", required=True, help="records to answer: .json, .jsonl or .parquet")
    parser.add_argument("--out", required=True, help="output directory (the same one resumes)")
    parser.add_argument("--video-root", default="", help="directory relative video paths are resolved against "
                        "(default: data.video_root, else the records file's folder)")
    parser.add_argument("--chunk-size", type=int, default=8, help="records per call to a rollout worker")
    parser.add_argument("--in-flight", type=int, default=2, help="calls queued per rollout worker")
    parser.add_argument("--no-eval", action="store_true", help="do not evaluate even when the records have GT")
    args = parser.parse_intermixed_args(argv)
    if args.chunk_size < 1 or args.in_flight < 1:
        parser.error("--chunk-size and --in-flight must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv_or_sys(argv))
    cfg = load_config_or_none(args.config, args.overrides)
    if cfg is None:
        return 2
    from medgrpo_ray.tracking.console import quiet_process

    quiet_process(cfg.logging.level, cfg.logging.engine_level)
    from medgrpo_ray.workflows.inference import InferSettings, run_inference

    settings = InferSettings(records=args.records, out_dir=args.out, model=args.model, chunk_size=args.chunk_size,
                             in_flight=args.in_flight, video_root=args.video_root, evaluate=not args.no_eval)
    try:
        summary = run_inference(cfg, settings)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"done: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
