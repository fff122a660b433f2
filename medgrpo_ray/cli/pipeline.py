"""The MedGRPO workflow in one command: launch/pipeline.py (or medgrpo-pipeline) [--out runs/pipeline] [--sft KEY=VALUE ...]
    [--grpo KEY=VALUE ...] [--infer KEY=VALUE ...] [--sft-config configs/sft_cpu.yaml]
    [--grpo-config configs/grpo_from_sft_cpu.yaml] [--stats-from train|test] [--test-records 60]

SFT -> inference on the test split -> evaluation table -> normalization statistics (launch/norm_stats.py) from the
SFT model's results -> GRPO from the SFT export with those statistics -> inference -> evaluation table, and the two
compared, paired, with bootstrap intervals (OUT/comparison.md). Rerun the same command to resume: finished stages
are skipped.
Logic: medgrpo_ray/workflows/pipeline.py.
"""
from __future__ import annotations

from medgrpo_ray.cli.common import argv_or_sys, run_stages_command, staged_parser


def main(argv: list[str] | None = None) -> int:
    parser = staged_parser(__doc__, out="runs/pipeline", sft_config="configs/sft_cpu.yaml",
                           grpo_config="configs/grpo_from_sft_cpu.yaml", grpo_help="GRPO preset")
    parser.add_argument("--stats-from", choices=("train", "test"), default="train",
                        help="split whose SFT results give the normalization statistics (default: train; GRPO sees "
                        "training records, and test answers stay out of training)")
    parser.add_argument("--chunk-size", type=int, default=8, help="records per call to a rollout worker (inference)")
    parser.add_argument("--test-records", type=int, default=60, metavar="N",
                        help="synthetic data: build a test split of N records per task, per source for TAL and STG "
                        "(default 60: enough for the intervals to separate real changes; 0: the SFT config's own test "
                        "split)")
    args = parser.parse_args(argv_or_sys(argv))
    from medgrpo_ray.workflows.pipeline import PipelineSettings, run_pipeline

    settings = PipelineSettings(out_dir=args.out, sft_config=args.sft_config, grpo_config=args.grpo_config,
                                sft_overrides=args.sft, grpo_overrides=args.grpo, infer_overrides=args.infer,
                                stats_from=args.stats_from, chunk_size=args.chunk_size,
                                test_min_records=args.test_records)
    return run_stages_command(run_pipeline, settings, "pipeline")


if __name__ == "__main__":
    raise SystemExit(main())
