"""PolicyLearner actor: one rank of the DeepSpeed learner group (a thin shell around medgrpo_ray.learner.policy)."""
from __future__ import annotations

import os
import socket
import time
from collections import deque

import ray


@ray.remote
class PolicyLearnerActor:
    def __init__(self, cfg, model_dir: str, world_size: int, name: str) -> None:
        from medgrpo_ray.tracking.console import quiet_process

        quiet_process(cfg.logging.level, cfg.logging.engine_level, name)
        self.cfg, self.model_dir, self.world_size, self.name = cfg, model_dir, world_size, name
        self.rank = None  # assigned at setup, by (node, physical GPU id): driver/placement.py
        self.learner = None
        self.journal_ = deque(maxlen=512)  # (wall time, event): what this rank did, in order (journal())

    def _note(self, event: str) -> None:
        self.journal_.append((time.time(), event))

    def journal(self) -> list:
        """The rank's recent calls as (wall time, event), oldest first: train_step, offload_states, handover, ..."""
        return list(self.journal_)

    def placement(self) -> dict:
        """Where this actor landed: node id and IP, and the GPU ids Ray assigned it (physical order)."""
        from medgrpo_ray.config.devices import sorted_gpu_ids

        ctx = ray.get_runtime_context()
        return {"node": ctx.get_node_id(), "ip": ray.util.get_node_ip_address(),
                "gpus": sorted_gpu_ids(ray.get_gpu_ids())}

    def address(self) -> tuple[str, int]:
        """Rank 0's address and a free port for the process group."""
        ip = ray.util.get_node_ip_address()
        with socket.socket() as s:
            s.bind(("", 0))
            return ip, s.getsockname()[1]

    def setup(self, rank: int, master_addr: str, master_port: int) -> dict:
        """Become rank `rank` of the DeepSpeed group, on the device Ray assigned (config/devices.py)."""
        from medgrpo_ray.config.devices import process_device
        from medgrpo_ray.learner.policy import PolicyLearner

        device = process_device(ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"),
                                self.cfg.ray.noset_cuda_visible_devices)
        self.rank = rank
        self.learner = PolicyLearner(self.cfg, self.model_dir, rank, self.world_size, master_addr, master_port,
                                     device=device)
        return {"rank": rank, "pid": os.getpid(), "device": device.torch}

    def train_step(self, shard) -> dict:
        self._note("train_step")
        return self.learner.train_step(shard)

    def sft_step(self, shard) -> dict:
        return self.learner.sft_step(shard)

    def score(self, records: list, completions: list):
        return self.learner.score(records, completions)

    def state_dict(self):
        return self.learner.state_dict()

    def sync_metas(self) -> list:
        return self.learner.sync_metas()

    def sync_join(self, host: str, port: int, world_size: int, epoch: int, timeout_s: float, backend: str) -> int:
        return self.learner.sync_join(host, port, world_size, epoch, timeout_s, backend)

    def sync_send(self, bucket_bytes: int) -> int:
        return self.learner.sync_send(bucket_bytes)

    def handover_send(self, version: int, bucket_bytes: int, to_engine, to_learner, timeout_s: float,
                      active: bool = True) -> int:
        """Colocated weight sync: hand this rank's weights to the engine on its GPU through two queues (handles
        out, acknowledgements in); every rank calls it (ZeRO-3 gathers collectively), `active` says whether this
        rank's engine needs the version. Returns the bytes handed over."""
        from medgrpo_ray.learner.colocated import handover_send
        from medgrpo_ray.weight_sync.handover import queue_transport

        self._note(f"handover:{version}" if active else f"handover:{version}:gather-only")
        send, recv = queue_transport(to_engine, to_learner)  # ray.util.queue.Empty is a queue.Empty
        return handover_send(self.learner, version, bucket_bytes, send, recv, timeout_s, active)

    def offload_states(self) -> bool:
        from medgrpo_ray.learner.colocated import offload_states

        self._note("offload_states")
        return offload_states(self.learner)

    def reload_states(self) -> bool:
        from medgrpo_ray.learner.colocated import reload_states

        self._note("reload_states")
        return reload_states(self.learner)

    def save(self, ckpt_dir: str, export_hf: bool) -> bool:
        self.learner.save(ckpt_dir, export_hf)
        return True

    def load(self, ckpt_dir: str) -> bool:
        self.learner.load(ckpt_dir)
        return True

    def save_to_storage(self, uri: str, prefix: str, export_hf: bool) -> dict:
        return self.learner.save_to_storage(uri, prefix, export_hf)

    def load_from_storage(self, uri: str, prefix: str) -> bool:
        self.learner.load_from_storage(uri, prefix)
        return True

    def probe_storage(self, uri: str) -> str:
        from medgrpo_ray.checkpoint.storage import probe

        return probe(uri, f"{self.name} on node {ray.util.get_node_ip_address()}")

    def weights_hash(self):
        return self.learner.weights_hash()

    def shutdown(self) -> bool:
        if self.learner is not None:
            self.learner.shutdown()
        return True
