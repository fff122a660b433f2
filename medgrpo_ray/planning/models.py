"""Model shapes for the launch plan, without loading weights: a table of the architectures the presets use, or a
local checkpoint's config.json with the element counts of its safetensors headers.

Table sources: the released checkpoints' config.json (Qwen/Qwen2.5-VL-3B-Instruct, Qwen/Qwen2.5-VL-7B-Instruct,
Qwen/Qwen3-VL-4B-Instruct); parameter counts are those configs counted layer by layer (3.75 B, 8.29 B and 4.44 B,
as the model cards state), vision tower included.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional


@dataclass(frozen=True)
class ModelShape:
    name: str
    params: int  # all parameters, vision tower included
    vision_params: int
    hidden: int  # text hidden size
    layers: int  # text decoder layers
    intermediate: int  # text MLP width
    vocab: int
    kv_heads: int
    head_dim: int
    merge_px: int  # pixels per side of one merged visual token (patch x spatial merge): 28 Qwen2.5-VL, 32 Qwen3-VL
    frame_text_tokens: int = 0  # text tokens per temporal patch (Qwen3-VL's timestamps)
    source: str = ""


KNOWN: dict[str, ModelShape] = {
    "qwen2.5-vl-3b": ModelShape("Qwen2.5-VL-3B", 3_754_622_976, 668_684_288, hidden=2048, layers=36,
                                intermediate=11008, vocab=151936, kv_heads=2, head_dim=128, merge_px=28),
    "qwen2.5-vl-7b": ModelShape("Qwen2.5-VL-7B", 8_292_166_656, 676_550_144, hidden=3584, layers=28,
                                intermediate=18944, vocab=152064, kv_heads=4, head_dim=128, merge_px=28),
    "qwen3-vl-4b": ModelShape("Qwen3-VL-4B", 4_437_821_952, 415_353_856, hidden=2560, layers=36,
                              intermediate=9728, vocab=151936, kv_heads=8, head_dim=128, merge_px=32,
                              frame_text_tokens=6),
    # the offline tiny kit (medgrpo_ray/models/tiny_vlm.py): under 1 M parameters (637,536 counted in a built
    # tiny:qwen2_5_vl; the Qwen3-VL kit has the same text stack), negligible next to any GPU
    "tiny:qwen2_5_vl": ModelShape("tiny Qwen2.5-VL", 637_536, 91_872, hidden=128, layers=2, intermediate=256,
                                  vocab=975, kv_heads=2, head_dim=32, merge_px=28, source="the offline tiny kit"),
    "tiny:qwen3_vl": ModelShape("tiny Qwen3-VL", 637_536, 91_872, hidden=128, layers=2, intermediate=256,
                                vocab=975, kv_heads=2, head_dim=32, merge_px=32, frame_text_tokens=6,
                                source="the offline tiny kit (size as tiny:qwen2_5_vl)"),
}


def _key(text: str) -> str:
    """'Qwen2_5-VL-7B-Instruct' -> 'qwen2.5-vl-7b-instruct' (separators and the 2_5 spelling unified)."""
    t = text.lower().replace("_", "-")
    return re.sub(r"(\d)-(\d)", r"\1.\2", t)


def known_shape(path: str) -> Optional[ModelShape]:
    """The table's shape for a model path naming a known architecture (`/models/Qwen2.5-VL-7B-SFT`), or None."""
    if path in KNOWN:  # tiny:*
        return KNOWN[path]
    key = _key(path.rstrip("/").split("/")[-1] or path)
    for name in sorted(KNOWN, key=len, reverse=True):
        if not name.startswith("tiny:") and re.search(re.escape(name) + r"(?![\d.])", key):
            shape = KNOWN[name]
            return ModelShape(**{**shape.__dict__, "source": f"known architecture {shape.name} (named in model.path)"})
    return None


def shape_from_checkpoint(config: Mapping[str, Any], numels: Mapping[str, int], name: str) -> ModelShape:
    """A shape from a checkpoint's config.json and its tensors' element counts (name -> count); the vision
    tower's tensors are those whose name has a `visual` part."""
    text = config.get("text_config") or config
    vision = config.get("vision_config") or {}

    def get(key: str, default: Any = None) -> Any:
        return text.get(key, config.get(key, default))

    hidden, heads = int(get("hidden_size")), int(get("num_attention_heads"))
    merge_px = int(vision.get("patch_size", 14)) * int(vision.get("spatial_merge_size", 2))
    qwen3 = "qwen3" in str(config.get("model_type", ""))
    return ModelShape(
        name=name, params=int(sum(numels.values())),
        vision_params=int(sum(n for k, n in numels.items() if "visual" in k.split("."))),
        hidden=hidden, layers=int(get("num_hidden_layers")), intermediate=int(get("intermediate_size")),
        vocab=int(get("vocab_size")), kv_heads=int(get("num_key_value_heads", heads)),
        head_dim=int(get("head_dim") or hidden // heads), merge_px=merge_px,
        frame_text_tokens=6 if qwen3 else 0, source=f"checkpoint files of {name} (config.json, safetensors headers)")
