"""Train with GRPO: launch/train.py (or medgrpo-train) --config configs/quickstart_cpu.yaml [KEY=VALUE ...] [resume=auto]

Starts a local Ray cluster, or joins the one it runs on under `ray job submit` (RAY_ADDRESS), runs the driver loop,
and writes metrics (JSONL + TensorBoard), rollouts, curves and checkpoints under logging.output_dir/run_name.
`resume=auto` continues from the run's latest checkpoint. Settings this machine cannot honour (a missing package,
GPUs without CUDA) stop the run before Ray starts. `--dry-run` prints the launch plan instead (actor groups,
placement, memory per GPU; docs/launch_plan.md). Exit status: 0 done (dry run: it fits), 1 dry run: it does not
fit, 2 usage or config error.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from medgrpo_ray.cli.common import argv_or_sys, load_config_or_none, parser_for


def run_dir_for(cfg) -> Path:
    name = cfg.run_name or time.strftime("run-%Y%m%d-%H%M%S")
    return Path(cfg.logging.output_dir).expanduser() / name


def main(argv: list[str] | None = None, trainer_cls=None, finish=None, doc: str | None = None) -> int:
    """Load the config, set up the run directory and console, run `trainer_cls` (GRPO by default) through the
    training loop; `finish(summary, run_dir)` may add to the summary before it is printed (the SFT command)."""
    parser = parser_for(None, doc or __doc__)
    parser.add_argument("--dry-run", action="store_true", help="print the launch plan (actor groups, placement, "
                        "memory per GPU by part, whether it fits) and exit: no model loads, no Ray worker starts")
    parser.add_argument("--gpu-memory-gib", type=float, default=None, metavar="GIB", help="with --dry-run: GPU "
                        "memory to plan against where the cluster does not tell (default: detected, else 79.6)")
    args = parser.parse_intermixed_args(argv_or_sys(argv))
    cfg = load_config_or_none(args.config, args.overrides)
    if cfg is None:
        return 2
    from medgrpo_ray.cli.launch_plan import dry_run, requirements_met

    if args.dry_run:
        return dry_run(cfg, args.config, args.gpu_memory_gib, "SFT" if trainer_cls is not None else "GRPO")
    if not requirements_met(cfg):  # before the run directory, Ray or any model
        return 2
    from medgrpo_ray.config import save_config, to_redacted_yaml
    from medgrpo_ray.tracking.console import quiet_process

    quiet_process(cfg.logging.level, cfg.logging.engine_level)
    run_dir = run_dir_for(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.logging.print_config:
        print(to_redacted_yaml(cfg))
    saved = save_config(cfg, run_dir)
    print(f"run directory: {run_dir} (resolved config, secrets redacted: {saved})", flush=True)
    from medgrpo_ray.driver.train_loop import train

    try:
        summary = train(cfg, run_dir, trainer_cls=trainer_cls)
    except OSError as err:  # e.g. checkpoint.storage unreachable from a node: the message says which and why
        print(f"error: {err}", file=sys.stderr)
        return 2
    if finish is not None:
        finish(summary, run_dir)
    print(f"done: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
