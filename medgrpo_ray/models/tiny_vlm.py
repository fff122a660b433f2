"""Build tiny, real-architecture Qwen2.5-VL / Qwen3-VL checkpoints offline, with random weights.

The result is an ordinary HF directory (config, safetensors weights, tokenizer, chat template, image and video
processor configs) that `AutoProcessor`, `AutoModelForImageTextToText` and vLLM load like a hub checkpoint. Tests
and the CPU quickstart use it in place of downloaded weights. Sizes respect vLLM's CPU attention kernel (text
head_dim 32). Building is deterministic from the seed and cached on disk by (kind, seed, kit version).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

KIT_VERSION = 2  # bump when the built artefact changes, so caches rebuild
KINDS = ("qwen2_5_vl", "qwen3_vl")

_TEXT = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
_VISION = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2)
_MROPE = [4, 6, 6]  # Qwen2.5-VL mrope sections: sum = text head_dim / 2
# Benchmarks only (weight sync against model size): the text stack of Qwen2.5-0.5B (896 wide, 24 layers, head_dim
# 64) with a 12-block vision tower, about 0.45B parameters with the kit's small vocabulary. Never cached.
# "3b" (benchmarks/gpu_check.py, built directly on a GPU): the shape of Qwen2.5-VL-3B, as its released config.json
# (Qwen/Qwen2.5-VL-3B-Instruct) gives it: text 2048 wide, MLP 11008, 36 layers, 16 heads, 2 KV heads, mrope
# sections [16, 24, 24], word embeddings tied; vision 32 blocks, 1280 wide, MLP 3420, 16 heads, window 112 px,
# full attention in blocks 7/15/23/31. With vocab_size=151936 it has the checkpoint's 3,754,622,976 parameters
# (planning/models.py); the text dims may carry tie_word_embeddings, the vision dims override the tiny defaults.
SIZES = {"tiny": (_TEXT, _VISION, _MROPE),
         "0.5b": (dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                       num_key_value_heads=2),
                  dict(depth=12, hidden_size=768, intermediate_size=3072, num_heads=12), [8, 12, 12]),
         "3b": (dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                     num_key_value_heads=2, tie_word_embeddings=True),
                dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, window_size=112,
                     fullatt_block_indexes=[7, 15, 23, 31]), [16, 24, 24])}


def _configs(kind: str, tok, size: str = "tiny", vocab_size: int | None = None):
    """Model config for `kind` at `size` (SIZES), with token ids taken from the trained tokenizer; `vocab_size`
    (benchmarks) widens the embedding and LM head beyond the tokenizer, e.g. to Qwen2.5's 152,064."""
    text_dims, vision_dims, mrope = SIZES[size]
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    special = dict(bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"), eos_token_id=tok.eos_token_id,
                   pad_token_id=tok.pad_token_id)
    text = dict(text_dims, vocab_size=max(len(tok), vocab_size or 0), max_position_embeddings=32768, rms_norm_eps=1e-6, **special)
    tie = text.pop("tie_word_embeddings", False)
    if kind == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope}
        vision = dict(dict(window_size=56, fullatt_block_indexes=[1]), **vision_dims,
                      out_hidden_size=text_dims["hidden_size"], patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2, tokens_per_second=2)
        cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=tie, **ids, **special)
        cfg.architectures = ["Qwen2_5_VLForConditionalGeneration"]
        return cfg, 14
    if kind == "qwen3_vl":
        from transformers import Qwen3VLConfig

        text["head_dim"] = 32
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [6, 5, 5],
                                   "mrope_interleaved": True}
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=_TEXT["hidden_size"],
                      patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=256,
                      deepstack_visual_indexes=[0])
        cfg = Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
        cfg.architectures = ["Qwen3VLForConditionalGeneration"]
        return cfg, 16
    raise ValueError(f"unknown tiny model kind {kind!r}: choose one of {', '.join(KINDS)}")


