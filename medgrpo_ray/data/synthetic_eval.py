"""A synthetic test split sized for evaluation: at least `min_records` records of every task, and of every (task,
source) pair for the tasks whose numbers are read per source (TAL and STG by default).

The round-robin split of synthetic.py covers every task and source with few records; that is right for training
and smoke tests but leaves 7-15 records behind a discrete task's number, which a bootstrap interval then shows to
be too few to read a change from. Here videos are drawn batch by batch as in synthetic.generate_split (the video of
source i in batch b from seed [seed, 1, b, i], the test stream), and each video yields the records of its task list
whose group is still short, one record per task entry, so every group ends at exactly its quota and no video
serves more records than in the ordinary split (records stay as independent as there).
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from medgrpo_ray.data.records import VideoRecord
from medgrpo_ray.data.records_io import write_json
from medgrpo_ray.data.synthetic import BUILDERS, build_record
from medgrpo_ray.data.synthetic_scene import SOURCES, make_scene, write_mp4
from medgrpo_ray.io.atomic import atomic_write_json

PER_SOURCE_TASKS = ("tal", "stg")
MAX_BATCHES = 1000


def quotas(tasks: Sequence[str], sources: Sequence[str], min_records: int,
           per_source: Sequence[str] = PER_SOURCE_TASKS) -> dict[tuple[str, str], int]:
    """(task, source or "*") -> records wanted: per source for `per_source` tasks, pooled over sources otherwise;
    only pairs some source's task list has."""
    out = {}
    for task in tasks:
        having = [s for s in sources if task in SOURCES[s].tasks]
        for key in ([(task, s) for s in having] if task in per_source else [(task, "*")] if having else []):
            out[key] = min_records
    return out


def group_of(task: str, source: str, per_source: Sequence[str] = PER_SOURCE_TASKS) -> tuple[str, str]:
    return (task, source if task in per_source else "*")


def generate_eval_split(out_dir: str | Path, tasks: Sequence[str], min_records: int = 60, seed: int = 0,
                        sources: Sequence[str] | None = None, per_source: Sequence[str] = PER_SOURCE_TASKS,
                        frame_list_fraction: float = 0.2) -> dict:
    """Write `out_dir`/test.json (paths relative to `out_dir`) and manifest.json (written last: the split is
    complete when it exists); returns the manifest."""
    unknown = sorted(set(tasks) - set(BUILDERS)) + sorted(set(sources or ()) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown task(s) or source(s) {unknown}; tasks: {sorted(BUILDERS)}, sources: {sorted(SOURCES)}")
    names = list(sources or SOURCES)
    want = quotas(tasks, names, min_records, per_source)
    if not want:
        raise ValueError(f"no source among {names} has any of the tasks {list(tasks)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = {name: i for i, name in enumerate(SOURCES)}
    have: Counter = Counter()
    records: list[VideoRecord] = []
    written: set[str] = set()
    t0 = time.perf_counter()
    for batch in range(MAX_BATCHES):
        if all(have[g] >= n for g, n in want.items()):
            break
        for name in names:
            todo = [t for t in SOURCES[name].tasks if t in tasks and have[group_of(t, name, per_source)]
                    < want.get(group_of(t, name, per_source), 0)]
            if not todo:
                continue
            rng = np.random.default_rng([seed, 1, batch, index[name]])
            scene = make_scene(SOURCES[name], f"{name}_eval_{batch * 8 + index[name]:04d}", rng)
            for task in SOURCES[name].tasks:
                group = group_of(task, name, per_source)
                if task in tasks and have[group] < want.get(group, 0):
                    if scene.video_id not in written:
                        write_mp4(scene, out / f"videos/{scene.video_id}.mp4")
                        written.add(scene.video_id)
                    records.append(build_record(scene, task, rng, out, frame_list_fraction, written))
                    have[group] += 1
    else:
        raise RuntimeError(f"{MAX_BATCHES} batches did not fill the quotas {dict(want)}: have {dict(have)}")
    write_json(records, out / "test.json")
    manifest = {"generator": "medgrpo_ray.data.synthetic_eval", "seed": seed, "min_records": min_records,
                "per_source_tasks": list(per_source), "records": len(records), "videos": len(written),
                "by_group": {f"{t}/{s}": have[(t, s)] for t, s in sorted(want)},
                "by_task": dict(sorted(Counter(r.task for r in records).items())),
                "by_dataset": dict(sorted(Counter(r.dataset for r in records).items())),
                "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_json(out / "manifest.json", manifest, indent=1)
    return manifest
