"""Settings against the machine: what each setting needs (a package, a CUDA device) and the `auto` values.

Pure: the facts (an installed distribution's version, whether a module imports, whether CUDA is there) come in
as arguments, so every rule is tested in microseconds; the defaults read the installed distributions (stdlib).
The train and SFT commands call `requirement_problems` right after loading the config, before Ray starts or any
model loads, and stop with every problem listed (docs/install.md).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from typing import Any, Callable, Optional

FLASH_ATTN_DIST = "flash-attn"
FLASH_ATTN_MIN = (2, 3, 3)  # the oldest flash-attn transformers 5.19 accepts for flash_attention_2
GPU_EXTRA = ("pip install -e '.[gpu]' --no-build-isolation (it compiles flash-attn against the installed "
             "torch/CUDA; docs/install.md, GPU)")


def installed_version(dist: str) -> Optional[str]:
    """Version of an installed distribution (`flash-attn`), or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def module_available(name: str) -> bool:
    """Whether `import name` would find a module (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text.split("+")[0])[:3])


def needs_cuda(cfg: Any) -> bool:
    """Whether any setting asks for a CUDA device (GPUs per actor, or flash_attention_2)."""
    return (cfg.rollout.num_gpus_per_worker > 0 or cfg.learner.num_gpus_per_rank > 0
            or cfg.model.attn_implementation == "flash_attention_2")


def requirement_problems(cfg: Any, *, version_of: Callable[[str], Optional[str]] = installed_version,
                         has_module: Callable[[str], bool] = module_available,
                         cuda: Optional[bool] = None) -> list[str]:
    """One message per setting the machine cannot honour, each naming the setting and the fix.

    `cuda`: whether the processes that will run the actors see a CUDA device (True/False), or None when unknown
    (a remote cluster): the device checks are then left to the cluster (`--dry-run` checks its resources)."""
    problems: list[str] = []
    m, r, lc = cfg.model, cfg.rollout, cfg.learner
    if m.attn_implementation == "flash_attention_2":
        version = version_of(FLASH_ATTN_DIST)
        if version is None:
            problems.append("model.attn_implementation=flash_attention_2 needs the flash-attn package, which is not "
                            f"installed; install the gpu extra: {GPU_EXTRA}; or set model.attn_implementation=sdpa")
        elif _version_tuple(version) < FLASH_ATTN_MIN:
            problems.append(f"model.attn_implementation=flash_attention_2: flash-attn {version} is older than "
                            f"{'.'.join(map(str, FLASH_ATTN_MIN))}, the oldest transformers accepts; reinstall the "
                            f"gpu extra: {GPU_EXTRA}; or set model.attn_implementation=sdpa")
        if m.dtype == "float32":
            problems.append("model.attn_implementation=flash_attention_2 runs in bfloat16/float16 only, but "
                            "model.dtype=float32; set model.dtype=bfloat16 or model.attn_implementation=sdpa")
        if lc.num_gpus_per_rank <= 0:
            problems.append("model.attn_implementation=flash_attention_2 needs the learner on a GPU, but "
                            "learner.num_gpus_per_rank=0 runs it on CPU; set learner.num_gpus_per_rank=1 on a GPU "
                            "node, or model.attn_implementation=sdpa")
        elif cuda is False:
            problems.append("model.attn_implementation=flash_attention_2 needs a CUDA GPU and this machine has none "
                            "(torch.cuda.is_available() is False); set model.attn_implementation=sdpa, or run on a "
                            "GPU node")
    if cuda is False:
        for setting, value in (("rollout.num_gpus_per_worker", r.num_gpus_per_worker),
                               ("learner.num_gpus_per_rank", lc.num_gpus_per_rank)):
            if value > 0:
                problems.append(f"{setting}={value:g} asks for GPUs, but this machine has no CUDA device "
                                "(torch.cuda.is_available() is False) and the run would start a local Ray cluster "
                                f"on it; set {setting}=0 for CPU, or run on a GPU node, or point ray.address / "
                                "RAY_ADDRESS at a GPU cluster")
    if r.backend == "vllm" and not has_module("vllm"):
        problems.append("rollout.backend=vllm needs vLLM, which is not installed; install it (GPU: pip install -e "
                        "'.[vllm]'; CPU: bash launch/install_cpu.sh), or set rollout.backend=hf")
    if cfg.logging.wandb and not has_module("wandb"):
        problems.append("logging.wandb=true needs the wandb package; pip install wandb, or set logging.wandb=false")
    return problems


def resolve_enforce_eager(setting: Any, cuda: bool) -> bool:
    """`rollout.enforce_eager` as vLLM's boolean: `auto` is eager on CPU and CUDA graphs (False) on a GPU;
    true/false (or a boolean, from older configs) as given."""
    value = str(setting).strip().lower()
    if value == "auto":
        return not cuda
    if value in ("true", "false"):
        return value == "true"
    raise ValueError(f"rollout.enforce_eager={setting!r} is not one of auto, true, false; "
                     "set rollout.enforce_eager=auto")