def _processor(kind: str, tok, patch: int):
    """Image + video processors with small pixel budgets, combined with the tokenizer into the model's processor."""
    import transformers as tf

    factor = patch * 2
    size = {"shortest_edge": 4 * factor * factor, "longest_edge": 64 * factor * factor}
    common = dict(patch_size=patch, merge_size=2, temporal_patch_size=2, size=size)
    if kind == "qwen2_5_vl":
        image = tf.Qwen2VLImageProcessor(**common)
        video = tf.Qwen2VLVideoProcessor(**common, do_sample_frames=False)
        return tf.Qwen2_5_VLProcessor(image_processor=image, video_processor=video, tokenizer=tok, chat_template=tok.chat_template)
    # Released Qwen3-VL checkpoints normalize images and videos with mean = std = 0.5; vLLM applies the image
    # processor's normalization to videos too, so a kit whose two processors disagree breaks vLLM/HF parity.
    image = tf.Qwen2VLImageProcessor(**common, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    video = tf.Qwen3VLVideoProcessor(**common, do_sample_frames=False)
    return tf.Qwen3VLProcessor(image_processor=image, video_processor=video, tokenizer=tok, chat_template=tok.chat_template)


def kit_parts(kind: str = "qwen2_5_vl", size: str = "tiny", vocab_size: int | None = None):
    """The kit's model config, processor and generation config for (kind, size), without weights: for callers that
    build the model themselves (benchmarks/gpu_check.py builds the "3b" shape directly on a GPU)."""
    if size not in SIZES:
        raise ValueError(f"unknown kit size {size!r}: choose one of {', '.join(SIZES)}")
    if size != "tiny" and kind != "qwen2_5_vl":
        raise ValueError(f"size {size!r} is built for qwen2_5_vl only")
    from transformers import GenerationConfig

    from medgrpo_ray.models.tiny_tokenizer import VISION_TOKENS, build_tokenizer

    tok = build_tokenizer()
    cfg, patch = _configs(kind, tok, size, vocab_size)
    gen = GenerationConfig(
        bos_token_id=cfg.text_config.bos_token_id, eos_token_id=[tok.eos_token_id], pad_token_id=tok.pad_token_id,
        suppress_tokens=[tok.convert_tokens_to_ids(t) for t in VISION_TOKENS],
    )
    return cfg, _processor(kind, tok, patch), gen


def build_tiny_vlm(out_dir: str | os.PathLike, kind: str = "qwen2_5_vl", seed: int = 0, size: str = "tiny",
                   vocab_size: int | None = None) -> Path:
    """Write a random `kind` checkpoint to `out_dir` (replacing it atomically) and return the path; `size`
    "0.5b" / "3b" (Qwen2.5-VL only) and `vocab_size` (a real model's vocabulary) are for benchmarks."""
    import torch
    from transformers import AutoModelForImageTextToText

    out_dir = Path(out_dir)
    cfg, processor, gen = kit_parts(kind, size, vocab_size)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(cfg, dtype=torch.float32)
    model.generation_config = gen
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "medgrpo_tiny.json").write_text(json.dumps({"kind": kind, "seed": seed, "kit_version": KIT_VERSION,
                                                            "size": size}))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def tiny_model_dir(cache_dir: str | os.PathLike, kind: str = "qwen2_5_vl", seed: int = 0) -> Path:
    """Path of the cached tiny checkpoint for (kind, seed), building it first if missing or stale."""
    if kind not in KINDS:
        raise ValueError(f"unknown tiny model kind {kind!r}: choose one of {', '.join(KINDS)}")
    out = Path(cache_dir).expanduser() / "tiny_models" / f"{kind}-seed{seed}-v{KIT_VERSION}"
    marker = out / "medgrpo_tiny.json"
    if not marker.is_file():
        from filelock import FileLock  # several Ray actors may ask at once; one builds

        out.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(out) + ".lock"):
            if not marker.is_file():
                build_tiny_vlm(out, kind=kind, seed=seed)
    return out


def weights_hash(model_dir: str | os.PathLike) -> str:
    """SHA-256 over the tensors of a checkpoint's safetensors files (names, dtypes, shapes and bytes)."""
    from safetensors import safe_open

    h = hashlib.sha256()
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(f), "np") as st:
            for name in sorted(st.keys()):
                arr = st.get_tensor(name)
                h.update(f"{name}:{arr.dtype}:{arr.shape}".encode())
                h.update(arr.tobytes())
    return h.hexdigest()
