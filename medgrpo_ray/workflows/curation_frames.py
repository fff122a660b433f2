"""Rendering the caption units' frames (curation/caption_frames.py: decode, draw, JPEG) on CPU workers.

`FrameRenderer(root, settings, units)` is the `prepare` callable of caption_stage.run_pending: given a chunk of
caption units it renders each unit's frames and attaches them, returning per unit None or the error that stopped
it. Where it runs is chosen once per run by the number of pending units:

- at least `captions.ray_min_units` (default 256): Ray tasks of one CPU each, a batch of units per task, on the
  cluster the process is already connected to, the one RAY_ADDRESS names, or a local one started here (and shut
  down by `close`). Ray Data (`ray.data.from_items(...).map(...)`) would be the natural form, but it needs pandas,
  which this environment does not have; plain tasks do the same for a flat map.
- fewer: in this process, on a few daemon threads (decord releases the GIL while decoding). Starting a local Ray
  costs several seconds and a worker process per CPU, while a unit renders in tens of milliseconds on the synthetic
  clips (8 frames, 256 x 192), so a small run finishes before Ray would have started.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

from medgrpo_ray.curation.caption_frames import FrameSettings, attach, frame_job, render_safe

UNITS_PER_TASK = 8


def _render_batch(jobs: list[dict], root: str, fs: FrameSettings) -> list:
    return [render_safe(job, root, fs) for job in jobs]


class FrameRenderer:
    """Attaches rendered frames to caption units, on Ray when `use_ray` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike, settings: FrameSettings, use_ray: bool = False,
                 threads: Optional[int] = None, log=print):
        self.root, self.settings, self.use_ray = str(Path(root)), settings, use_ray
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))
        self.log = log
        self._started_ray = False
        self._remote = None

    @classmethod
    def for_run(cls, root, settings: FrameSettings, pending: int, ray_min_units: Optional[int],
                log=print) -> "FrameRenderer":
        use_ray = ray_min_units is not None and pending >= ray_min_units
        if log:
            log(f"[curate] caption frames: {pending} units to render "
                + ("on Ray CPU tasks" if use_ray else "in this process")
                + (f" (captions.ray_min_units={ray_min_units})" if ray_min_units is not None else ""))
        return cls(root, settings, use_ray, log=log)

    def __call__(self, units: Sequence) -> list[Optional[str]]:
        jobs = [frame_job(u, self.settings) for u in units]
        results = self._on_ray(jobs) if self.use_ray else self._here(jobs)
        errors: list[Optional[str]] = []
        for u, res in zip(units, results):
            if isinstance(res, str):
                errors.append(res)
            else:
                attach(u, res)
                errors.append(None)
        return errors

    def _here(self, jobs: list[dict]) -> list:
        from medgrpo_ray.data.video import map_daemon

        return map_daemon(lambda job: render_safe(job, self.root, self.settings), jobs, self.threads)

    def _on_ray(self, jobs: list[dict]) -> list:
        import ray

        if self._remote is None:
            if not ray.is_initialized():
                ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
                self._started_ray = True
            self._remote = ray.remote(num_cpus=1)(_render_batch)
        batches = [jobs[i:i + UNITS_PER_TASK] for i in range(0, len(jobs), UNITS_PER_TASK)]
        refs = [self._remote.remote(b, self.root, self.settings) for b in batches]
        return [res for batch in ray.get(refs) for res in batch]

    def close(self) -> None:
        """Shut down the local Ray this renderer started (a cluster it joined is left running)."""
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False
