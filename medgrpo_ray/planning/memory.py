"""Memory per GPU by part, estimated from a model's shape and the settings, without weights. Pure arithmetic.

Model states follow the ZeRO paper's mixed-precision Adam accounting (Rajbhandari et al. 2020, section 3 and
Figure 1; DeepSpeed's ZeRO docs): per parameter 2 B of bf16/fp16 weights, 2 B of gradients, 12 B of fp32 master
weights and Adam m and v. ZeRO-1 partitions the 12 B over the N ranks, ZeRO-2 the gradients too, ZeRO-3 the
weights too: 16 P / N per GPU, or 2 P + 14 P / N under ZeRO-2. In float32, weights and gradients take 4 B each and
Adam 8 B (no master copy). Frozen parameters (`learner.freeze_vision_tower`) have no gradients or optimizer state.
Everything else (buffers, activations, logits, vLLM) is a documented rough formula; docs/launch_plan.md.
"""
from __future__ import annotations

from dataclasses import dataclass

GIB = 1024 ** 3
# DeepSpeed 0.19 defaults the learner's config keeps (medgrpo_ray/learner/policy.py sets none of them)
REDUCE_BUCKET = 5e8  # elements: reduce_bucket_size (and allgather_bucket_size, ZeRO-1/2)
MAX_LIVE_PARAMS = 1e9  # stage3_max_live_parameters
SUB_GROUP = 1e9  # sub_group_size: ZeRO-3 steps the optimizer one sub-group of fp32 gradients at a time
RUNTIME_OVERHEAD = 2.0 * GIB  # CUDA context, cuBLAS workspace, NCCL communicators, allocator slack (assumed)
CUDA_GRAPHS = 1.0 * GIB  # vLLM's captured graphs (0.5-1.5 GiB for 3-8 B models; assumed)


@dataclass(frozen=True)
class Part:
    name: str
    bytes: float
    how: str  # the formula behind the number, printed beside it


def weight_bytes(dtype: str) -> int:
    return 4 if dtype == "float32" else 2


def model_states(params: float, trainable: float, stage: int, ranks: int, dtype: str) -> list[Part]:
    """Parameters, gradients and Adam states on one learner GPU under ZeRO `stage` over `ranks` ranks."""
    w, o = weight_bytes(dtype), (8 if dtype == "float32" else 12)
    n = max(1, ranks)
    p_div, g_div, o_div = (n if stage >= 3 else 1), (n if stage >= 2 else 1), (n if stage >= 1 else 1)

    def over(d: int) -> str:
        return f" / {d} ranks" if d > 1 else ""

    return [
        Part("parameters", w * params / p_div, f"{w} B x {params / 1e9:.2f} B params{over(p_div)}"),
        Part("gradients", w * trainable / g_div, f"{w} B x {trainable / 1e9:.2f} B trainable{over(g_div)}"),
        Part("optimizer states", o * trainable / o_div,
             f"{o} B x {trainable / 1e9:.2f} B trainable{over(o_div)} "
             f"({'fp32 master + ' if o == 12 else ''}Adam m, v)"),
    ]


def zero_buffers(params: float, trainable: float, stage: int, ranks: int, dtype: str) -> Part:
    """DeepSpeed's working buffers at its defaults: ZeRO-3 gathers up to MAX_LIVE_PARAMS weights, reduces in
    REDUCE_BUCKET buckets and steps one SUB_GROUP of fp32 gradients; ZeRO-0/1/2 keep a reduce (and all-gather)
    bucket and, in mixed precision, the fp32 gradients of the rank's optimizer partition at step time."""
    w, n = weight_bytes(dtype), max(1, ranks)
    mixed = dtype != "float32"
    bucket = min(REDUCE_BUCKET, trainable)
    if stage >= 3:
        fp32 = min(trainable / n, SUB_GROUP) * 4 if mixed else 0.0
        total = min(params, MAX_LIVE_PARAMS) * w + bucket * w + fp32
        how = "gathered weights (<= 1e9) + reduce bucket (5e8) + one fp32 gradient sub-group (<= 1e9)"
    else:
        part = trainable / (n if stage >= 1 else 1)
        fp32 = part * 4 if mixed else 0.0
        total = bucket * w * (2 if stage >= 1 else 1) + fp32
        how = "reduce/all-gather buckets (5e8 each)" + (" + fp32 gradients of the optimizer partition" if mixed else "")
    return Part("ZeRO buffers", total, how)


