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


def _print_export(summary: dict, run_dir: Path) -> None:
    from medgrpo_ray.checkpoint.local import find_latest

    latest = find_latest(run_dir / "checkpoints")
    if latest is not None and (latest / "hf").is_dir():
        summary["hf_export"] = str(latest / "hf")
        print(f"SFT model (HF export, for model.path of a GRPO run): {latest / 'hf'}")


def main(argv: list[str] | None = None) -> int:
    from launch.train import main as run
    from medgrpo_ray.driver.sft_trainer import SFTTrainer

    return run(argv, trainer_cls=SFTTrainer, finish=_print_export)


if __name__ == "__main__":
    raise SystemExit(main())
