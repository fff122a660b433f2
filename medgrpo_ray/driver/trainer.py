"""The GRPO driver: owns the loop, the sampler, normalization, advantages, weight sync and checkpoints.

One step (phases in grpo_step.py): draw prompts balanced over (dataset, task) -> rollout workers (each prompt's G
samples on one worker) -> reward workers -> logistic normalization -> group-relative advantages (zero-variance
groups dropped) -> learner group update -> weights from learner rank 0 to every rollout worker (syncer.py) ->
metrics -> checkpoint every N steps. With algorithm.rollout_ahead=1 the next step's rollout overlaps the update
(rollout_ahead.py). See docs/architecture.md and docs/failure_policy.md.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from medgrpo_ray.driver.rollout_ahead import PENDING_FILE, Batch
from medgrpo_ray.medvidbench.tasks import canonical_dataset

log = logging.getLogger("medgrpo_ray.driver.trainer")


def select_records(records, tasks, datasets):
    """Records of the configured tasks and datasets (dataset names in any published spelling)."""
    wanted = {canonical_dataset(x) for x in datasets}
    return [r for r in records if (not tasks or r.task in tasks) and (not wanted or r.dataset in wanted)]


class Trainer:
    def __init__(self, cfg, run_dir: str | os.PathLike) -> None:
        from medgrpo_ray.rewards.normalization import RewardNormalizer, load_stats

        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.records, self.video_root = self._load_train_records()
        n = cfg.normalization
        stats = load_stats(n.stats_path) if n.stats_path else {}
        self.normalizer = RewardNormalizer(stats, k=n.k, iqr_floor=n.iqr_floor, warmup_count=n.warmup_count,
                                           missing_policy=n.missing_policy)
        from medgrpo_ray.data.sampler import BalancedSampler

        self.test_records = self._load_test_records() if cfg.algorithm.eval_every else []

        self.sampler = BalancedSampler([(r.dataset, r.task) for r in self.records], seed=cfg.seed)
        from medgrpo_ray.data.quarantine import Quarantine, QuarantineEntry

        self.quarantine = Quarantine(self.run_dir / "quarantine.jsonl")
        for index, field, msg in self.load_report.rejected:  # listed, never loaded: nothing to exclude
            self.quarantine.add(QuarantineEntry(uid="", source=self.load_report.source, index=index, reason=msg,
                                                kind=f"load:{field or '<record>'}", step=0))
        self.quarantine.write()
        self.failed_steps_in_row = 0
        self.step = 0
        self.last_rollouts: list[dict] = []
        from medgrpo_ray.driver.rollout_ahead import RolloutAhead

        self.ahead = RolloutAhead()  # the next step's rollout, with algorithm.rollout_ahead=1

    # ---- data -------------------------------------------------------------------------------------------------
    def _read_split(self, path: str, what: str, empty_hint: str) -> list:
        """Records of one split file, malformed ones handled per data.on_bad_record, filtered to the configured
        tasks and datasets; raises ValueError when none are left."""
        from medgrpo_ray.data.records_io import load_records

        d = self.cfg.data
        records, report = load_records(path, on_bad=d.on_bad_record)
        # records_io has logged the skipped records (the first 20 by name) and their count by field.
        if what == "training":
            self.load_report = report
        records = select_records(records, d.tasks, d.datasets)
        if not records:
            raise ValueError(f"no {what} records left in {path} after data.tasks={d.tasks} "
                             f"data.datasets={d.datasets}; {empty_hint}")
        log.info("%s records: %d from %s", what, len(records), path)
        return records

    def _load_train_records(self):
        d = self.cfg.data
        path, root = d.train_path, d.video_root
        if not path and d.synthetic_dir:
            from medgrpo_ray.data.synthetic import ensure_generated

            syn = ensure_generated(d.synthetic_dir, d.synthetic_seed, d.synthetic_records)
            path, root = str(syn / "train.json"), root or str(syn)
        if not path:
            raise ValueError("data.train_path is empty: point it at a MedVidBench JSON/Parquet file, or set "
                             "data.synthetic_dir to generate the synthetic benchmark")
        root = root or str(Path(path).expanduser().resolve().parent)  # relative video paths: next to the records
        return self._read_split(path, "training", "widen data.tasks / data.datasets"), root

    def _load_test_records(self):
        d = self.cfg.data
        path = d.test_path or (str(Path(d.synthetic_dir).expanduser() / "test.json") if d.synthetic_dir and not d.train_path else "")
        if not path:
            raise ValueError("algorithm.eval_every > 0 needs data.test_path (or the synthetic benchmark's test split)")
        records = self._read_split(path, "test", "algorithm.eval_every > 0 needs them: point data.test_path at "
                                   "a test split or set algorithm.eval_every=0")
        n = self.cfg.algorithm.eval_max_records
        return records[:n] if n else records

    def evaluate(self) -> dict[str, float]:
        """Greedy answers for the test records from the rollout workers, scored by the leaderboard evaluator:
        eval/<metric> for every metric it could compute (caption columns need the judge: not computed here)."""
        from medgrpo_ray.evaluation import evaluate
        from medgrpo_ray.rollout.types import RolloutItem

        t0 = time.perf_counter()
        items = [RolloutItem(group_id=i, record=r.to_dict(), greedy=True) for i, r in enumerate(self.test_records)]
        groups = self.rollout_step(items)
        merged = {str(i): r.to_eval_dict(prediction=groups[i].completions[0].text if groups[i].completions else "")
                  for i, r in enumerate(self.test_records)}
        row = evaluate(merged).row()
        out = {f"eval/{k}": v for k, v in row.items() if v is not None}
        out["eval/records"] = len(items)
        out["eval/failed_records"] = sum(1 for g in groups.values() if g.error)
        out["timing_s/eval"] = time.perf_counter() - t0
        return out

    # ---- cluster ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        import dataclasses

        from medgrpo_ray.driver.actor_groups import build_actor_groups
        from medgrpo_ray.driver.cluster import init_ray
        from medgrpo_ray.models.loading import resolve_model_path

        self.cfg = dataclasses.replace(self.cfg, data=dataclasses.replace(self.cfg.data, video_root=self.video_root))
        log.info("ray: %s", init_ray(self.cfg))
        model_dir = resolve_model_path(self.cfg.model.path, self.cfg.model.cache_dir, self.cfg.model.tiny_seed)
        g = build_actor_groups(self.cfg, model_dir, self.cfg.run_name or self.run_dir.name)
        self.rollout, self.rewards, self.references = g.rollout, g.rewards, g.references
        self.judges, self.learners = g.judges, g.learners
        self.memory = self.memory_phases()
        if self.cfg.placement == "colocated":
            from medgrpo_ray.driver.handover_sync import HandoverSyncer

            self.syncer = HandoverSyncer(self.cfg, self.learners, self.rollout, self.memory)
        else:
            from medgrpo_ray.driver.syncer import WeightSyncer

            self.syncer = WeightSyncer(self.cfg, self.learners, self.rollout)
        if self.cfg.checkpoint.storage:
            from medgrpo_ray.driver.cluster_checkpoint import probe_all

            probe_all(self)

    def memory_phases(self):
        """Who holds each colocated GPU's memory when (driver/memory_phases.py); every hook a no-op unless
        placement=colocated with rollout.colocated_memory=sleep."""
        import ray

        from medgrpo_ray.driver.memory_phases import MemoryPhases

        timeout = self.cfg.ray.get_timeout_s

        def engines(method, *args):  # waits through an engine's restart (it comes back asleep)
            ray.get([getattr(w, method).options(max_task_retries=-1).remote(*args) for w in self.rollout.workers],
                    timeout=timeout)

        def learners(method, *args):
            ray.get([getattr(l, method).remote(*args) for l in self.learners], timeout=timeout)

        mode = self.cfg.rollout.colocated_memory if self.cfg.placement == "colocated" else "static"
        return MemoryPhases(mode, engines, learners)

    def stop(self) -> None:
        import ray

        self.ahead.close()

        try:
            ray.get([l.shutdown.remote() for l in self.learners], timeout=60)
        except Exception as err:  # noqa: BLE001 - best effort at exit
            log.warning("learner shutdown: %s", err)
        # Then every actor of the run, killed outright: none can linger on a thread blocked in a read.
        from medgrpo_ray.driver.cluster import kill_actors

        pools = [p for p in (self.rollout, self.rewards, self.references, self.judges) if p is not None]
        queues = self.syncer.actors() if hasattr(getattr(self, "syncer", None), "actors") else []
        if kill_actors([w for p in pools for w in p.workers] + list(self.learners) + queues):
            log.warning("some actors of the run were not confirmed dead within 10 s")

    # ---- one step -----------------------------------------------------------------------------------------------
    def rollout_step(self, items):
        """{group_id: RolloutGroup}: the items split over the rollout workers, each prompt's G samples on one."""
        from medgrpo_ray.driver.cluster import split

        self.memory.before_rollout()
        try:
            return self.rollout.map("rollout", split(items, len(self.rollout.workers)), key=lambda g: g.group_id)
        finally:
            self.memory.after_rollout()

    def train_one_step(self) -> dict:
        """One GRPO step (phases in grpo_step.py). With algorithm.rollout_ahead=1 the next step's rollout runs
        during this step's learner call and is waited for before the weight sync."""
        from medgrpo_ray.driver import grpo_step as ph
        from medgrpo_ray.tracking.metrics import reward_metrics
        from medgrpo_ray.grpo.step_data import collect_samples, select_trained, signal_metrics

        cfg, a = self.cfg, self.cfg.algorithm
        t_step = time.perf_counter()
        batch = self.ahead.take()  # rolled out during the previous step (or restored from the checkpoint)
        t_wait = 0.0
        if batch is None:
            batch = ph.roll_out(self, ph.draw_batch(self, self.step))
            t_wait = batch.rollout_s
        items, idx, groups = batch.items, batch.idx, batch.groups
        records = [self.records[k] for k in idx]
        t0 = time.perf_counter()
        scored = ph.score(self, items, records, groups)
        t_reward = time.perf_counter() - t0

        data = collect_samples(cfg, items, records, groups, scored, self.normalizer)
        self.last_rollouts = data.rollout_log  # per-sample log lines of this step (train_loop writes them)
        samples = data.samples
        m = reward_metrics(data.rows)
        if self.judges is not None:
            m.update(self.judge_metrics())
        m.update(self.record_failures(items, idx, data.failed))
        m["rollout/workers_resynced"] = batch.workers_resynced
        m["rollout/worker_failures"] = self.rollout.failures
        m["rollout/staleness"] = self.step - batch.policy_step  # learner steps between the rollout's weights and now
        ok_groups = [g for g in groups.values() if not g.error]
        m["rollout/visual_tokens_mean"] = float(np.mean([g.visual_tokens for g in ok_groups])) if ok_groups else 0.0
        m["rollout/completion_tokens_mean"] = float(np.mean([len(s.completion_ids) for s in samples])) if samples else 0.0
        keep, zero_var = select_trained(data, a)
        m["algorithm/zero_variance_groups"] = len(zero_var)
        m["algorithm/samples_trained"] = len(keep)
        m.update(signal_metrics(data, keep))
        nxt = None
        if a.rollout_ahead and self.step + 1 < a.total_steps:  # the next rollout runs during this update
            nxt = ph.draw_batch(self, self.step + 1)
            self.ahead.launch(lambda b: ph.roll_out(self, b), nxt)
        t_learn = t_sync = 0.0
        learn_span = (0.0, 0.0)
        if keep and self.references is not None:
            m["timing_s/reference"] = ph.reference_logprobs(self, keep)
        if keep:
            t0 = time.perf_counter()
            stale = a.rollout_ahead or batch.policy_step < self.step  # a resumed pending batch is stale too
            outs = ph.learner_call(self, keep, is_cap=a.is_cap if stale else 0.0)
            learn_span = (t0, time.perf_counter())
            t_learn = learn_span[1] - t0
            m.update(ph.learner_metrics(outs, separate_reference=self.references is not None))
            learner_failed = {gid: v for o in outs for gid, v in o.get("failures", {}).items()}
            if learner_failed:
                self.quarantine_groups(items, idx, [(gid, kind, msg) for gid, (kind, msg) in learner_failed.items()])
                m["learner/failed_groups"] = len(learner_failed)
        t_wait += self.ahead.wait()  # no weight sync while a generation runs
        if nxt is not None:
            m["timing_s/rollout_overlap"] = ph.overlap_s(nxt.span, learn_span)  # generation during the update
        if keep:
            t0 = time.perf_counter()
            m.update(self.sync_weights())
            t_sync = time.perf_counter() - t0
        self.step += 1
        m.update({"timing_s/rollout": batch.rollout_s, "timing_s/rollout_wait": t_wait, "timing_s/reward": t_reward,
                  "timing_s/learner": t_learn, "timing_s/weight_sync": t_sync})
        m["timing_s/step"] = time.perf_counter() - t_step
        m["timing_s/driver_overhead"] = m["timing_s/step"] - t_wait - t_reward - t_learn - t_sync
        return m

    def record_failures(self, items, idx, failed) -> dict[str, float]:
        """Quarantine the records of this step's failed rollout groups and count them by reason; raise when
        every group has failed in `rollout.max_failed_steps` steps in a row (a systematic failure: a wrong
        data.video_root, a broken engine), which no single bad record can cause."""
        self.quarantine_groups(items, idx, [(g.group_id, g.reason or "unknown", g.error) for _, g in failed])
        m: dict[str, float] = {"rollout/failed_groups": len(failed)}
        for _, g in failed:
            key = f"rollout/failed_groups/{g.reason or 'unknown'}"
            m[key] = m.get(key, 0) + 1
        m["data/quarantined"] = len(self.quarantine)
        self.failed_steps_in_row = self.failed_steps_in_row + 1 if failed and len(failed) == len(items) else 0
        limit = self.cfg.rollout.max_failed_steps
        if limit and self.failed_steps_in_row >= limit:
            reasons = sorted({g.error for _, g in failed})[:3]
            raise RuntimeError(f"every rollout group failed in {self.failed_steps_in_row} steps in a row "
                               f"(rollout.max_failed_steps={limit}): a systematic problem, not a bad record; "
                               f"first reasons: {' | '.join(reasons)}")
        return m

    def quarantine_groups(self, items, idx, failures) -> None:
        """Put the records of failed groups [(group_id, kind, message)] in quarantine (each once: logged, listed in
        quarantine.jsonl, never sampled again)."""
        from medgrpo_ray.data.quarantine import QuarantineEntry

        pos = {it.group_id: i for i, it in enumerate(items)}
        added = False
        for gid, kind, msg in failures:
            k = idx[pos[gid]]
            rec = self.records[k]
            if self.quarantine.add(QuarantineEntry(uid=rec.uid, source=rec.source, index=rec.index, reason=msg,
                                                   kind=kind, step=self.step + 1, train_index=k)):
                self.sampler.exclude([k])
                added = True
                log.warning("quarantined record %s (%s#%s, %s): %s", rec.uid, rec.source, rec.index, kind, msg)
        if added:
            self.quarantine.write()

    def judge_metrics(self) -> dict[str, float]:
        """Judge counters (calls, retries, failures by reason, cache hits, flagged injections, cost), summed."""
        per = self.judges.broadcast("stats", timeout_s=self.cfg.ray.get_timeout_s)
        out: dict[str, float] = {}
        for d in per:
            for k, v in d.items():
                out[k] = out.get(k, 0.0) + v
        return out

    def sync_weights(self) -> dict[str, float]:
        """The learner's weights to every engine: from rank 0 in the split layout (syncer.py: broadcast or object
        store), from each rank to the engine on its GPU when colocated (handover_sync.py)."""
        return self.syncer.sync()

    # ---- checkpoints --------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path | str:
        import ray

        if self.cfg.checkpoint.storage:  # every rank uploads its parts: medgrpo_ray/driver/cluster_checkpoint.py
            from medgrpo_ray.driver import cluster_checkpoint

            return cluster_checkpoint.save(self)

        from medgrpo_ray.checkpoint.local import atomic_write_dir, prune, step_dir_name, write_latest

        name = step_dir_name(self.step)

        def write(tmp: Path) -> None:
            ray.get([l.save.remote(str(tmp), self.cfg.checkpoint.export_hf) for l in self.learners],
                    timeout=self.cfg.ray.get_timeout_s)
            self.write_driver_files(tmp)

        path = atomic_write_dir(self.ckpt_root / name, write)
        write_latest(self.ckpt_root, name)
        prune(self.ckpt_root, self.cfg.checkpoint.keep_last)
        log.info("checkpoint: %s", path)
        return path

    def write_driver_files(self, d: Path) -> None:
        """The driver's part of a checkpoint into directory `d`: driver_state.json, rng.pt, config.yaml (redacted)
        and, with a rollout ahead, pending_rollout.json (its finished groups)."""
        import torch

        from medgrpo_ray.checkpoint.local import capture_rng
        from medgrpo_ray.config.loader import to_redacted_yaml

        (d / "driver_state.json").write_text(json.dumps(self.driver_state(), indent=1))
        torch.save(capture_rng(), d / "rng.pt")
        (d / "config.yaml").write_text(to_redacted_yaml(self.cfg))
        if self.ahead.ready is not None:  # the next step's finished rollout: resumed, not generated again
            (d / PENDING_FILE).write_text(json.dumps(self.ahead.ready.to_json()))

    def read_driver_files(self, d: Path) -> None:
        """Restore what write_driver_files wrote (the driver state, the RNGs, the rollout ahead if one was)."""
        import torch

        from medgrpo_ray.checkpoint.local import restore_rng

        self.load_driver_state(json.loads((d / "driver_state.json").read_text()))
        restore_rng(torch.load(d / "rng.pt", weights_only=False))
        pending = d / PENDING_FILE
        self.ahead.ready = Batch.from_json(json.loads(pending.read_text()), self.records) if pending.is_file() else None

    def driver_state(self) -> dict:
        """The driver's part of a checkpoint (JSON): step, data order, normalizer, quarantine."""
        return {"step": self.step, "sampler": self.sampler.state_dict(), "normalizer": self.normalizer.state_dict(),
                "quarantine": self.quarantine.state_dict(), "failed_steps_in_row": self.failed_steps_in_row}

    def load_driver_state(self, state: dict) -> None:
        self.step = int(state["step"])
        self.sampler.load_state_dict(state["sampler"])
        self.normalizer.load_state_dict(state["normalizer"])
        self.quarantine.load_state_dict(state.get("quarantine", []))
        self.sampler.exclude(self.quarantine.indices)
        self.quarantine.write()
        self.failed_steps_in_row = int(state.get("failed_steps_in_row", 0))

    def load_checkpoint(self, path: Path | str) -> None:
        import ray

        if self.cfg.checkpoint.storage:
            from medgrpo_ray.driver import cluster_checkpoint

            cluster_checkpoint.load(self, str(path))
            self.sync_weights()
            log.info("resumed from %s at step %d", str(path).split("?", 1)[0], self.step)
            return
        if not (path / "driver_state.json").is_file():
            raise FileNotFoundError(f"{path}: no driver_state.json: not a checkpoint directory")
        ray.get([l.load.remote(str(path)) for l in self.learners], timeout=self.cfg.ray.get_timeout_s)
        self.read_driver_files(path)
        self.sync_weights()
        log.info("resumed from %s at step %d", path, self.step)
