"""The paper's central claim at toy scale: multi-dataset GRPO with and without cross-dataset reward normalization.

    launch/ablate_normalization.py (or medgrpo-ablate) [--out runs/ablation] [--arms norm raw raw_nostd norm_nostd] [--seeds 0 1 2]
        [--steps 20] [--difficulty CoPESD=0 CholecTrack20=0.5 EgoSurgery=1] [--sft KEY=VALUE ...]
        [--grpo KEY=VALUE ...] [--infer KEY=VALUE ...]

A synthetic mixture of unequal difficulty -> one SFT checkpoint -> statistics from its answers on the training
records -> GRPO arms (normalization on / off, with / without the group std division), several seeds each, same
steps and data -> test-split evaluation of each -> OUT/ablation.md (change of each (dataset, metric) over SFT per
arm and seed), OUT/ablation.json and OUT/curves.png (reward and |advantage| share per (dataset, task) per arm).
Rerun the same command to resume: finished stages are skipped. Logic: medgrpo_ray/workflows/ablation.py; the experiment
and its result: docs/normalization_ablation.md.
"""
from __future__ import annotations

import sys

from medgrpo_ray.cli.common import argv_or_sys, run_stages_command, staged_parser


def main(argv: list[str] | None = None) -> int:
    from medgrpo_ray.workflows.ablation import ARMS, DEFAULT_ARMS, DEFAULT_DIFFICULTY, DEFAULT_SOURCES, DEFAULT_TASKS

    parser = staged_parser(__doc__, out="runs/ablation", sft_config="configs/ablation_sft_cpu.yaml",
                           grpo_config="configs/ablation_grpo_cpu.yaml", grpo_help="GRPO preset of every arm")
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), choices=sorted(ARMS),
                        help="GRPO arms: " + "; ".join(f"{k}: {v[0]}" for k, v in ARMS.items()))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="GRPO seeds of every arm")
    parser.add_argument("--steps", type=int, default=None, help="GRPO steps per arm (default: the GRPO preset's)")
    parser.add_argument("--train", type=int, default=240, help="training records of the mixture")
    parser.add_argument("--test", type=int, default=96, help="test records of the mixture")
    parser.add_argument("--sources", nargs="+", default=list(DEFAULT_SOURCES), help="sources of the mixture")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), help="tasks of the mixture")
    parser.add_argument("--difficulty", nargs="*", metavar="SOURCE=D",
                        default=[f"{k}={v:g}" for k, v in DEFAULT_DIFFICULTY.items()],
                        help="difficulty in [0, 1] per source (others keep their own settings)")
    args = parser.parse_args(argv_or_sys(argv))
    try:
        difficulty = {k: float(v) for k, v in (item.split("=", 1) for item in args.difficulty)}
    except ValueError:
        parser.error(f"--difficulty takes SOURCE=D pairs, got {args.difficulty}")

    from medgrpo_ray.workflows.ablation import AblationSettings, run_ablation

    grpo = ([f"algorithm.total_steps={args.steps}"] if args.steps else []) + args.grpo
    try:
        settings = AblationSettings(out_dir=args.out, arms=args.arms, seeds=args.seeds, sft_config=args.sft_config,
                                    grpo_config=args.grpo_config, sft_overrides=args.sft, grpo_overrides=grpo,
                                    infer_overrides=args.infer, sources=args.sources, tasks=args.tasks,
                                    difficulty=difficulty, n_train=args.train, n_test=args.test)
    except ValueError as err:
        print(f"ablation error: {err}", file=sys.stderr)
        return 2
    return run_stages_command(run_ablation, settings, "ablation")


if __name__ == "__main__":
    raise SystemExit(main())