def activations(layers: int, hidden: int, intermediate: int, tokens: int, checkpointing: bool, dtype: str) -> Part:
    """Activations kept for backward in the text decoder, for a micro-batch of `tokens` tokens. A layer keeps about
    (8 h + 4 I) values per token (norms, q/k/v, attention output, residual; the MLP's gate, up, activation and
    product; SDPA/FlashAttention keep no T x T scores). With gradient checkpointing only each layer's input stays
    (L x T x h), plus one layer recomputed with its gradients during backward (2 x T x (8 h + 4 I))."""
    b = weight_bytes(dtype)
    per_layer = b * (8 * hidden + 4 * intermediate)
    if checkpointing:
        total = layers * tokens * hidden * b + 2 * tokens * per_layer
        how = f"{layers} layer inputs x {tokens} tokens x h + one layer recomputed (8h + 4I per token, x2 for grads)"
    else:
        total = layers * tokens * per_layer
        how = f"{layers} layers x {tokens} tokens x (8h + 4I) values (no gradient checkpointing)"
    return Part("activations", total, how)


def logits(vocab: int, tokens: int, completion_tokens: int, dtype: str, completion_only: bool = True) -> Part:
    """The LM head's output and its gradient - at the completion positions only with
    `learner.completion_only_logits` (the default), else at every position of the micro-batch - plus the fp32
    log-softmax and its gradient at the completion positions (where the loss is taken)."""
    b = weight_bytes(dtype)
    positions = completion_tokens if completion_only else tokens
    total = positions * vocab * 2 * b + completion_tokens * vocab * 4 * 2
    where = "completion" if completion_only else "all"
    return Part("logits", total, f"{positions} {where} positions x {vocab} vocab x (logits + grad) + fp32 "
                                 f"log-softmax at {completion_tokens} completion positions")


def reference_copy(params: float, dtype: str, mode: str = "full", ranks: int = 1, transient: float = 0.0) -> Part:
    """The colocated reference (`learner.reference_memory`, resolved): a full frozen copy on every learner GPU;
    `sharded` its ZeRO-3 partition (plus what one gathered layer needs, within the ZeRO buffers); `offload` the full
    copy only during the reference pass, when the `transient` parts (activations, logits) are not live, so only
    what exceeds them counts."""
    w = weight_bytes(dtype)
    full = params * w
    if mode == "sharded":
        return Part("reference model", full / ranks, f"{w} B x {params / 1e9:.2f} B params / {ranks} ranks (ZeRO-3 "
                                                     "sharded, learner.reference_memory)")
    if mode == "offload":
        return Part("reference model", max(0.0, full - transient),
                    f"full {w}-byte copy in host memory, on the GPU only for the reference pass: counts what exceeds "
                    "the activations and logits it displaces")
    return Part("reference model", full, f"full {w}-byte copy of {params / 1e9:.2f} B params (not sharded)")


def overhead() -> Part:
    return Part("CUDA/NCCL overhead", RUNTIME_OVERHEAD, "context, cuBLAS, communicators, allocator slack (assumed)")


@dataclass(frozen=True)
class VllmMemory:
    parts: list  # Part: weights, activation peak, CUDA graphs, KV cache (sums to the budget)
    budget: float  # gpu_memory_utilization x GPU memory
    kv_bytes_per_token: float
    kv_tokens: int  # tokens the KV cache holds (<= 0: nothing left for it)


def vllm_memory(params: float, layers: int, kv_heads: int, head_dim: int, intermediate: int, gpu_bytes: float,
                utilization: float, max_model_len: int, max_num_batched_tokens: int, dtype: str,
                cuda_graphs: bool) -> VllmMemory:
    """What vLLM does with its share of one GPU: weights, the peak of its profiling forward (rough: the MLP's
    gate/up/activation outputs, 3 x I values per token, at the scheduler's token budget), the CUDA graphs, and
    the KV cache in what is left (2 x layers x KV heads x head_dim values per token)."""
    w = weight_bytes(dtype)
    budget = utilization * gpu_bytes
    batch = max(max_num_batched_tokens, max_model_len)  # the engine raises the budget to max_model_len
    parts = [Part("vLLM weights", params * w, f"{w} B x {params / 1e9:.2f} B params"),
             Part("vLLM activation peak", batch * 3 * intermediate * w, f"{batch} batched tokens x 3 x I values"),
             Part("vLLM CUDA graphs", CUDA_GRAPHS if cuda_graphs else 0.0,
                  "captured graphs (assumed)" if cuda_graphs else "none (enforce_eager)")]
    kv = budget - sum(p.bytes for p in parts)
    per_token = 2 * layers * kv_heads * head_dim * w
    parts.append(Part("vLLM KV cache", max(kv, 0.0), f"the rest of {utilization:g} x GPU; "
                                                     f"{per_token / 1024:.0f} KiB per token"))
    return VllmMemory(parts, budget, per_token, int(kv // per_token) if kv > 0 else 0)
