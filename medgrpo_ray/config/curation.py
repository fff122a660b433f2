"""Settings of the curation stage (launch/curate.py): one place for its defaults, OmegaConf-typed like the
experiment config, YAML presets in configs/curation/ and dotlist overrides."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from medgrpo_ray.config.schema import doc

TEMPLATE_TASKS = ("tal", "stg", "next_action", "skill_assessment", "cvs_assessment")
CAPTION_TASKS = ("dense_captioning", "video_summary", "region_caption")  # = curation.caption_units.CAPTION_TASKS


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


@dataclass
class CaptionsConfig:
    """The caption stage (curation/caption_run.py) and the validation rule's thresholds (curation/validate.py:
    `ValidationSettings`, ours; calibrate as its docstring says)."""

    max_in_flight: int = doc(32, "bound on caption requests in flight, both providers together (each provider's own max_in_flight bounds it as well)")
    send_frames: bool = doc(True, "send each unit's sampled frames, with its boxes, names, time and phase drawn on them, as JPEG image parts (false: the per-frame text only)")
    max_frames: int = doc(8, "most frames sent per unit, evenly spaced over the clip")
    frame_size: int = doc(448, "longest side of a sent frame in pixels (frames are never enlarged)")
    ray_min_units: Optional[int] = doc(256, "render the frames on Ray CPU tasks when at least this many caption units are pending (a running cluster when RAY_ADDRESS is set or Ray is initialized, else a local one); fewer: in this process (null: always here)")
    tokens_per_image: int = doc(255, "--dry-run: input tokens per sent frame (OpenAI high detail, one 512 px tile: 85 + 170)")
    embedder: Optional[str] = doc(None, "sentence-embedding model directory (all-MiniLM-L6-v2) for the agreement s; null: a lexical bag-of-words cosine (offline; weaker on paraphrases)")
    min_words: Dict[str, int] = doc({"dense_captioning": 10, "video_summary": 30, "region_caption": 10}, "fewest words per caption (DVC: per segment)")
    max_words: Dict[str, int] = doc({"dense_captioning": 60, "video_summary": 200, "region_caption": 60}, "most words per caption (DVC: per segment)")
    min_grounding: float = doc(1.0, "g: share of the unit's required facts a caption must mention")
    max_invented: int = doc(0, "h: closed-vocabulary terms a caption may name that the annotations do not support")
    min_agreement: float = doc(0.75, "tau_s: embedding cosine at which two grounded captions agree")
    disagree_policy: str = doc("review", "both grounded but disagreeing: review (to OUT/review.jsonl, not kept) | drop | keep_both")
    max_attempts: int = doc(2, "generations per unit: the first and one regeneration naming the missing facts")
    chars_per_token: float = doc(4.0, "--dry-run: prompt characters per token for the input-token estimate")
    output_tokens: Dict[str, int] = doc({"dense_captioning": 400, "video_summary": 250, "region_caption": 100}, "--dry-run: expected reply tokens per unit and task")


@dataclass
class CurationConfig:
    sources: Dict[str, Any] = doc({}, "canonical dataset name -> local root of its native files, or {root: ..., <converter option>: ...} (docs/curation.md lists the formats read)")
    synthetic_export: int = doc(0, "> 0: first export this many synthetic videos per native format (CholecTrack20, NurViD, JIGSAWS, Cholec80-CVS) under OUT/native and curate those (the offline demo)")
    tasks: List[str] = doc(list(TEMPLATE_TASKS), "tasks to build: template tasks (tal stg next_action skill_assessment cvs_assessment) and caption tasks (dense_captioning video_summary region_caption: need two `providers`)")
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
    frames: str = doc("video", "the records' `video`: video (the source's video file with metadata start_time / end_time, or its stored frames) | jpeg (the released layout: each record's sampled frames written once as OUT/frames/<source>/<video>/<native frame>.jpg, listed relative to OUT)")
    json_copies: bool = doc(False, "also write .json copies of the Parquet outputs")
    providers: List[ProviderConfig] = doc([], "the two caption providers (OpenAI-compatible endpoints, like `judge:`), needed when `tasks` has a caption task; their names are the records' variants (<task>_<name>)")
    captions: CaptionsConfig = field(default_factory=CaptionsConfig, metadata={"doc": "caption stage: requests in flight, agreement embedder, validation thresholds, dry-run cost estimate"})


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
    unknown = sorted(set(cfg.tasks) - set(TEMPLATE_TASKS) - set(CAPTION_TASKS))
    if unknown:
        raise ValueError(f"curation field 'tasks' has {unknown}; this stage builds {list(TEMPLATE_TASKS)} and "
                         f"{list(CAPTION_TASKS)}")
    check_captions(cfg)
    if cfg.frames not in ("video", "jpeg"):
        raise ValueError(f"curation field 'frames' = {cfg.frames!r}: video or jpeg")
    if cfg.balance_mode not in ("equal", "cap"):
        raise ValueError(f"curation field 'balance_mode' = {cfg.balance_mode!r}: equal or cap")
    if cfg.records_per_video < 1 or cfg.frame_cap < 1 or not 0 <= cfg.val_fraction < 1:
        raise ValueError("curation fields: records_per_video and frame_cap must be >= 1, val_fraction in [0, 1)")
    return cfg


def check_captions(cfg: CurationConfig) -> None:
    """The caption settings make sense (providers are checked for presence only when a run needs them)."""
    c = cfg.captions
    names = [p.name for p in cfg.providers]
    if cfg.providers and len(cfg.providers) != 2:
        raise ValueError(f"curation field 'providers' has {len(names)} entries {names}; the rule compares exactly two")
    if len(set(names)) != len(names) or any(not n for n in names):
        raise ValueError(f"curation field 'providers': names {names} must be distinct and non-empty (the variants)")
    if c.max_frames < 1 or c.frame_size < 32 or c.tokens_per_image < 0:
        raise ValueError(f"curation fields: captions.max_frames={c.max_frames} must be >= 1, captions.frame_size="
                         f"{c.frame_size} >= 32, captions.tokens_per_image={c.tokens_per_image} >= 0")
    if c.ray_min_units is not None and c.ray_min_units < 1:
        raise ValueError(f"curation field 'captions.ray_min_units' = {c.ray_min_units}: >= 1, or null (never Ray)")
    if c.max_in_flight < 1 or c.max_attempts < 1 or c.chars_per_token <= 0:
        raise ValueError("curation fields: captions.max_in_flight and captions.max_attempts must be >= 1, "
                         "captions.chars_per_token > 0")
    if c.disagree_policy not in ("review", "drop", "keep_both"):
        raise ValueError(f"curation field 'captions.disagree_policy' = {c.disagree_policy!r}: review, drop or keep_both")
    for name in ("min_words", "max_words", "output_tokens"):
        missing = sorted(set(CAPTION_TASKS) - set(getattr(c, name)))
        if missing:
            raise ValueError(f"curation field 'captions.{name}' lacks {missing}")
