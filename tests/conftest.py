"""Shared fixtures: offline environment, the tiny VLM checkpoint, a real video file and one vLLM engine per session."""
from __future__ import annotations

import os

# Tests never reach a model hub; vLLM runs in-process with a small CPU KV cache.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """A per-session cache directory for built models (never the user's ~/.cache)."""
    return tmp_path_factory.mktemp("model_cache")


@pytest.fixture(scope="session")
def tiny_vlm_dir(model_cache):
    from medgrpo_ray.models.tiny_vlm import tiny_model_dir

    return str(tiny_model_dir(model_cache, kind="qwen2_5_vl", seed=0))


@pytest.fixture(scope="session")
def tiny_processor(tiny_vlm_dir):
    from medgrpo_ray.models.loading import load_processor

    return load_processor(tiny_vlm_dir)


@pytest.fixture(scope="session")
def tiny_policy(tiny_vlm_dir):
    from medgrpo_ray.models.loading import load_policy

    return load_policy(tiny_vlm_dir)


@pytest.fixture(scope="session")
def demo_video(tmp_path_factory):
    from medgrpo_ray.data.demo_video import write_demo_video

    return str(write_demo_video(tmp_path_factory.mktemp("video") / "demo.mp4", seconds=4.0, fps=8))


@pytest.fixture(scope="session")
def vllm_engine(tiny_vlm_dir, tiny_processor):
    """One in-process vLLM CPU engine on the tiny model, shared by the session's tests."""
    from medgrpo_ray.data.prompts import vision_token_ids
    from medgrpo_ray.rollout.vllm_engine import VLLMEngine

    return VLLMEngine(tiny_vlm_dir, dtype="float32", max_model_len=4096, seed=0, kv_cache_gib=1,
                      banned_token_ids=vision_token_ids(tiny_processor.tokenizer))


@pytest.fixture(scope="session")
def synthetic_bench(tmp_path_factory):
    """The synthetic benchmark (seed 0, 240 train / 120 test records), generated once per session and shared by
    the end-to-end tests; read-only: a test that needs extra files writes them in its own directory."""
    from medgrpo_ray.data.synthetic import generate

    out = tmp_path_factory.mktemp("synthetic_bench")
    generate(out, seed=0, n_train=240, n_test=120)
    return out
