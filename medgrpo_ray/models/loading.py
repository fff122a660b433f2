"""Resolve a model setting to a checkpoint directory and load its processor and policy the standard HF way.

`tiny:<kind>` builds (once, cached) the offline tiny model; any other value is a local HF directory (or a hub id
when the user has network). Either way the same AutoProcessor / AutoModelForImageTextToText calls load it.
"""
from __future__ import annotations

from pathlib import Path

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def resolve_model_path(path: str, cache_dir: str = "~/.cache/medgrpo_ray", tiny_seed: int = 0) -> str:
    """Directory of the checkpoint named by `model.path` (builds `tiny:qwen2_5_vl` / `tiny:qwen3_vl` on demand)."""
    if path.startswith("tiny:"):
        from medgrpo_ray.models.tiny_vlm import tiny_model_dir

        return str(tiny_model_dir(cache_dir, kind=path.split(":", 1)[1], seed=tiny_seed))
    p = Path(path).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ValueError(f"model.path={path}: {p} has no config.json; point it at an HF checkpoint directory")
        return str(p)
    if path.count("/") == 1 and not path.startswith((".", "/", "~")):
        return path  # a hub id; loads only where the hub is reachable (or cached)
    raise ValueError(f"model.path={path} does not exist; use an HF checkpoint directory or tiny:qwen2_5_vl")


def load_processor(model_dir: str):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model_dir)


def torch_dtype(name: str):
    import torch

    if name not in _DTYPES:
        raise ValueError(f"model.dtype={name!r}: choose float32, bfloat16 or float16")
    return getattr(torch, _DTYPES[name])


def load_policy(model_dir: str, dtype: str = "float32", attn_implementation: str = "sdpa", trust_remote_code: bool = False):
    """The policy as an HF image-text-to-text model (Qwen2.5-VL, Qwen3-VL, ...), in eval mode."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(
        model_dir, dtype=torch_dtype(dtype), attn_implementation=attn_implementation, trust_remote_code=trust_remote_code
    )
    return model.eval()
