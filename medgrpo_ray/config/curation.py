"""Settings of the curation stage (launch/curate.py): one place for its defaults, OmegaConf-typed like the
experiment config, YAML presets in configs/curation/ and dotlist overrides."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from medgrpo_ray.config.schema import doc

TEMPLATE_TASKS = ("tal", "stg", "next_action", "skill_assessment", "cvs_assessment")


@dataclass
class CurationConfig:
    sources: Dict[str, Any] = doc({}, "canonical dataset name -> local root of its native files, or {root: ..., <converter option>: ...} (docs/curation.md lists the formats read)")
    synthetic_export: int = doc(0, "> 0: first export this many synthetic videos per native format (CholecTrack20, NurViD, JIGSAWS, Cholec80-CVS) under OUT/native and curate those (the offline demo)")
    tasks: List[str] = doc(list(TEMPLATE_TASKS), "tasks to build (the template tasks; captions are a later stage)")
    records_per_video: int = doc(2, "records drawn per (video, task), each with its own seeded clip")
    seed: int = doc(0, "seed of every draw (clips, rates, templates, splits, balancing)")
    min_len: float = doc(8.0, "shortest clip in seconds (where the labels allow)")
    max_len: float = doc(120.0, "longest clip in seconds")
    frame_cap: int = doc(64, "most frames per clip; the sampling rate is lowered until a clip fits")
    fps_prior: Dict[str, float] = doc({"0.5": 0.633, "1.0": 0.22, "2.0": 0.075, "0.25": 0.072}, "sampling-rate prior (the published shares by default)")
    exclude: List[str] = doc([], "files or ids of videos that may not appear in the output (the public MedVidBench test file)")
    val_fraction: float = doc(0.0, "share of videos without an official split that go to val")
    standard_total: int = doc(51505, "size of the balanced standard set (0: no standard set)")
    balance_mode: str = doc("equal", "equal (water-filling over tasks, then sources) | cap")
    json_copies: bool = doc(False, "also write .json copies of the Parquet outputs")


@dataclass
class ProviderConfig:
    """One caption provider: an OpenAI-compatible chat endpoint (a hosted API or a local vLLM OpenAI server),
    paced and retried like `judge:` (medgrpo_ray/curation/providers.py builds the client from it)."""

    name: str = doc("gpt", "variant label: the records' qa_type suffix (<task>_<name>) and the provenance key")
    base_url: str = doc("https://api.openai.com/v1", "OpenAI-compatible endpoint (a local vLLM server: http://127.0.0.1:8000/v1)")
    model: str = doc("gpt-4.1", "model name sent to the endpoint (part of the cache key)")
    api_key_env: str = doc("OPENAI_API_KEY", "name of the environment variable holding the API key ('' for a local server without authentication; the key itself is never stored)")
    requests_per_minute: float = doc(300.0, "shared request rate limit (0 disables)")
    max_in_flight: int = doc(16, "bound on concurrent requests to this provider")
    timeout_s: float = doc(120.0, "deadline of one attempt")
    max_retries: int = doc(3, "retries after the first attempt (429, 5xx, timeouts, connection errors); Retry-After is honoured")
    backoff_initial_s: float = doc(1.0, "first retry wait; doubles per retry, plus jitter")
    backoff_max_s: float = doc(60.0, "cap on one retry wait (Retry-After included)")
    temperature: float = doc(0.2, "sampling temperature")
    max_tokens: int = doc(1024, "cap on the reply length")
    cache_dir: Optional[str] = doc("~/.cache/medgrpo_ray/captions", "persistent reply cache directory, keyed by (model, prompt version, input hash) (null disables)")
    price_per_1k_input: float = doc(0.002, "USD per 1k prompt tokens, for cost accounting")
    price_per_1k_output: float = doc(0.008, "USD per 1k completion tokens, for cost accounting")


def load_curation_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> CurationConfig:
    """Defaults <- YAML preset <- `key=value` overrides; ValueError naming the field at fault."""
    merged = OmegaConf.structured(CurationConfig)
    try:
        if path:
            if not Path(path).is_file():
                raise ValueError(f"curation config {path} does not exist (presets: configs/curation/)")
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ValueError(f"override {bad[0]!r} is not of the form key=value (e.g. seed=1)")
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as err:
        raise ValueError(f"invalid curation config: {err}") from None
    cfg: CurationConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    unknown = sorted(set(cfg.tasks) - set(TEMPLATE_TASKS))
    if unknown:
        raise ValueError(f"curation field 'tasks' has {unknown}; this stage builds {list(TEMPLATE_TASKS)}")
    if cfg.balance_mode not in ("equal", "cap"):
        raise ValueError(f"curation field 'balance_mode' = {cfg.balance_mode!r}: equal or cap")
    if cfg.records_per_video < 1 or cfg.frame_cap < 1 or not 0 <= cfg.val_fraction < 1:
        raise ValueError("curation fields: records_per_video and frame_cap must be >= 1, val_fraction in [0, 1)")
    return cfg
