"""Turn (question, clip) into model inputs: HF processor tensors for the learner and a vLLM request for rollout.

Both paths use the model's own chat template and processor, the same frames, the same processor kwargs and the
same video metadata (sampling rate and frame indices), so rollout and learner see identical tokens and identical
temporal position ids (Qwen derives `second_per_grid_ts` from the rate).
"""
from __future__ import annotations

import logging
from typing import Any

from medgrpo_ray.data.video import Clip, FrameBudget

log = logging.getLogger(__name__)

VISION_PLACEHOLDERS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")


def chat_messages(question: str, system: str | None = None) -> list[dict]:
    """One user turn holding the video then the question (the reference pipeline's layout)."""
    msgs: list[dict] = [{"role": "system", "content": system}] if system else []
    msgs.append({"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]})
    return msgs


def prompt_text(processor: Any, question: str, system: str | None = None) -> str:
    """The chat-templated prompt string, generation prompt appended."""
    return processor.apply_chat_template(chat_messages(question, system), tokenize=False, add_generation_prompt=True)


def budget_for(processor: Any, max_frames: int, min_pixels: int, max_pixels: int) -> FrameBudget:
    """A frame budget whose resize factor matches the processor's vision patching (patch x merge)."""
    vp = processor.video_processor
    return FrameBudget(max_frames=max_frames, min_pixels=min_pixels, max_pixels=max_pixels,
                       factor=int(vp.patch_size) * int(vp.merge_size))


def video_metadata(clip: Clip) -> dict:
    """Metadata describing the clip's frames as a video sampled at `clip.fps`, for both HF and vLLM."""
    t, h, w = clip.frames.shape[:3]
    return {
        "fps": float(clip.fps),
        "duration": t / float(clip.fps),
        "total_num_frames": int(t),
        "frames_indices": list(range(t)),
        "width": int(w),
        "height": int(h),
        "video_backend": "medgrpo",
        "do_sample_frames": False,
    }


def processor_kwargs(clip: Clip) -> dict:
    """Video-processor kwargs shared by both paths. The frames are already sized by our budget (multiples of the
    patch factor), so the processor's pixel bounds are pinned to the frame size: it never resizes or resamples."""
    pixels = int(clip.frames.shape[1] * clip.frames.shape[2])
    return {"size": {"shortest_edge": pixels, "longest_edge": pixels}, "do_sample_frames": False}


def hf_inputs(processor: Any, text: str, clip: Clip):
    """Processor outputs for one prompt: input_ids, attention_mask, pixel_values_videos, video_grid_thw and
    second_per_grid_ts (Qwen2.5-VL) as torch tensors."""
    from transformers.video_utils import VideoMetadata

    md = video_metadata(clip)
    meta = VideoMetadata(total_num_frames=md["total_num_frames"], fps=md["fps"], width=md["width"], height=md["height"],
                         duration=md["duration"], frames_indices=md["frames_indices"])
    kw = processor_kwargs(clip)
    out = processor(text=[text], videos=[clip.frames], video_metadata=[meta], return_tensors="pt", **kw)
    log.debug("visual tokens for %s: %d", clip.source, visual_token_count(out["video_grid_thw"], processor))
    return out


def vllm_request(text: str, clip: Clip) -> dict:
    """A vLLM prompt dict with the same frames, metadata and processor kwargs as `hf_inputs`."""
    return {
        "prompt": text,
        "multi_modal_data": {"video": (clip.frames, video_metadata(clip))},
        "mm_processor_kwargs": processor_kwargs(clip),
    }


def visual_token_count(video_grid_thw, processor: Any) -> int:
    """Placeholder tokens the video occupies in the prompt: t * h * w / merge_size^2 summed over videos."""
    merge = int(processor.video_processor.merge_size)
    return int(sum(int(t) * int(h) * int(w) for t, h, w in video_grid_thw.tolist()) // (merge * merge))


def vision_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the vision placeholder tokens, which a policy must never generate."""
    return [tokenizer.convert_tokens_to_ids(t) for t in VISION_PLACEHOLDERS]
