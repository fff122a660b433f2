"""The run's actor groups from the settings, and where Ray would put them on a cluster's nodes. Pure.

Placement mirrors driver/actor_groups.py: rollout, reward, reference and judge actors are placed one by one on
the first node with the free CPUs/GPUs (Ray's default scheduling, simplified), then the learner ranks as one
placement group packed onto as few nodes as the free resources allow. It is an estimate of Ray's choice: the
totals are exact, the node of each actor is what a quiet cluster would most likely do.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

EPS = 1e-9


@dataclass(frozen=True)
class Node:
    name: str
    cpus: float
    gpus: float
    gpu_memory: Optional[float] = None  # bytes per GPU, when known
    gpu_type: str = ""


@dataclass(frozen=True)
class Cluster:
    nodes: tuple
    description: str  # what it is and whether it is assumed, printed first


@dataclass(frozen=True)
class ActorGroup:
    name: str
    count: int
    cpus: float  # each
    gpus: float  # each
    placement: str  # how Ray places it, in words
    role: str = ""


@dataclass
class Placement:
    group: ActorGroup
    nodes: list = field(default_factory=list)  # node name per actor, None where none had room


def actor_groups(cfg: Any) -> list[ActorGroup]:
    """Every actor group the run creates, in the order driver/actor_groups.py creates them."""
    r, lc = cfg.rollout, cfg.learner
    if cfg.placement == "colocated":
        return _colocated_groups(cfg)
    groups = [ActorGroup("rollout", r.num_workers, r.num_cpus_per_worker, r.num_gpus_per_worker,
                         "first node with room", "vLLM engine" if r.backend == "vllm" else "HF generate"),
              ActorGroup("reward", cfg.reward.num_workers, 0.0, 0.0, "anywhere (0 CPUs)", "rule-based rewards")]
    if lc.reference == "separate" and cfg.algorithm.kl_coef > 0:
        groups.append(ActorGroup("reference", lc.reference_workers, lc.num_cpus_per_rank, lc.num_gpus_per_rank,
                                 "first node with room", "frozen reference model"))
    if cfg.judge.enabled:
        groups.append(ActorGroup("judge", cfg.judge.num_workers, 0.0, 0.0, "anywhere (0 CPUs)", "LLM judge client"))
    groups.append(ActorGroup("learner", lc.num_ranks, lc.num_cpus_per_rank, lc.num_gpus_per_rank,
                             "one placement group: STRICT_PACK where one node holds every rank, else PACK", f"DeepSpeed ZeRO-{lc.zero_stage} rank"))
    return groups


def _colocated_groups(cfg: Any) -> list[ActorGroup]:
    """placement=colocated: the learner ranks' placement group holds each rank's engine too (one bundle per GPU)."""
    r, lc = cfg.rollout, cfg.learner
    gpu = 1.0 if lc.num_gpus_per_rank else 0.0
    groups = [ActorGroup("reward", cfg.reward.num_workers, 0.0, 0.0, "anywhere (0 CPUs)", "rule-based rewards")]
    if lc.reference == "separate" and cfg.algorithm.kl_coef > 0:
        groups.append(ActorGroup("reference", lc.reference_workers, lc.num_cpus_per_rank, lc.num_gpus_per_rank,
                                 "first node with room", "frozen reference model"))
    if cfg.judge.enabled:
        groups.append(ActorGroup("judge", cfg.judge.num_workers, 0.0, 0.0, "anywhere (0 CPUs)", "LLM judge client"))
    groups.append(ActorGroup("learner", lc.num_ranks, lc.num_cpus_per_rank + r.num_cpus_per_worker, gpu,
                             "one placement group, one bundle per GPU: STRICT_PACK where one node holds every bundle, "
                             "else PACK", f"ZeRO-{lc.zero_stage} rank + vLLM engine, GPU share "
                             f"{1 - r.gpu_fraction:g}/{r.gpu_fraction:g}"))
    return groups


def _fits(free: dict, node: str, g: ActorGroup) -> bool:
    cpus, gpus = free[node]
    return cpus + EPS >= g.cpus and gpus + EPS >= g.gpus


def _take(free: dict, node: str, g: ActorGroup) -> None:
    cpus, gpus = free[node]
    free[node] = (cpus - g.cpus, gpus - g.gpus)


def place(groups: list[ActorGroup], cluster: Cluster) -> list[Placement]:
    """Each group's actors assigned to nodes (None where no node has room left)."""
    free = {n.name: (n.cpus, n.gpus) for n in cluster.nodes}
    order = [n.name for n in cluster.nodes]
    out = []
    for g in groups:
        placed = Placement(g)
        if g.name == "learner":
            # PACK: the node that holds the most bundles first, then the next, ...
            remaining = g.count
            while remaining:
                best, best_n = None, 0
                for name in order:
                    cpus, gpus = free[name]
                    n = remaining
                    if g.cpus > 0:
                        n = min(n, int((cpus + EPS) // g.cpus))
                    if g.gpus > 0:
                        n = min(n, int((gpus + EPS) // g.gpus))
                    if n > best_n:
                        best, best_n = name, n
                if best is None:
                    placed.nodes += [None] * remaining
                    break
                for _ in range(best_n):
                    _take(free, best, g)
                placed.nodes += [best] * best_n
                remaining -= best_n
        else:
            for _ in range(g.count):
                node = next((name for name in order if _fits(free, name, g)), None)
                if node is not None:
                    _take(free, node, g)
                placed.nodes.append(node)
        out.append(placed)
    return out


def totals(groups: list[ActorGroup]) -> tuple[float, float]:
    """CPUs and GPUs the run reserves in all."""
    return (sum(g.count * g.cpus for g in groups), sum(g.count * g.gpus for g in groups))
