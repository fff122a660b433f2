"""Checkpoints in `checkpoint.storage` (medgrpo_ray/checkpoint/storage.py): the driver's side of writing, committing,
pruning and resuming them, and the reachability probe from every node at start.

Layout under the location: `<run>/step_000010/` (every learner rank's DeepSpeed files and rank 0's HF export,
uploaded by each rank from its own node; the driver's `driver_state.json`, `rng.pt`, `config.yaml`; and
`manifest.json`, every part with its size), `<run>/latest` (the name of the newest complete checkpoint, written
last). A save whose parts are not all there raises and leaves `latest` on the previous checkpoint; a half-written
step directory left by a crash is deleted when that step is saved again.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from medgrpo_ray.driver.rollout_ahead import PENDING_FILE

log = logging.getLogger(__name__)


def run_prefix(trainer) -> tuple:
    from medgrpo_ray.checkpoint.storage import resolve

    loc = resolve(trainer.cfg.checkpoint.storage)
    return loc, loc.join(trainer.run_dir.name)


def probe_all(trainer) -> None:
    """Every learner rank and rollout worker (then the driver) writes and reads the location; OSError naming
    the first that cannot, before any training."""
    import ray

    from medgrpo_ray.checkpoint.storage import probe

    uri = trainer.cfg.checkpoint.storage
    refs = [a.probe_storage.remote(uri) for a in [*trainer.learners, *trainer.rollout.workers]]
    try:
        who = ray.get(refs, timeout=trainer.cfg.ray.init_timeout_s)
    except ray.exceptions.RayTaskError as err:
        cause = err.as_instanceof_cause()
        raise OSError(str(cause).strip().splitlines()[-1]) from None
    who.append(probe(uri, "the driver"))
    log.info("checkpoint storage %s reachable from %d processes", uri.split("?", 1)[0], len(who))


def save(trainer) -> str:
    """Write step `trainer.step`'s checkpoint to the storage and commit it; returns its prefix."""
    import ray

    from medgrpo_ray.checkpoint.local import step_dir_name
    from medgrpo_ray.checkpoint.storage import delete_dir, list_sizes, missing_parts, upload_dir, write_text

    loc, root = run_prefix(trainer)
    name = step_dir_name(trainer.step)
    prefix = f"{root}/{name}"
    delete_dir(loc, prefix)  # a leftover of a save that crashed before `latest` moved
    parts: dict[str, int] = {}
    sent = ray.get([l.save_to_storage.remote(trainer.cfg.checkpoint.storage, prefix, trainer.cfg.checkpoint.export_hf)
                    for l in trainer.learners], timeout=trainer.cfg.ray.get_timeout_s)
    for s in sent:
        parts.update(s)
    tmp = Path(tempfile.mkdtemp(prefix="medgrpo-driver-ckpt-"))
    try:
        trainer.write_driver_files(tmp)
        parts.update(upload_dir(tmp, loc, prefix))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    missing = missing_parts(loc, prefix, parts)
    if missing:
        raise RuntimeError(f"checkpoint {name} in {loc.describe()}: {len(missing)} part(s) missing or short after "
                           f"upload ({', '.join(missing[:5])}); `latest` still names the previous checkpoint")
    write_text(loc, f"{prefix}/manifest.json", json.dumps(parts, indent=1, sort_keys=True))
    write_text(loc, f"{root}/latest", name + "\n")
    steps = sorted({rel.split("/", 1)[0] for rel in list_sizes(loc, root) if rel.startswith("step_")})
    for old in steps[:-trainer.cfg.checkpoint.keep_last] if trainer.cfg.checkpoint.keep_last > 0 else []:
        delete_dir(loc, f"{root}/{old}")
    log.info("checkpoint: %s/%s (%d parts)", loc.describe(), f"{trainer.run_dir.name}/{name}", len(parts))
    return prefix


def latest(cfg, run_dir: Path) -> str | None:
    """Prefix of the run's newest committed checkpoint in the storage, or None."""
    from medgrpo_ray.checkpoint.storage import read_text, resolve

    loc = resolve(cfg.checkpoint.storage)
    name = read_text(loc, loc.join(run_dir.name, "latest"))
    return loc.join(run_dir.name, name.strip()) if name and name.strip() else None


def load(trainer, prefix: str) -> None:
    """Restore learners (each downloads the DeepSpeed files to its node), the driver state and RNGs."""
    import ray

    from medgrpo_ray.checkpoint.storage import download_file, read_text, resolve

    loc = resolve(trainer.cfg.checkpoint.storage)
    manifest = read_text(loc, f"{prefix}/manifest.json")
    if manifest is None:
        raise FileNotFoundError(f"{loc.describe()}: {prefix} is not a complete checkpoint (no manifest.json)")
    ray.get([l.load_from_storage.remote(trainer.cfg.checkpoint.storage, prefix) for l in trainer.learners],
            timeout=trainer.cfg.ray.get_timeout_s)
    tmp = Path(tempfile.mkdtemp(prefix="medgrpo-driver-resume-"))
    try:
        pending = (PENDING_FILE,) if PENDING_FILE in json.loads(manifest) else ()  # only when one was ahead
        for name in ("driver_state.json", "rng.pt", *pending):
            download_file(loc, f"{prefix}/{name}", tmp / name)
        trainer.read_driver_files(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
