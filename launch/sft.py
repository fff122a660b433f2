"""Supervised fine-tuning: python launch/sft.py --config configs/sft_cpu.yaml [key=value ...] [resume=auto]

Cross-entropy on the reference answers of MedVidBench records (answer tokens only), on the same DeepSpeed learner
group, prompt and frame path as GRPO; evaluation on the test split (every `sft.eval_every` steps and at the end);
checkpoints with exact resume; the HF export of the last checkpoint is printed: point a GRPO run's `model.path`
at it.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main(argv: list[str] | None = None) -> int:
    from launch.train import run_dir_for
    from medgrpo_ray.checkpoint import find_latest
    from medgrpo_ray.config import load_config, save_config, split_cli, to_redacted_yaml
    from medgrpo_ray.console import quiet_process

    path, overrides = split_cli(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_config(path, overrides)
    except ValueError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    quiet_process(cfg.logging.level, cfg.logging.engine_level)
    run_dir = run_dir_for(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.logging.print_config:
        print(to_redacted_yaml(cfg))
    saved = save_config(cfg, run_dir)
    print(f"run directory: {run_dir} (resolved config, secrets redacted: {saved})", flush=True)
    from medgrpo_ray.sft.trainer import SFTTrainer
    from medgrpo_ray.train_loop import train

    summary = train(cfg, run_dir, trainer_cls=SFTTrainer)
    latest = find_latest(run_dir / "checkpoints")
    if latest is not None and (latest / "hf").is_dir():
        summary["hf_export"] = str(latest / "hf")
        print(f"SFT model (HF export, for model.path of a GRPO run): {latest / 'hf'}")
    print(f"done: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
