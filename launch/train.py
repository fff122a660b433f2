"""Train with GRPO: python launch/train.py --config configs/quickstart_cpu.yaml [key=value ...] [resume=auto]

Starts a local Ray cluster, or joins the one it runs on under `ray job submit` (RAY_ADDRESS), runs the driver
loop, writes metrics (JSONL + TensorBoard) and checkpoints under logging.output_dir/run_name.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def run_dir_for(cfg) -> Path:
    name = cfg.run_name or time.strftime("run-%Y%m%d-%H%M%S")
    return Path(cfg.logging.output_dir).expanduser() / name


def main(argv: list[str] | None = None, trainer_cls=None, finish=None) -> int:
    """Load the config, set up the run directory and console, run `trainer_cls` (GRPO by default) through the
    training loop; `finish(summary, run_dir)` may add to the summary before it is printed (launch/sft.py)."""
    from medgrpo_ray.config import load_config, save_config, split_cli, to_redacted_yaml

    path, overrides = split_cli(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_config(path, overrides)
    except ValueError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
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
