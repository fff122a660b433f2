"""The GRPO driver: owns the loop, the sampler, normalization, advantages, weight sync and checkpoints.

One step: draw prompts balanced over (dataset, task) -> rollout workers (each prompt's G samples on one worker)
-> reward workers -> logistic normalization -> group-relative advantages (zero-variance groups dropped by
variance) -> learner group update -> weights from learner rank 0 to every rollout worker by object reference ->
metrics -> checkpoint every N steps. See docs/architecture.md and docs/failure_policy.md.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from medgrpo_ray.tasks import CAPTION_TASKS, canonical_dataset, canonical_task

log = logging.getLogger("medgrpo_ray.trainer")


def combine_caption_reward(rule, judged):
    """A caption task's training reward from the rule-based result and the judge+similarity result.

    video_summary / region_caption have no rule-based part ("needs judge"): the caption reward is the reward.
    dense_captioning: the mean of localization F1 and caption quality; if either is missing, the reward is missing
    too (with both reasons), since half a reward would not be comparable across samples of the group."""
    from medgrpo_ray.rewards.types import RewardResult

    from medgrpo_ray.rewards import NEEDS_JUDGE

    if rule.value is None and rule.reason == NEEDS_JUDGE:
        return judged
    if rule.value is None or judged.value is None:
        return RewardResult(None, f"localization: {rule.reason}; captions: {judged.reason}", {})
    value = 0.5 * rule.value + 0.5 * judged.value
    return RewardResult(value, "ok", {"localization_f1": rule.value, "caption_quality": judged.value})


def select_records(records, tasks, datasets):
    """Records of the configured tasks and datasets (dataset names in any published spelling)."""
    wanted = {canonical_dataset(x) for x in datasets}
    return [r for r in records if (not tasks or r.task in tasks) and (not wanted or r.dataset in wanted)]


def _seed_for(seed: int, step: int, index: int) -> int:
    return (seed * 1_000_003 + step * 10_007 + index) % (2**31 - 1)


class Trainer:
    def __init__(self, cfg, run_dir: str | os.PathLike) -> None:
        from medgrpo_ray.normalization import RewardNormalizer, load_stats

        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.records, self.video_root = self._load_train_records()
        n = cfg.normalization
        stats = load_stats(n.stats_path) if n.stats_path else {}
        self.normalizer = RewardNormalizer(stats, k=n.k, iqr_floor=n.iqr_floor, warmup_count=n.warmup_count,
                                           missing_policy=n.missing_policy)
        from medgrpo_ray.sampler import BalancedSampler

        self.test_records = self._load_test_records() if cfg.algorithm.eval_every else []

        self.sampler = BalancedSampler([(r.dataset, r.task) for r in self.records], seed=cfg.seed)
        self.step = 0
        self.weights_ref, self.weights_version = None, 0
        self.last_rollouts: list[dict] = []

    # ---- data -------------------------------------------------------------------------------------------------
    def _read_split(self, path: str, what: str, empty_hint: str) -> list:
        """Records of one split file, malformed ones handled per data.on_bad_record, filtered to the configured
        tasks and datasets; raises ValueError when none are left."""
        from medgrpo_ray.data.records_io import load_records

        d = self.cfg.data
        records, report = load_records(path, on_bad=d.on_bad_record)
        if report.skipped:
            log.warning("%s data: %s", what, report.summary())
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
            syn = Path(d.synthetic_dir).expanduser()
            if not (syn / "manifest.json").is_file():
                from medgrpo_ray.data.synthetic import generate

                log.info("generating the synthetic benchmark in %s", syn)
                generate(syn, seed=d.synthetic_seed, n_train=d.synthetic_records, n_test=max(8, d.synthetic_records // 2))
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
        from medgrpo_ray.cluster import split
        from medgrpo_ray.evaluation import evaluate
        from medgrpo_ray.rollout.types import RolloutItem

        t0 = time.perf_counter()
        items = [RolloutItem(group_id=i, record=r.to_dict(), greedy=True) for i, r in enumerate(self.test_records)]
        groups = self.rollout.map("rollout", split(items, len(self.rollout.workers)), key=lambda g: g.group_id)
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

        import ray

        from actors.learner import PolicyLearnerActor
        from actors.reward_worker import RewardWorker
        from actors.rollout_worker import RolloutWorker
        from medgrpo_ray.cluster import WorkerPool, actor_options, bundles_by_node, init_ray, wait_ready
        from medgrpo_ray.models.loading import resolve_model_path

        cfg = dataclasses.replace(self.cfg, data=dataclasses.replace(self.cfg.data, video_root=self.video_root))
        self.cfg = cfg
        where = init_ray(cfg)
        log.info("ray: %s", where)
        model_dir = resolve_model_path(cfg.model.path, cfg.model.cache_dir, cfg.model.tiny_seed)
        run = cfg.run_name or self.run_dir.name
        r, lc, ray_cfg = cfg.rollout, cfg.learner, cfg.ray
        self.rollout = WorkerPool(
            lambda i: RolloutWorker.options(**actor_options(cfg, f"{run}-rollout-{i}", num_cpus=r.num_cpus_per_worker,
                                            num_gpus=r.num_gpus_per_worker, max_restarts=ray_cfg.max_restarts,
                                            max_task_retries=0)).remote(cfg, model_dir, f"rollout-{i}"),
            r.num_workers, "rollout", ray_cfg.get_timeout_s)
        self.rewards = WorkerPool(
            lambda i: RewardWorker.options(**actor_options(cfg, f"{run}-reward-{i}", num_cpus=0,
                                           max_restarts=ray_cfg.max_restarts, max_task_retries=2)
                                           ).remote(cfg.reward.format_weight),
            cfg.reward.num_workers, "reward", ray_cfg.get_timeout_s)
        self.references = None
        if cfg.learner.reference == "separate" and cfg.algorithm.kl_coef > 0:
            from actors.reference_worker import ReferenceWorker

            self.references = WorkerPool(
                lambda i: ReferenceWorker.options(**actor_options(
                    cfg, f"{run}-reference-{i}", num_cpus=lc.num_cpus_per_rank, num_gpus=lc.num_gpus_per_rank,
                    max_restarts=ray_cfg.max_restarts, max_task_retries=2)).remote(cfg, model_dir),
                lc.reference_workers, "reference", ray_cfg.get_timeout_s)
        self.judges = None
        if cfg.judge.enabled:
            from actors.judge_worker import JudgeWorker

            key = cfg.judge.api_key_env
            if key and key not in os.environ:
                raise ValueError(f"judge.enabled=true but the environment variable {key} (judge.api_key_env) is not "
                                 "set; export the API key under that name, or set judge.api_key_env='' for a server "
                                 "that needs none")
            # The key reaches only the judge actors, through their environment; it is never logged or saved.
            secret = {key: os.environ[key]} if key else {}

            def make_judge(i):
                opts = actor_options(cfg, f"{run}-judge-{i}", num_cpus=0, max_restarts=ray_cfg.max_restarts,
                                     max_task_retries=2)
                opts["runtime_env"]["env_vars"].update(secret)
                return JudgeWorker.options(**opts).remote(cfg)

            self.judges = WorkerPool(make_judge, cfg.judge.num_workers, "judge", ray_cfg.get_timeout_s)
        pg = ray.util.placement_group([{"CPU": lc.num_cpus_per_rank, "GPU": lc.num_gpus_per_rank} if lc.num_gpus_per_rank
                                       else {"CPU": lc.num_cpus_per_rank}] * lc.num_ranks, strategy="PACK")
        wait_ready([pg.ready()], ray_cfg.placement_timeout_s, "learner placement group")
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        bundles = bundles_by_node(pg)
        self.learners = [
            PolicyLearnerActor.options(**actor_options(
                cfg, f"{run}-learner-{i}", num_cpus=lc.num_cpus_per_rank, num_gpus=lc.num_gpus_per_rank, max_restarts=0,
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, bundles[i]))).remote(cfg, model_dir, i, lc.num_ranks, f"learner-{i}")
            for i in range(lc.num_ranks)
        ]
        addr, port = ray.get(self.learners[0].address.remote(), timeout=ray_cfg.init_timeout_s)
        wait_ready([l.setup.remote(addr, port) for l in self.learners], ray_cfg.init_timeout_s, "learner group")
        wait_ready([w.ready.remote() for w in self.rollout.workers], ray_cfg.init_timeout_s, "rollout workers")

    def stop(self) -> None:
        import ray

        try:
            ray.get([l.shutdown.remote() for l in self.learners], timeout=60)
        except Exception as err:  # noqa: BLE001 - best effort at exit
            log.warning("learner shutdown: %s", err)

    # ---- one step -----------------------------------------------------------------------------------------------
    def rollout_step(self, items):
        """{group_id: RolloutGroup}: the items split over the rollout workers, each prompt's G samples on one."""
        from medgrpo_ray.cluster import split

        return self.rollout.map("rollout", split(items, len(self.rollout.workers)), key=lambda g: g.group_id)

    def score(self, items, records, groups) -> dict:
        """RewardResult per sample id "<group>:<index>", from the reward pool (re-sent chunks deduplicated).
        `records` are the items' parsed VideoRecords, in order."""
        from medgrpo_ray.cluster import split

        jobs = []
        for it, record in zip(items, records):
            rec = record.to_eval_dict()
            jobs.extend((rec, c.text, f"{it.group_id}:{j}") for j, c in enumerate(groups[it.group_id].completions))
        if not jobs:
            return {}
        pairs = self.rewards.map("score", split(jobs, len(self.rewards.workers)), key=lambda pair: pair[0])
        scored = {sid: res for sid, (_, res) in pairs.items()}
        captions = [j for j in jobs if canonical_task(j[0]["qa_type"]) in CAPTION_TASKS]
        if self.judges is not None and captions:
            judged = self.judges.map("score", split(captions, len(self.judges.workers)), key=lambda pair: pair[0])
            for sid, (_, res) in judged.items():
                scored[sid] = combine_caption_reward(scored[sid], res)
        return scored

    def train_one_step(self) -> dict:
        import ray

        from medgrpo_ray.cluster import split
        from medgrpo_ray.grpo.advantages import group_advantages
        from medgrpo_ray.grpo.batch import TrainSample, shard_samples
        from medgrpo_ray.metrics import reward_metrics
        from medgrpo_ray.rollout.types import RolloutItem

        cfg, a = self.cfg, self.cfg.algorithm
        t_step = time.perf_counter()
        idx = self.sampler.next_batch(a.prompts_per_step)
        items = [RolloutItem(group_id=self.step * a.prompts_per_step + i, record=self.records[k].to_dict(),
                             seed=_seed_for(cfg.seed, self.step, i)) for i, k in enumerate(idx)]
        t0 = time.perf_counter()
        m_resynced = self.ensure_rollout_weights()
        groups = self.rollout_step(items)
        t_rollout = time.perf_counter() - t0
        t0 = time.perf_counter()
        scored = self.score(items, [self.records[k] for k in idx], groups)
        t_reward = time.perf_counter() - t0

        rows, rewards, gids, samples = [], [], [], []
        self.last_rollouts = []  # per-sample log lines of this step (train_loop writes them)
        failed_groups = 0
        for it, k in zip(items, idx):
            rec, g = self.records[k], groups[it.group_id]
            if g.error:
                failed_groups += 1
                continue
            weight = getattr(cfg.reward, rec.task).weight if getattr(cfg.reward, rec.task).enabled else None
            for j, c in enumerate(g.completions):
                res = scored[f"{it.group_id}:{j}"]
                raw = res.value if weight is not None else None
                norm = None
                if raw is not None:
                    norm = self.normalizer.normalize(rec.dataset, rec.task, raw) if cfg.normalization.enabled else raw
                    norm *= weight
                rows.append((rec.dataset, rec.task, raw, norm))
                self.last_rollouts.append({"group": it.group_id, "dataset": rec.dataset, "task": rec.task,
                                           "raw_reward": raw, "reason": res.reason, "completion": c.text})
                rewards.append(np.nan if norm is None else norm)
                gids.append(it.group_id)
                samples.append(TrainSample(group_id=it.group_id, record=it.record, completion_ids=c.token_ids,
                                           advantage=0.0, rollout_logprobs=c.logprobs, dataset=rec.dataset, task=rec.task))
        m = reward_metrics(rows)
        if self.judges is not None:
            m.update(self.judge_metrics())
        m["rollout/failed_groups"] = failed_groups
        m["rollout/workers_resynced"] = m_resynced
        m["rollout/worker_failures"] = self.rollout.failures
        ok_groups = [g for g in groups.values() if not g.error]
        m["rollout/visual_tokens_mean"] = float(np.mean([g.visual_tokens for g in ok_groups])) if ok_groups else 0.0
        m["rollout/completion_tokens_mean"] = float(np.mean([len(s.completion_ids) for s in samples])) if samples else 0.0
        adv = group_advantages(np.asarray(rewards, dtype=np.float64), np.asarray(gids), eps=a.adv_eps,
                               zero_variance_threshold=a.zero_variance_threshold)
        keep = []
        zero_var = set(int(g) for g in adv.zero_variance_groups)
        for s, av, ok, r in zip(samples, adv.advantages, adv.valid, rewards):
            if ok:
                s.advantage = float(av)
                keep.append(s)
            elif not a.drop_zero_variance_groups and s.group_id in zero_var and not np.isnan(r):
                s.advantage = 0.0
                keep.append(s)
        m["algorithm/zero_variance_groups"] = len(zero_var)
        m["algorithm/samples_trained"] = len(keep)
        t_learn = t_sync = 0.0
        if keep and self.references is not None:
            t0 = time.perf_counter()
            keyed = list(enumerate(keep))
            refs = self.references.map("logprobs", split(keyed, len(self.references.workers)), key=lambda kv: kv[0])
            for i, s in keyed:
                s.ref_logprobs = refs[i][1]
            m["timing_s/reference"] = time.perf_counter() - t0
        if keep:
            t0 = time.perf_counter()
            shards = shard_samples(keep, len(self.learners), cfg.learner.micro_batch_size)
            outs = ray.get([l.train_step.remote(sh) for l, sh in zip(self.learners, shards)], timeout=cfg.ray.get_timeout_s)
            t_learn = time.perf_counter() - t0
            tokens = sum(o["tokens"] for o in outs) or 1.0
            for key in ("loss", "pg_loss"):
                m[f"learner/{key}"] = sum(o[key] for o in outs)
            for key in ("kl", "clip_frac", "ratio_mean"):
                m[f"learner/{key}"] = sum(o[key] for o in outs) / tokens
            m["learner/ratio_max"] = max(o["ratio_max"] for o in outs)
            m["learner/grad_norm"] = outs[0]["grad_norm"]
            m["learner/lr"] = outs[0]["lr"]
            m["learner/rollout_logprob_gap_mean"] = sum(o["rollout_logprob_gap_sum"] for o in outs) / tokens
            m["learner/rollout_logprob_gap_max"] = max(o["rollout_logprob_gap_max"] for o in outs)
            if self.references is None:
                m["timing_s/reference"] = max(o["reference_s"] for o in outs)
            t0 = time.perf_counter()
            self.sync_weights()
            t_sync = time.perf_counter() - t0
        self.step += 1
        m.update({"timing_s/rollout": t_rollout, "timing_s/reward": t_reward, "timing_s/learner": t_learn,
                  "timing_s/weight_sync": t_sync})
        m["timing_s/step"] = time.perf_counter() - t_step
        m["timing_s/driver_overhead"] = m["timing_s/step"] - t_rollout - t_reward - t_learn - t_sync
        return m

    def judge_metrics(self) -> dict[str, float]:
        """Judge counters (calls, retries, failures by reason, cache hits, flagged injections, cost), summed."""
        per = self.judges.broadcast("stats", timeout_s=self.cfg.ray.get_timeout_s)
        out: dict[str, float] = {}
        for d in per:
            for k, v in d.items():
                out[k] = out.get(k, 0.0) + v
        return out

    def sync_weights(self) -> None:
        """Learner rank 0's weights to every rollout worker by object reference (never through the driver).
        Raises TimeoutError if the sync does not finish in ray.weight_sync_timeout_s."""
        import ray

        refs = [l.state_dict.remote() for l in self.learners]  # collective under ZeRO-3: every rank takes part
        self.weights_ref, self.weights_version = refs[0], self.weights_version + 1
        self._push_weights(self.rollout.workers, extra=refs[1:])

    def _push_weights(self, workers, extra=()) -> None:
        import ray

        retries = -1  # load_weights is idempotent: retried until the worker is back (bounded by the timeout)
        acks = [w.load_weights.options(max_task_retries=retries).remote(self.weights_ref, self.weights_version)
                for w in workers]
        try:
            ray.get(acks + list(extra), timeout=self.cfg.ray.weight_sync_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(f"weight sync did not finish within {self.cfg.ray.weight_sync_timeout_s:.0f} s "
                               "(ray.weight_sync_timeout_s)") from None

    def ensure_rollout_weights(self) -> int:
        """Re-send the latest weights to any rollout worker that restarted since the last sync; returns how many."""
        import ray

        if not self.weights_version:
            return 0
        retries = -1  # wait through a restart; bounded by the ray.get timeout below
        versions = ray.get([w.version.options(max_task_retries=retries).remote() for w in self.rollout.workers],
                           timeout=self.cfg.ray.init_timeout_s)
        stale = [w for w, v in zip(self.rollout.workers, versions) if v != self.weights_version]
        if stale:
            log.warning("%d rollout worker(s) restarted since the last sync; re-sending weights", len(stale))
            self._push_weights(stale)
        return len(stale)

    # ---- checkpoints --------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        import ray

        from medgrpo_ray.checkpoint import atomic_write_dir, capture_rng, prune, step_dir_name, write_latest
        from medgrpo_ray.config.loader import to_redacted_yaml

        name = step_dir_name(self.step)

        def write(tmp: Path) -> None:
            ray.get([l.save.remote(str(tmp), self.cfg.checkpoint.export_hf) for l in self.learners],
                    timeout=self.cfg.ray.get_timeout_s)
            state = {"step": self.step, "sampler": self.sampler.state_dict(),
                     "normalizer": self.normalizer.state_dict()}
            (tmp / "driver_state.json").write_text(json.dumps(state, indent=1))
            import torch

            torch.save(capture_rng(), tmp / "rng.pt")
            (tmp / "config.yaml").write_text(to_redacted_yaml(self.cfg))

        path = atomic_write_dir(self.ckpt_root / name, write)
        write_latest(self.ckpt_root, name)
        prune(self.ckpt_root, self.cfg.checkpoint.keep_last)
        log.info("checkpoint: %s", path)
        return path

    def load_checkpoint(self, path: Path) -> None:
        import ray
        import torch

        from medgrpo_ray.checkpoint import restore_rng

        state = json.loads((path / "driver_state.json").read_text())
        ray.get([l.load.remote(str(path)) for l in self.learners], timeout=self.cfg.ray.get_timeout_s)
        self.step = int(state["step"])
        self.sampler.load_state_dict(state["sampler"])
        self.normalizer.load_state_dict(state["normalizer"])
        restore_rng(torch.load(path / "rng.pt", weights_only=False))
        self.sync_weights()
        log.info("resumed from %s at step %d", path, self.step)
