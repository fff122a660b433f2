"""Building the run's actor groups on Ray: rollout, reward, judge and reference pools, and the learner group.

The driver (trainer.py) owns the loop; this module owns where each actor runs, with which resources, restart
policy and environment (docs/architecture.md, "What runs where"). The judge's API key reaches only the judge
actors, through their environment; it is never logged or saved. The rollout pool alone (`build_rollout_pool`)
is also what inference over a split runs on.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("medgrpo_ray.driver.actor_groups")


@dataclass
class ActorGroups:
    rollout: Any  # WorkerPool of RolloutWorker
    rewards: Any  # WorkerPool of RewardWorker
    references: Any  # WorkerPool of ReferenceWorker, or None (colocated reference / no KL)
    judges: Any  # WorkerPool of JudgeWorker, or None (judge disabled)
    learners: list  # PolicyLearnerActor handles, rank order


def _judge_secret(cfg) -> dict[str, str]:
    key = cfg.judge.api_key_env
    if key and key not in os.environ:
        raise ValueError(f"judge.enabled=true but the environment variable {key} (judge.api_key_env) is not "
                         "set; export the API key under that name, or set judge.api_key_env='' for a server "
                         "that needs none")
    return {key: os.environ[key]} if key else {}


def build_rollout_pool(cfg, model_dir: str, run: str, wait: bool = True):
    """The rollout pool: `rollout.num_workers` RolloutWorker actors named `<run>-rollout-<i>`, restarted by Ray
    (`ray.max_restarts`) but never retried by it (max_task_retries=0: a call whose actor died is re-sent by the
    caller, `WorkerPool.map` / `stream_chunks`, which decides what is re-sent and how). Training and inference
    both build it here. With `wait`, returns once every worker is ready (`ray.init_timeout_s`)."""
    from actors.rollout_worker import RolloutWorker
    from medgrpo_ray.driver.cluster import WorkerPool, actor_options

    r, ray_cfg = cfg.rollout, cfg.ray
    pool = WorkerPool(
        lambda i: RolloutWorker.options(**actor_options(cfg, f"{run}-rollout-{i}", threads=r.threads_per_worker,
                                        num_cpus=r.num_cpus_per_worker,
                                        num_gpus=r.num_gpus_per_worker, max_restarts=ray_cfg.max_restarts,
                                        max_task_retries=0)).remote(cfg, model_dir, f"rollout-{i}"),
        r.num_workers, "rollout", ray_cfg.get_timeout_s)
    if wait:
        wait_rollout_ready(cfg, pool)
    return pool


def wait_rollout_ready(cfg, pool) -> None:
    """Block until every worker of the rollout pool has loaded its engine (`ray.init_timeout_s`)."""
    from medgrpo_ray.driver.cluster import wait_ready

    wait_ready([w.ready.remote() for w in pool.workers], cfg.ray.init_timeout_s, "rollout workers")


def build_actor_groups(cfg, model_dir: str, run: str) -> ActorGroups:
    """Create every actor of the run and wait until each group is ready (timeouts from `ray:`)."""
    from actors.reward_worker import RewardWorker
    from medgrpo_ray.driver.cluster import WorkerPool, actor_options
    from medgrpo_ray.driver.placement import learner_strategy

    lc, ray_cfg = cfg.learner, cfg.ray
    colocated = cfg.placement == "colocated"
    # Before any actor starts: a learner group the cluster can never hold stops here, naming the settings.
    cpus, gpus = colocated_bundle(cfg) if colocated else (lc.num_cpus_per_rank, lc.num_gpus_per_rank)
    strategy = learner_strategy(lc.num_ranks, cpus, gpus, node_resources())
    if not colocated:
        rollout = build_rollout_pool(cfg, model_dir, run, wait=False)  # engines load while the learners set up
    rewards = WorkerPool(
        lambda i: RewardWorker.options(**actor_options(cfg, f"{run}-reward-{i}", num_cpus=0,
                                       max_restarts=ray_cfg.max_restarts, max_task_retries=2)
                                       ).remote(cfg.reward.format_weight),
        cfg.reward.num_workers, "reward", ray_cfg.get_timeout_s)
    references = None
    if lc.reference == "separate" and cfg.algorithm.kl_coef > 0:
        from actors.reference_worker import ReferenceWorker

        references = WorkerPool(
            lambda i: ReferenceWorker.options(**actor_options(
                cfg, f"{run}-reference-{i}", num_cpus=lc.num_cpus_per_rank, num_gpus=lc.num_gpus_per_rank,
                max_restarts=ray_cfg.max_restarts, max_task_retries=2)).remote(cfg, model_dir),
            lc.reference_workers, "reference", ray_cfg.get_timeout_s)
    judges = None
    if cfg.judge.enabled:
        from actors.judge_worker import JudgeWorker

        secret = _judge_secret(cfg)

        def make_judge(i):
            opts = actor_options(cfg, f"{run}-judge-{i}", num_cpus=0, max_restarts=ray_cfg.max_restarts,
                                 max_task_retries=2)
            opts["runtime_env"]["env_vars"].update(secret)
            return JudgeWorker.options(**opts).remote(cfg)

        judges = WorkerPool(make_judge, cfg.judge.num_workers, "judge", ray_cfg.get_timeout_s)
    if colocated:
        learners, rollout = build_colocated(cfg, model_dir, run, strategy)
    else:
        learners = build_learner_group(cfg, model_dir, run, strategy)
    wait_rollout_ready(cfg, rollout)
    return ActorGroups(rollout=rollout, rewards=rewards, references=references, judges=judges, learners=learners)


def node_resources() -> list[tuple[float, float]]:
    """(CPUs, GPUs) of every live node of the connected cluster, in all (not what is free now)."""
    import ray

    return [(float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)))
            for n in ray.nodes() if n.get("Alive")]


def colocated_bundle(cfg) -> tuple[float, float]:
    """(CPUs, GPUs) of one colocated bundle: a learner rank's CPUs plus its engine's, and its one GPU (or none)."""
    return (cfg.learner.num_cpus_per_rank + cfg.rollout.num_cpus_per_worker,
            1.0 if cfg.learner.num_gpus_per_rank else 0.0)


def build_colocated(cfg, model_dir: str, run: str, strategy: str):
    """placement=colocated: one placement group of `learner.num_ranks` bundles, each holding a learner rank
    (1 - rollout.gpu_fraction of the bundle's GPU) and its engine (rollout.gpu_fraction), so rank r's engine is
    on rank r's GPU (the hand-over needs it there: handover_sync.py). Ranks are ordered as in the split layout,
    then each engine goes to its rank's bundle, and is restarted there by Ray. Under rollout.colocated_memory=
    sleep the engines load and go to sleep before DeepSpeed allocates on the GPUs. Returns (learners in rank
    order, the rollout pool with worker r beside rank r)."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from actors.learner import PolicyLearnerActor
    from actors.rollout_worker import RolloutWorker
    from medgrpo_ray.driver.cluster import WorkerPool, actor_options, bundles_by_node, wait_ready
    from medgrpo_ray.driver.placement import rank_order

    lc, r, ray_cfg = cfg.learner, cfg.rollout, cfg.ray
    cpus, gpus = colocated_bundle(cfg)
    bundle = {"CPU": cpus, "GPU": gpus} if gpus else {"CPU": cpus}
    pg = ray.util.placement_group([bundle] * lc.num_ranks, strategy=strategy)
    wait_ready([pg.ready()], ray_cfg.placement_timeout_s, f"colocated placement group ({strategy})")
    bundles = bundles_by_node(pg)
    at = lambda b: PlacementGroupSchedulingStrategy(pg, b)  # noqa: E731
    actors = [PolicyLearnerActor.options(**actor_options(
        cfg, f"{run}-learner-{i}", num_cpus=lc.num_cpus_per_rank, num_gpus=gpus * (1 - r.gpu_fraction),
        max_restarts=0, scheduling_strategy=at(bundles[i]))).remote(cfg, model_dir, lc.num_ranks, f"learner-{i}")
        for i in range(lc.num_ranks)]
    where = wait_ready([a.placement.remote() for a in actors], ray_cfg.init_timeout_s, "learner actors")
    order = rank_order([(w["node"], w["gpus"]) for w in where])
    learners = [actors[i] for i in order]
    rollout = WorkerPool(
        lambda k: RolloutWorker.options(**actor_options(
            cfg, f"{run}-rollout-{k}", threads=r.threads_per_worker, num_cpus=r.num_cpus_per_worker,
            num_gpus=gpus * r.gpu_fraction, max_restarts=ray_cfg.max_restarts, max_task_retries=0,
            scheduling_strategy=at(bundles[order[k]]))).remote(cfg, model_dir, f"rollout-{k}"),
        lc.num_ranks, "rollout", ray_cfg.get_timeout_s)
    for rank, i in enumerate(order):
        log.info("colocated bundle %d: learner rank %d and rollout-%d on node %s, GPU(s) %s", bundles[i], rank, rank,
                 where[i]["ip"], ",".join(where[i]["gpus"]) or "none")
    if r.colocated_memory == "sleep":  # each engine sleeps once loaded (actors/rollout_worker.py)
        wait_rollout_ready(cfg, rollout)
    addr, port = ray.get(learners[0].address.remote(), timeout=ray_cfg.init_timeout_s)
    wait_ready([l.setup.remote(rank, addr, port) for rank, l in enumerate(learners)], ray_cfg.init_timeout_s,
               "learner group")
    return learners, rollout


def build_learner_group(cfg, model_dir: str, run: str, strategy: str) -> list:
    """The learner ranks in one placement group (`strategy` from driver/placement.py: STRICT_PACK when one node
    holds them all), ranks assigned by (node, physical GPU id) once each actor reports where it landed, then
    DeepSpeed set up. Returns the handles in rank order. An actor's name carries its creation index (bundles in
    node order); the rank each got is logged."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from actors.learner import PolicyLearnerActor
    from medgrpo_ray.driver.cluster import actor_options, bundles_by_node, wait_ready
    from medgrpo_ray.driver.placement import rank_order

    lc, ray_cfg = cfg.learner, cfg.ray
    bundle = {"CPU": lc.num_cpus_per_rank, "GPU": lc.num_gpus_per_rank} if lc.num_gpus_per_rank else {"CPU": lc.num_cpus_per_rank}
    pg = ray.util.placement_group([bundle] * lc.num_ranks, strategy=strategy)
    wait_ready([pg.ready()], ray_cfg.placement_timeout_s, f"learner placement group ({strategy})")
    bundles = bundles_by_node(pg)
    actors = [
        PolicyLearnerActor.options(**actor_options(
            cfg, f"{run}-learner-{i}", num_cpus=lc.num_cpus_per_rank, num_gpus=lc.num_gpus_per_rank, max_restarts=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, bundles[i]))
        ).remote(cfg, model_dir, lc.num_ranks, f"learner-{i}")
        for i in range(lc.num_ranks)
    ]
    where = wait_ready([a.placement.remote() for a in actors], ray_cfg.init_timeout_s, "learner actors")
    order = rank_order([(w["node"], w["gpus"]) for w in where])
    learners = [actors[i] for i in order]
    for rank, i in enumerate(order):
        log.info("learner rank %d: %s-learner-%d on node %s, GPU(s) %s", rank, run, i, where[i]["ip"],
                 ",".join(where[i]["gpus"]) or "none")
    addr, port = ray.get(learners[0].address.remote(), timeout=ray_cfg.init_timeout_s)
    wait_ready([l.setup.remote(rank, addr, port) for rank, l in enumerate(learners)], ray_cfg.init_timeout_s,
               "learner group")
    return learners
