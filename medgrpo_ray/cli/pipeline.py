"""The MedGRPO workflow in one command: launch/pipeline.py (or medgrpo-pipeline) [--out runs/pipeline] [--sft KEY=VALUE ...]
    [--grpo KEY=VALUE ...] [--infer KEY=VALUE ...] [--sft-config configs/sft_cpu.yaml]
    [--grpo-config configs/grpo_from_sft_cpu.yaml] [--stats-from train|test]

SFT -> inference on the test split -> evaluation table -> normalization statistics (launch/norm_stats.py) from the
SFT model's results -> GRPO from the SFT export with those statistics -> inference -> evaluation table, and both
tables side by side (OUT/comparison.md). Rerun the same command to resume: finished stages are skipped.
Logic: medgrpo_ray/workflows/pipeline.py.
"""
from __future__ import annotations

import logging
import sys

from medgrpo_ray.cli.common import argv_or_sys, parser_for


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(None, __doc__, config=False, overrides=False,
                        epilog="--sft / --grpo / --infer take KEY=VALUE overrides (OmegaConf dotlist) of that stage's config; every "
                        "setting: `python -m medgrpo_ray.config`. Exit status: 0 done, 2 usage, config or stage "
                        "error (rerun the same command to resume).")
    parser.add_argument("--out", default="runs/pipeline", help="output directory (the same one resumes)")
    parser.add_argument("--sft-config", default="configs/sft_cpu.yaml", help="SFT preset (also the data and inference settings)")
    parser.add_argument("--grpo-config", default="configs/grpo_from_sft_cpu.yaml", help="GRPO preset")
    parser.add_argument("--sft", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the SFT run")
    parser.add_argument("--grpo", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the GRPO run")
    parser.add_argument("--infer", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of both inference runs")
    parser.add_argument("--stats-from", choices=("train", "test"), default="train",
                        help="split whose SFT results give the normalization statistics (default: train; GRPO sees "
                        "training records, and test answers stay out of training)")
    parser.add_argument("--chunk-size", type=int, default=8, help="records per call to a rollout worker (inference)")
    args = parser.parse_args(argv_or_sys(argv))

    from medgrpo_ray.config import load_config
    from medgrpo_ray.workflows.pipeline import PipelineSettings, run_pipeline

    # This process's own lines only (e.g. the benchmark's generation); each stage configures its own logging from
    # its config, so nothing here (environment variables included) may reach the stages.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    settings = PipelineSettings(out_dir=args.out, sft_config=args.sft_config, grpo_config=args.grpo_config,
                                sft_overrides=args.sft, grpo_overrides=args.grpo, infer_overrides=args.infer,
                                stats_from=args.stats_from, chunk_size=args.chunk_size)
    try:
        run_pipeline(settings, load_config)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"pipeline error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
