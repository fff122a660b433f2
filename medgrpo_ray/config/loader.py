"""Load, validate, print and save the experiment configuration.

A YAML preset is merged over the schema's defaults, then command-line dotlist overrides over that. OmegaConf
checks keys and types against the schema; its errors are turned into ValueErrors that name the field, quote
its doc line and say how to fix it. Semantic checks (choices, ranges) follow in `validate`.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import typing
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from medgrpo_ray.config.schema import ExperimentConfig
from medgrpo_ray.io.atomic import atomic_write_text

REDACTED = "***REDACTED***"
# Keys whose values are secrets. `*_env` fields hold the *name* of an environment variable, not a secret.
_SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|passwd|credential)", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)

_CHOICES: dict[str, tuple[str, ...]] = {
    "model.dtype": ("float32", "bfloat16", "float16"),
    "model.attn_implementation": ("sdpa", "eager", "flash_attention_2"),
    "data.on_bad_record": ("skip", "raise"),
    "rollout.backend": ("vllm", "hf"),
    "rollout.weight_sync": ("broadcast", "object_store"),
    "rollout.colocated_memory": ("static", "sleep"),
    "placement": ("split", "colocated"),
    "rollout.enforce_eager": ("auto", "true", "false"),
    "learner.reference": ("colocated", "separate"),
    "learner.reference_memory": ("auto", "full", "sharded", "offload"),
    "learner.lr_schedule": ("constant", "linear", "cosine"),
    "normalization.missing_policy": ("online", "raw", "error"),
    "algorithm.kl_estimator": ("k1", "k2", "k3"),
    "algorithm.loss_agg": ("token_mean", "seq_mean"),
    "logging.level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "logging.engine_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
}
_POSITIVE_INT = (
    "rollout.num_workers", "rollout.max_new_tokens", "learner.num_ranks", "learner.micro_batch_size", "learner.reference_workers",
    "algorithm.group_size", "algorithm.prompts_per_step", "algorithm.total_steps", "algorithm.updates_per_step",
    "data.max_frames", "reward.num_workers", "sft.samples_per_step", "judge.max_attempts", "judge.max_in_flight", "judge.num_workers",
)
_NON_NEGATIVE = (
    "learner.lr", "learner.micro_batch_tokens", "learner.weight_decay", "learner.grad_clip", "learner.warmup_steps", "algorithm.clip_low",
    "algorithm.clip_high", "algorithm.kl_coef", "algorithm.eval_every", "checkpoint.every_n_steps",
    "reward.format_weight", "judge.requests_per_minute", "rollout.temperature", "sft.epochs", "sft.max_steps",
    "sft.eval_every",
)


def field_doc(path: str) -> str:
    """The doc line of a dotted field path (`rollout.num_workers`), or '' if there is none."""
    cls: Any = ExperimentConfig
    meta = ""
    for part in path.split("."):
        fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        if part not in fields:
            return ""
        f = fields[part]
        meta = f.metadata.get("doc", "")
        cls = f.type if dataclasses.is_dataclass(f.type) else _resolve_type(cls, part)
    return meta


def _resolve_type(cls: Any, name: str) -> Any:
    hints = typing.get_type_hints(cls)
    return hints.get(name)


def _field_paths(cls: Any = ExperimentConfig, prefix: str = "") -> list[str]:
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        out.append(path)
        if dataclasses.is_dataclass(hints[f.name]):
            out.extend(_field_paths(hints[f.name], path + "."))
    return out


def _friendly(err: OmegaConfBaseException, source: str) -> ValueError:
    key = getattr(err, "full_key", None) or ""
    if isinstance(err, ConfigKeyError) or "not in" in str(err):
        close = difflib.get_close_matches(key, _field_paths(), n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else " See medgrpo_ray/config/schema.py for the fields."
        return ValueError(f"unknown config key '{key}' (from {source}).{hint}")
    if isinstance(err, ValidationError):
        value = getattr(err, "value", None)
        doc = field_doc(key)
        reason = str(err).splitlines()[0]
        return ValueError(
            f"bad value {value!r} for config field '{key}' (from {source}): {reason}. "
            f"Expected: {doc or 'see the schema'}; set it like {key}=<value>."
        )
    return ValueError(f"invalid configuration (from {source}): {err}")


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Merge schema defaults <- YAML preset at `path` <- dotlist `overrides`; validate; return the typed config.

    Raises ValueError naming the field at fault for unknown keys, wrong types and bad values.
    """
    merged = OmegaConf.structured(ExperimentConfig)
    if path:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"config file {p} does not exist; pass a YAML preset from configs/ (e.g. configs/quickstart_cpu.yaml)")
        try:
            merged = OmegaConf.merge(merged, OmegaConf.load(p))
        except OmegaConfBaseException as err:
            raise _friendly(err, str(p)) from None
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"override {bad[0]!r} is not of the form key=value (e.g. rollout.num_workers=4)")
    try:
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as err:
        raise _friendly(err, "command line") from None
    cfg: ExperimentConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    normalize(cfg)
    validate(cfg)
    return cfg


