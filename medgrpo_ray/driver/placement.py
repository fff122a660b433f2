"""Where the learner group goes: the placement strategy from the cluster's nodes, and the rank order from where
each rank landed. Pure (driver/actor_groups.py reads the cluster and the actors and calls these).

- STRICT_PACK when one node can hold every rank (`learner.num_ranks` x the rank's GPUs and CPUs), so a ZeRO group
  never spans nodes by accident on a busy cluster; PACK (as few nodes as possible) when none can; an error naming
  the settings when the whole cluster cannot hold the group at all.
- Ranks by (node, physical GPU id): consecutive ranks share a node, and within a node follow the GPUs' order, which
  is the order NCCL's topology search and the NVLS collectives assume (NVIDIA/nccl#1906).
"""
from __future__ import annotations

import math
from typing import Sequence

from medgrpo_ray.config.devices import sorted_gpu_ids

EPS = 1e-9


def ranks_per_node(cpus: float, gpus: float, cpus_per_rank: float, gpus_per_rank: float) -> int:
    """How many learner ranks one node with `cpus` CPUs and `gpus` GPUs holds."""
    fit = math.inf
    if cpus_per_rank > 0:
        fit = min(fit, math.floor((cpus + EPS) / cpus_per_rank))
    if gpus_per_rank > 0:
        fit = min(fit, math.floor((gpus + EPS) / gpus_per_rank))
    return int(fit) if fit != math.inf else 1 << 30


def learner_strategy(num_ranks: int, cpus_per_rank: float, gpus_per_rank: float,
                     nodes: Sequence[tuple[float, float]]) -> str:
    """STRICT_PACK or PACK for `num_ranks` bundles on nodes of (CPUs, GPUs) in all; ValueError if they never fit."""
    fits = [ranks_per_node(c, g, cpus_per_rank, gpus_per_rank) for c, g in nodes]
    if any(f >= num_ranks for f in fits):
        return "STRICT_PACK"
    if sum(fits) >= num_ranks:
        return "PACK"
    held = ", ".join(f"{c:g} CPUs/{g:g} GPUs" for c, g in nodes) or "none"
    raise ValueError(f"learner.num_ranks={num_ranks} cannot be placed: each rank needs "
                     f"learner.num_gpus_per_rank={gpus_per_rank:g} GPU(s) and learner.num_cpus_per_rank="
                     f"{cpus_per_rank:g} CPU(s), and the cluster's nodes ({held}) hold {sum(fits)} such rank(s) in "
                     "all; lower learner.num_ranks or the per-rank resources, or add nodes")


def rank_order(placements: Sequence[tuple[str, Sequence]]) -> list[int]:
    """Indices of the learner actors in rank order, from each actor's (node id, Ray GPU ids): by node, then by
    its lowest physical GPU id, then by creation order (CPU ranks keep their bundle order within a node)."""
    def key(i: int):
        node, gpus = placements[i]
        ids = sorted_gpu_ids(gpus)
        first = (0, int(ids[0]), "") if ids and ids[0].isdigit() else (1, 0, ids[0] if ids else "")
        return (node, first, i)

    return sorted(range(len(placements)), key=key)
