"""Supervised fine-tuning: launch/sft.py (or medgrpo-sft) --config configs/sft_cpu.yaml [KEY=VALUE ...] [resume=auto]

Cross-entropy on the reference answers of MedVidBench records (answer tokens only), on the same DeepSpeed learner
group, prompt and frame path as GRPO; evaluation on the test split (every `sft.eval_every` steps and at the end);
checkpoints with exact resume. The HF export of the last checkpoint is printed: point a GRPO run's `model.path` at
it. `--dry-run` prints the launch plan instead (docs/launch_plan.md). Exit status: 0 done (dry run: it fits), 1 dry
run: it does not fit, 2 usage or config error.
"""
from __future__ import annotations

from pathlib import Path


def _print_export(summary: dict, run_dir: Path) -> None:
    from medgrpo_ray.checkpoint.local import find_latest

    latest = find_latest(run_dir / "checkpoints")
    if latest is not None and (latest / "hf").is_dir():
        summary["hf_export"] = str(latest / "hf")
        print(f"SFT model (HF export, for model.path of a GRPO run): {latest / 'hf'}")


def main(argv: list[str] | None = None) -> int:
    from medgrpo_ray.cli.train import main as run
    from medgrpo_ray.driver.sft_trainer import SFTTrainer

    return run(argv, trainer_cls=SFTTrainer, finish=_print_export, doc=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