def normalize(cfg: ExperimentConfig) -> None:
    """Spellings accepted for backward compatibility, rewritten to the canonical value in place: a boolean
    `rollout.enforce_eager` (older configs; OmegaConf reads it into the str field as 'True'/'False')."""
    cfg.rollout.enforce_eager = str(cfg.rollout.enforce_eager).strip().lower()


def _get(cfg: Any, path: str) -> Any:
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


def resolve_reference_memory(mode: str, zero_stage: int) -> str:
    """The concrete `learner.reference_memory` (full | sharded | offload) under `learner.zero_stage`: `auto` is
    sharded under ZeRO-3, else full (learner/reference.py)."""
    if mode not in ("auto", "full", "sharded", "offload"):
        raise ValueError(f"config field 'learner.reference_memory' = {mode!r}: choose auto, full, sharded or offload")
    if mode == "auto":
        return "sharded" if zero_stage == 3 else "full"
    if mode == "sharded" and zero_stage != 3:
        raise ValueError(f"config field 'learner.reference_memory' = sharded partitions the reference with ZeRO-3, but "
                         f"learner.zero_stage = {zero_stage}; set learner.zero_stage=3, or "
                         "learner.reference_memory=full|offload|auto")
    return mode


def validate(cfg: ExperimentConfig) -> None:
    """Semantic checks beyond types: choices, ranges and cross-field rules. Raises ValueError naming the field."""
    for path, choices in _CHOICES.items():
        value = _get(cfg, path)
        if value not in choices:
            raise ValueError(f"config field '{path}' = {value!r} is not one of {', '.join(choices)}; set it like {path}={choices[0]}")
    for path in _POSITIVE_INT:
        if _get(cfg, path) < 1:
            raise ValueError(f"config field '{path}' = {_get(cfg, path)} must be >= 1 ({field_doc(path)})")
    for path in _NON_NEGATIVE:
        if _get(cfg, path) < 0:
            raise ValueError(f"config field '{path}' = {_get(cfg, path)} must be >= 0 ({field_doc(path)})")
    if cfg.learner.zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"config field 'learner.zero_stage' = {cfg.learner.zero_stage} must be 0, 1, 2 or 3")
    resolve_reference_memory(cfg.learner.reference_memory, cfg.learner.zero_stage)
    if not 0.0 <= cfg.reward.caption_judge_weight <= 1.0:
        raise ValueError("config field 'reward.caption_judge_weight' must be in [0, 1] (share of the judge in the caption reward)")
    if not 0.0 < cfg.rollout.top_p <= 1.0:
        raise ValueError("config field 'rollout.top_p' must be in (0, 1]")
    if cfg.algorithm.rollout_ahead not in (0, 1):
        raise ValueError(f"config field 'algorithm.rollout_ahead' = {cfg.algorithm.rollout_ahead} must be 0 (on-policy) "
                         "or 1 (rollout one step ahead of the learner)")
    if not cfg.algorithm.is_cap > 0:
        raise ValueError(f"config field 'algorithm.is_cap' = {cfg.algorithm.is_cap} must be > 0 "
                         f"({field_doc('algorithm.is_cap')})")
    if cfg.algorithm.group_size < 2:
        raise ValueError("config field 'algorithm.group_size' must be >= 2: group-relative advantages need at least two samples per prompt")
    if cfg.data.max_frames % 2:
        raise ValueError(f"config field 'data.max_frames' = {cfg.data.max_frames} must be even (temporal patch of 2 frames)")
    if cfg.data.min_pixels > cfg.data.max_pixels:
        raise ValueError("config field 'data.min_pixels' must not exceed 'data.max_pixels'")
    if cfg.normalization.k <= 0 or cfg.normalization.iqr_floor <= 0:
        raise ValueError("config fields 'normalization.k' and 'normalization.iqr_floor' must be > 0")
    if len(cfg.learner.adam_betas) != 2:
        raise ValueError("config field 'learner.adam_betas' must hold two numbers, e.g. learner.adam_betas=[0.9,0.999]")
    if cfg.resume not in ("none", "auto") and not Path(cfg.resume).exists():
        raise ValueError(f"config field 'resume' = {cfg.resume!r}: use none, auto, or an existing checkpoint directory")
    validate_placement(cfg)
    from medgrpo_ray.medvidbench.tasks import TASKS

    unknown = [t for t in cfg.data.tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"config field 'data.tasks' has unknown task(s) {unknown}; choose from {', '.join(TASKS)}")


