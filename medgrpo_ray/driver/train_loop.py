"""The outer loop around `Trainer`: resume, progress bar, console lines, checkpoint schedule, clean shutdown."""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("medgrpo_ray.train")


def resume_path(cfg, ckpt_root: Path) -> Path | str | None:
    """The checkpoint to resume from: None, a local directory, or (with checkpoint.storage) a storage prefix."""
    from medgrpo_ray.checkpoint.local import find_latest

    if cfg.resume == "none":
        return None
    if cfg.resume == "auto":
        if cfg.checkpoint.storage:
            from medgrpo_ray.driver.cluster_checkpoint import latest

            return latest(cfg, ckpt_root.parent)
        return find_latest(ckpt_root)
    return cfg.resume if cfg.checkpoint.storage else Path(cfg.resume)


DRIVER_GC_THRESHOLD = (50_000, 20, 100)


def tune_driver_gc() -> None:
    """Keep Python's cyclic GC off the driver's critical path: what exists after setup (records, actor handles,
    config) is frozen out of every collection, and the youngest generation is collected every 50,000 allocations
    instead of 700. A step at 16,384 prompts allocates millions of short-lived objects; with the defaults the full
    collections they trigger re-scan everything alive and took half the driver's time (benchmarks/bench_driver.py)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*DRIVER_GC_THRESHOLD)


def train(cfg, run_dir: Path, trainer_cls=None) -> dict:
    """Run `trainer_cls` (the GRPO `Trainer` by default; `SFTTrainer` for launch/sft.py) to its last step."""
    from tqdm import tqdm

    from medgrpo_ray.tracking.metrics import MetricsLogger, console_line
    from medgrpo_ray.driver.trainer import Trainer

    trainer = (trainer_cls or Trainer)(cfg, run_dir)
    cfg = trainer.cfg  # the trainer may derive settings (SFT: total steps from epochs)
    trainer.start()
    tune_driver_gc()
    metrics = MetricsLogger(run_dir, cfg.logging.tensorboard)
    try:
        start = resume_path(cfg, trainer.ckpt_root)
        if start is not None:
            trainer.load_checkpoint(start)
            metrics.truncate_after(trainer.step)
        elif cfg.resume == "auto":
            log.info("resume=auto: no checkpoint under %s; starting fresh", trainer.ckpt_root)
        total = cfg.algorithm.total_steps
        bar = tqdm(total=total, initial=trainer.step, desc=getattr(trainer, "desc", "GRPO"), disable=not cfg.logging.progress_bar, dynamic_ncols=True)
        last = {}
        every = cfg.checkpoint.every_n_steps
        while trainer.step < total:
            m = trainer.train_one_step()
            if cfg.algorithm.eval_every and trainer.step % cfg.algorithm.eval_every == 0:
                m.update(trainer.evaluate())
            metrics.log(trainer.step, m)
            if cfg.logging.rollout_log:
                metrics.log_rollouts(trainer.step, trainer.last_rollouts)
            last = m
            bar.update(1)
            if "sft/loss" in m:
                bar.set_postfix(loss=f"{m['sft/loss']:.3f}", step_s=f"{m['timing_s/step']:.1f}")
            else:
                bar.set_postfix(reward=f"{m.get('reward/raw_mean', float('nan')):.3f}", step_s=f"{m['timing_s/step']:.1f}")
            tqdm.write(console_line(trainer.step, total, m))
            if (every and trainer.step % every == 0) or trainer.step == total:
                trainer.save_checkpoint()
        bar.close()
        if len(trainer.quarantine):
            log.warning("%d record(s) in quarantine (%s): %s", len(trainer.quarantine),
                        ", ".join(f"{k} {v}" for k, v in sorted(trainer.quarantine.counts().items())),
                        trainer.quarantine.path)
        out = {"step": trainer.step, "run_dir": str(run_dir)}
        out.update({k: v for k, v in last.items() if k in ("reward/raw_mean", "sft/loss") or k.startswith("eval/")})
        return out
    finally:
        metrics.close()
        trainer.stop()
        _plot(run_dir)


def _plot(run_dir: Path) -> None:
    from medgrpo_ray.tracking.plots import plot_run

    try:
        png = plot_run(run_dir)
    except Exception as err:  # noqa: BLE001 - a failed plot never hides the run's result
        log.warning("could not plot the run's curves: %s", err)
        return
    if png is not None:
        log.info("curves: %s", png)
