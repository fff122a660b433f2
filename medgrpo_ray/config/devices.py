"""Which device a GPU actor uses, read from what Ray assigned it, never assumed. Pure (the caller passes
`ray.get_gpu_ids()` and CUDA_VISIBLE_DEVICES).

Ray gives each actor physical GPU ids (or the entries of the node's CUDA_VISIBLE_DEVICES). By default it also masks
CUDA_VISIBLE_DEVICES to those ids, so the actor sees one GPU, at torch index 0. With
`ray.noset_cuda_visible_devices` (RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES=1) it does not: the actor sees every
GPU of the node and must pick its own, at the position of its id among the visible devices. One rule covers both:
the torch index is the id's position in CUDA_VISIBLE_DEVICES, or the id itself when that is unset. DeepSpeed takes
the device from LOCAL_RANK, so LOCAL_RANK is that index.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence


@dataclass(frozen=True)
class Device:
    index: Optional[int]  # torch CUDA ordinal in this process; None: CPU
    local_rank: int  # LOCAL_RANK for DeepSpeed (the ordinal; 0 on CPU)

    @property
    def torch(self) -> str:
        return "cpu" if self.index is None else f"cuda:{self.index}"


CPU = Device(None, 0)


def _id_key(gpu_id) -> tuple:
    text = str(gpu_id).strip()
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def sorted_gpu_ids(gpu_ids: Sequence) -> list[str]:
    """Ray's GPU ids (ints, or strings: indices or UUIDs, in no order) as strings, physical order."""
    return [str(g).strip() for g in sorted(gpu_ids, key=_id_key)]


def process_device(assigned: Sequence, visible: Optional[str], noset: bool) -> Device:
    """The device of an actor from its Ray-assigned GPU ids (`ray.get_gpu_ids()`), its CUDA_VISIBLE_DEVICES
    (None: unset) and `ray.noset_cuda_visible_devices`. No GPU assigned: CPU. Several: the first (lowest id)."""
    if not assigned:
        return CPU
    first = sorted_gpu_ids(assigned)[0]
    mode = ("ray.noset_cuda_visible_devices=true: Ray leaves CUDA_VISIBLE_DEVICES as the node has it" if noset
            else "ray.noset_cuda_visible_devices=false: Ray sets CUDA_VISIBLE_DEVICES to the actor's GPUs")
    if visible is None:
        if not first.isdigit():
            raise ValueError(f"Ray assigned GPU {first!r} but CUDA_VISIBLE_DEVICES is unset, so its torch index is "
                             f"unknown ({mode}); set CUDA_VISIBLE_DEVICES on the node before `ray start`")
        return Device(int(first), int(first))
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if first not in entries:
        raise ValueError(f"Ray assigned GPU {first} but CUDA_VISIBLE_DEVICES={visible!r} does not list it ({mode}); "
                         "check the node's CUDA_VISIBLE_DEVICES at `ray start` and ray.env_vars, which must not set "
                         "CUDA_VISIBLE_DEVICES")
    index = entries.index(first)
    return Device(index, index)


def local_device(cuda_available: bool) -> Device:
    """Outside Ray (benchmarks): the first visible GPU, or the CPU."""
    return Device(0, 0) if cuda_available else CPU