def validate_placement(cfg: ExperimentConfig) -> None:
    """Cross-field rules of placement=colocated: one engine per learner rank, each rank on at most one GPU, a GPU
    share for the engine, and no rollout ahead when the two take turns on the GPU's memory (sleep)."""
    if cfg.placement != "colocated":
        return
    r, lc = cfg.rollout, cfg.learner
    if r.num_workers != lc.num_ranks:
        raise ValueError(f"placement=colocated runs one engine beside each learner rank: rollout.num_workers "
                         f"({r.num_workers}) must equal learner.num_ranks ({lc.num_ranks}); set "
                         f"rollout.num_workers={lc.num_ranks}, or placement=split for an independent rollout pool")
    if lc.num_gpus_per_rank not in (0, 1):
        raise ValueError(f"placement=colocated shares one GPU per bundle between a learner rank and its engine: "
                         f"learner.num_gpus_per_rank = {lc.num_gpus_per_rank:g} must be 1 (GPU) or 0 (CPU)")
    if not 0.0 < r.gpu_fraction < 1.0:
        raise ValueError(f"config field 'rollout.gpu_fraction' = {r.gpu_fraction:g} must be in (0, 1) "
                         f"({field_doc('rollout.gpu_fraction')})")
    if r.weight_sync == "object_store":
        raise ValueError("rollout.weight_sync=object_store is a path of placement=split; placement=colocated hands each "
                         "rank's weights to the engine on its own GPU: leave rollout.weight_sync at its default")
    if r.colocated_memory == "sleep" and cfg.algorithm.rollout_ahead:
        raise ValueError("placement=colocated with rollout.colocated_memory=sleep puts each engine to sleep while "
                         "its learner rank updates, so the next rollout cannot run during the update: set "
                         "algorithm.rollout_ahead=0, or rollout.colocated_memory=static when both fit on a GPU")


def redact(obj: Any, _key: str = "") -> Any:
    """Copy of a plain (dict/list) config with secret-looking values replaced and URL credentials stripped."""
    if isinstance(obj, dict):
        return {k: redact(v, str(k)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v, _key) for v in obj]
    if isinstance(obj, str):
        if obj and _SECRET_KEY.search(_key) and not _key.endswith("_env"):
            return REDACTED
        return _URL_USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", obj)
    return obj


def to_redacted_yaml(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML, secrets redacted: what is printed and saved."""
    plain = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    return OmegaConf.to_yaml(OmegaConf.create(redact(plain)))


def save_config(cfg: ExperimentConfig, run_dir: str | os.PathLike) -> Path:
    """Write the resolved, redacted config to `run_dir/config.yaml` (atomically) and return its path."""
    return atomic_write_text(Path(run_dir) / "config.yaml", to_redacted_yaml(cfg))


def from_yaml_text(text: str) -> ExperimentConfig:
    """Rebuild a typed config from saved YAML (e.g. a checkpoint's config.yaml)."""
    merged = OmegaConf.merge(OmegaConf.structured(ExperimentConfig), OmegaConf.create(text))
    cfg: ExperimentConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    normalize(cfg)
    validate(cfg)
    return cfg
