"""Before a train or SFT run: the requirement check every launch runs, and `--dry-run`, the launch plan.

The plan connects to the cluster ray.address / RAY_ADDRESS names (as a driver: no worker starts), else describes
the local cluster the run would start, or, when the config asks for GPUs and this machine has none, an assumed
8-GPU node, and says which. It prints every actor group and where it goes, memory per GPU by part, and what does
not fit; exit 0 when everything fits, 1 when something does not (docs/launch_plan.md).
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Optional

ASSUMED_GPUS, ASSUMED_CPUS = 8, 96
GIB = 1024 ** 3
GPU_80GB_GIB = 79.6  # an H100 80GB reports 81,559 MiB
# GPU memory by Ray's accelerator_type resource (GiB, as the devices report it)
GPU_TYPE_GIB = {"H100": GPU_80GB_GIB, "H200": 140.4, "A100-80G": 80.0, "A100-40G": 40.0, "L40S": 45.0,
                "L4": 22.5, "A10G": 22.5, "T4": 15.0}


def _address(cfg: Any) -> str:
    return cfg.ray.address or os.environ.get("RAY_ADDRESS", "")


def requirements_met(cfg: Any) -> bool:
    """Print every setting this machine cannot honour (config/machine.py) and return whether there were none.
    CUDA is probed (torch) only when a setting needs it and the run would start its own local cluster."""
    from medgrpo_ray.config.machine import needs_cuda, requirement_problems

    cuda = None
    if needs_cuda(cfg) and not _address(cfg):
        from medgrpo_ray.planning.probe import cuda_available

        cuda = cuda_available()
    problems = requirement_problems(cfg, cuda=cuda)
    for p in problems:
        print(f"config error: {p}", file=sys.stderr)
    return not problems


def _connected_cluster(cfg: Any, address: str, gpu_gib: Optional[float]):
    import ray

    from medgrpo_ray.planning.cluster import Cluster, Node

    ray.init(address=address, namespace=cfg.ray.namespace, logging_level=logging.ERROR, log_to_driver=False)
    try:
        alive = [n for n in ray.nodes() if n.get("Alive")]
    finally:
        ray.shutdown()
    nodes = []
    for i, n in enumerate(alive):
        res = n.get("Resources", {})
        kind = next((k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:")), "")
        gib = gpu_gib or GPU_TYPE_GIB.get(kind)
        nodes.append(Node(f"node{i} ({n.get('NodeManagerAddress', '?')})", float(res.get("CPU", 0)),
                          float(res.get("GPU", 0)), gib * GIB if gib else None, kind))
    desc = (f"connected to {address}: {len(nodes)} node(s), {sum(n.cpus for n in nodes):g} CPUs, "
            f"{sum(n.gpus for n in nodes):g} GPUs (Ray's totals: what other jobs hold now is not subtracted)")
    return Cluster(tuple(nodes), desc)


def describe_cluster(cfg: Any, gpu_gib: Optional[float]):
    """(Cluster, cuda) for the plan: `cuda` is what the requirement check may assume of the actors' machine (None:
    not this machine's to say)."""
    from medgrpo_ray.config.machine import needs_cuda
    from medgrpo_ray.planning.cluster import Cluster, Node

    address = _address(cfg)
    if address:
        return _connected_cluster(cfg, address, gpu_gib), None
    cpus = float(cfg.ray.num_cpus or os.cpu_count() or 1)
    count, mem, name = (0, None, "")
    if needs_cuda(cfg):
        from medgrpo_ray.planning.probe import local_gpus

        count, mem, name = local_gpus()
        if count == 0 and cfg.ray.num_gpus is None:
            gib = gpu_gib or GPU_80GB_GIB
            cpus = float(cfg.ray.num_cpus or ASSUMED_CPUS)
            node = Node("node0", cpus, float(ASSUMED_GPUS), gib * GIB, "assumed")
            desc = (f"ASSUMED (not detected): one node with {ASSUMED_GPUS} GPUs x {gib:g} GiB "
                    f"({'--gpu-memory-gib' if gpu_gib else 'an 80 GB H100/A100'}) and {cpus:g} CPUs; this "
                    "machine has no CUDA GPU and ray.address / RAY_ADDRESS is unset (set RAY_ADDRESS to plan "
                    "against a running cluster, ray.num_gpus / ray.num_cpus / --gpu-memory-gib for another node)")
            return Cluster((node,), desc), None
    gpus = float(cfg.ray.num_gpus if cfg.ray.num_gpus is not None else count)
    gib = gpu_gib or (mem / GIB if mem else None)
    node = Node("local", cpus, gpus, gib * GIB if gib else None, name)
    desc = (f"local: the cluster this run would start on this machine: {cpus:g} CPUs"
            f"{' (ray.num_cpus)' if cfg.ray.num_cpus else ''}, {gpus:g} GPUs"
            + (f" ({name}, {gib:.1f} GiB)" if gpus and gib else ""))
    return Cluster((node,), desc), (count > 0 if needs_cuda(cfg) else None)


def dry_run(cfg: Any, config_path: Optional[str], gpu_gib: Optional[float], command: str) -> int:
    """Print the launch plan; 0 when it fits, 1 when something does not, 2 when there is nothing to plan."""
    from medgrpo_ray.cli.plan_report import render
    from medgrpo_ray.config.machine import requirement_problems
    from medgrpo_ray.planning.plan import build_plan
    from medgrpo_ray.planning.probe import model_shape

    try:
        shape = model_shape(cfg.model.path)
    except ValueError as err:
        print(f"dry run: {err}", file=sys.stderr)
        return 2
    try:
        cluster, cuda = describe_cluster(cfg, gpu_gib)
    except (ConnectionError, RuntimeError, ValueError) as err:
        print(f"dry run: cannot reach the Ray cluster at {_address(cfg)} (ray.address / RAY_ADDRESS): {err}",
              file=sys.stderr)
        return 2
    plan = build_plan(cfg, shape, cluster)
    plan.problems[:0] = requirement_problems(cfg, cuda=cuda)
    print(render(plan, cfg, shape, title=f"{command} launch plan for {config_path or 'the default settings'}"))
    return 1 if plan.problems else 0
