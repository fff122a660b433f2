"""The facts the plan and the requirement checks take from this machine: a model's shape from its local files
(config.json and the safetensors headers: the first bytes of each file, never the weights), and the local GPUs
(torch, imported only when asked)."""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Optional

from medgrpo_ray.planning.models import ModelShape, known_shape, shape_from_checkpoint

HEADER_LIMIT = 100 * 1024 * 1024  # a safetensors header larger than this is not one


def safetensors_numels(path: Path) -> dict[str, int]:
    """Tensor name -> element count from a safetensors file's JSON header."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        if size > HEADER_LIMIT:
            raise ValueError(f"{path}: not a safetensors file (header of {size} bytes)")
        header = json.loads(f.read(size))
    return {k: math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def checkpoint_shape(model_dir: Path) -> Optional[ModelShape]:
    """The shape of a local HF checkpoint directory with config.json and safetensors weights, else None."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not (model_dir / "config.json").is_file() or not files:
        return None
    numels: dict[str, int] = {}
    for f in files:
        numels.update(safetensors_numels(f))
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return shape_from_checkpoint(config, numels, model_dir.name)


def model_shape(path: str) -> ModelShape:
    """`model.path`'s shape: from its local files when the directory exists, else from the table of known
    architectures (tiny:*, or a name like Qwen2.5-VL-7B in the path). Raises ValueError naming the setting."""
    if not path.startswith("tiny:"):
        local = Path(path).expanduser()
        if local.is_dir():
            shape = checkpoint_shape(local)
            if shape is not None:
                return shape
    shape = known_shape(path)
    if shape is None:
        raise ValueError(f"model.path={path}: no local checkpoint with config.json and safetensors there, and the "
                         "name is not a known architecture (Qwen2.5-VL-3B, Qwen2.5-VL-7B, Qwen3-VL-4B, tiny:*); "
                         "point model.path at the local checkpoint to plan from its files")
    return shape


def local_gpus() -> tuple[int, Optional[float], str]:
    """(count, bytes of GPU 0, its name) of the CUDA devices this process sees; (0, None, '') without CUDA."""
    try:
        import torch

        if not torch.cuda.is_available():
            return 0, None, ""
        props = torch.cuda.get_device_properties(0)
        return torch.cuda.device_count(), float(props.total_memory), str(props.name)
    except Exception:  # noqa: BLE001  (no torch, a broken driver: no GPU to plan on)
        return 0, None, ""


def cuda_available() -> bool:
    return local_gpus()[0] > 0
