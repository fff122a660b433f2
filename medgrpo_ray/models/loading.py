"""Resolve a model setting to a checkpoint directory and load its processor and policy the standard HF way.

`tiny:<kind>` builds (once, cached) the offline tiny model; any other value is a local HF directory (or a hub id
when the user has network). Either way the same AutoProcessor / AutoModelForImageTextToText calls load it.
`resolve_model` also takes a training checkpoint, checkpoint root or run directory (inference's model argument)
and maps it to that checkpoint's `hf/` export.
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


def resolve_model(arg: str, cache_dir: str = "~/.cache/medgrpo_ray", tiny_seed: int = 0) -> str:
    """A model argument (inference's CHECKPOINT_OR_MODEL) as a model path: an HF directory (config.json) as is, a
    training checkpoint directory as its `hf/` export, a checkpoint root or run directory as the `hf/` export of
    the checkpoint `latest` names, else whatever `resolve_model_path` accepts (tiny:..., hub id)."""
    from medgrpo_ray.checkpoint.local import find_latest

    p = Path(arg).expanduser()
    if p.is_dir() and not (p / "config.json").is_file():
        if (p / "hf" / "config.json").is_file():
            return str(p / "hf")
        for root in (p, p / "checkpoints"):
            latest = find_latest(root) if root.is_dir() else None
            if latest is not None:
                if (latest / "hf" / "config.json").is_file():
                    return str(latest / "hf")
                raise ValueError(f"{arg}: latest checkpoint {latest} has no hf/ export (checkpoint.export_hf was "
                                 "false); export it or pass an HF directory")
        raise ValueError(f"{arg}: neither an HF model directory (config.json) nor a checkpoint directory (hf/)")
    return resolve_model_path(arg, cache_dir, tiny_seed)


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
