"""The launch plan: the memory estimator against hand-worked numbers (the ZeRO paper's and DeepSpeed's model-state
accounting), model shapes without weights, placement on nodes, the verdicts, and `--dry-run` on the GPU preset
(fits on an assumed 8 x 80 GB node; ZeRO-2 over 2 ranks does not, naming the part)."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medgrpo_ray.config import load_config
from medgrpo_ray.planning.cluster import Cluster, Node, actor_groups, place
from medgrpo_ray.planning.memory import GIB, model_states, vllm_memory, zero_buffers
from medgrpo_ray.planning.models import KNOWN, known_shape, shape_from_checkpoint
from medgrpo_ray.planning.plan import build_plan, token_budget
from medgrpo_ray.planning.probe import checkpoint_shape, model_shape

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "qwen2_5_vl_7b.yaml"
NODE_8X80 = Cluster((Node("node0", 96, 8, 79.6 * GIB),), "test node")


def states(params, stage, ranks, trainable=None, dtype="bfloat16"):
    return sum(p.bytes for p in model_states(params, trainable or params, stage, ranks, dtype))


def test_zero_paper_figure_1_numbers():
    # Rajbhandari et al. 2020, Figure 1: 7.5 B parameters, 64 GPUs, K = 12 -> 120, 31.4, 16.6, 1.9 GB per GPU
    p = 7.5e9
    assert [round(states(p, stage, 64) / 1e9, 1) for stage in (0, 1, 2, 3)] == [120.0, 31.4, 16.6, 1.9]


def test_deepspeed_model_state_formulas_for_7b():
    p, n = 7e9, 8
    assert states(p, 3, n) == pytest.approx(16 * p / n)  # ZeRO-3: 16 P / N
    assert states(p, 2, n) == pytest.approx(2 * p + 14 * p / n)  # ZeRO-2: 2 P + 14 P / N
    assert states(p, 1, n) == pytest.approx(4 * p + 12 * p / n)
    parts = {x.name: x.bytes for x in model_states(p, p, 3, n, "bfloat16")}
    assert parts == {"parameters": 2 * p / n, "gradients": 2 * p / n, "optimizer states": 12 * p / n}


def test_frozen_parameters_have_no_gradients_or_optimizer_state_and_fp32_has_no_master_copy():
    parts = {x.name: x.bytes for x in model_states(10e9, 8e9, 2, 4, "bfloat16")}
    assert parts == {"parameters": 20e9, "gradients": 2 * 8e9 / 4, "optimizer states": 12 * 8e9 / 4}
    assert states(1e9, 0, 1, dtype="float32") == 16e9  # 4 + 4 + Adam 8


def test_zero_buffers_follow_deepspeed_defaults():
    z3 = zero_buffers(8e9, 8e9, 3, 4, "bfloat16").bytes  # 1e9 gathered + 5e8 bucket in bf16 + 1e9 fp32 sub-group
    assert z3 == pytest.approx(2e9 + 1e9 + 4e9)
    z2 = zero_buffers(8e9, 8e9, 2, 2, "bfloat16").bytes  # two 5e8 buckets + fp32 grads of a 4e9 partition
    assert z2 == pytest.approx(2e9 + 16e9)


def test_vllm_kv_cache_for_the_7b_preset_by_hand():
    s = KNOWN["qwen2.5-vl-7b"]
    vm = vllm_memory(s.params, s.layers, s.kv_heads, s.head_dim, s.intermediate, 80 * GIB, 0.85, 32768, 65536,
                     "bfloat16", cuda_graphs=True)
    assert vm.kv_bytes_per_token == 2 * 28 * 4 * 128 * 2 == 57344  # 56 KiB
    rest = 0.85 * 80 * GIB - 2 * s.params - 65536 * 3 * 18944 * 2 - GIB
    assert vm.kv_tokens == int(rest // 57344)
    assert sum(p.bytes for p in vm.parts) == pytest.approx(vm.budget)


@pytest.mark.parametrize("path, name", [
    ("/models/Qwen2.5-VL-7B-MedVidBench-SFT", "Qwen2.5-VL-7B"), ("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen2.5-VL-3B"),
    ("/ckpt/qwen2_5_vl_7b_sft", "Qwen2.5-VL-7B"), ("/models/Qwen3-VL-4B-Instruct", "Qwen3-VL-4B"),
    ("tiny:qwen3_vl", "tiny Qwen3-VL"), ("/models/Qwen2.5-VL-72B", None), ("/models/llama", None)])
def test_known_architectures_by_name(path, name):
    shape = known_shape(path)
    assert (shape.name if shape else None) == name


def test_published_parameter_counts():
    assert [round(KNOWN[k].params / 1e9, 2) for k in ("qwen2.5-vl-3b", "qwen2.5-vl-7b", "qwen3-vl-4b")] == [
        3.75, 8.29, 4.44]


def _write_safetensors(path: Path, shapes: dict) -> None:
    header = json.dumps({"__metadata__": {"format": "pt"},
                         **{k: {"dtype": "BF16", "shape": v, "data_offsets": [0, 0]} for k, v in shapes.items()}})
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode())  # the header alone: no weight is read


def test_a_local_checkpoint_is_sized_from_its_headers(tmp_path):
    config = {"model_type": "qwen2_5_vl", "text_config": {"hidden_size": 64, "num_hidden_layers": 2,
              "intermediate_size": 128, "vocab_size": 1000, "num_attention_heads": 4, "num_key_value_heads": 2},
              "vision_config": {"patch_size": 14, "spatial_merge_size": 2}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    _write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"model.embed_tokens.weight": [1000, 64]})
    _write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"model.visual.blocks.0.w": [64, 64]})
    shape = checkpoint_shape(tmp_path)
    assert (shape.params, shape.vision_params, shape.head_dim, shape.kv_heads) == (68096, 4096, 16, 2)
    assert shape.merge_px == 28
    assert model_shape(str(tmp_path)) == shape
    assert shape_from_checkpoint(config, {"a": 1}, "x").layers == 2
    with pytest.raises(ValueError, match="model.path=/nowhere/custom"):
        model_shape("/nowhere/custom")


def test_tokens_per_sample_and_micro_batch_for_the_preset():
    cfg = load_config(PRESET, [])
    t = token_budget(cfg, KNOWN["qwen2.5-vl-7b"])
    assert t.visual == 16 * 48  # 32 frames / 2 x (37632 px / 28^2)
    assert (t.sample, t.per_micro_batch, t.completion_per_micro_batch) == (768 + 256 + 512, 2 * 1536, 2 * 512)
    cfg = load_config(PRESET, ["learner.micro_batch_tokens=1000"])
    assert token_budget(cfg, KNOWN["qwen2.5-vl-7b"]).samples_per_micro_batch == 1  # a long sample goes alone


def test_placement_packs_the_learner_and_reports_what_does_not_fit():
    groups = actor_groups(load_config(PRESET, []))
    assert [(g.name, g.count, g.cpus, g.gpus) for g in groups] == [
        ("rollout", 4, 4, 1), ("reward", 4, 0, 0), ("judge", 2, 0, 0), ("learner", 4, 8, 1)]
    one = {p.group.name: p.nodes for p in place(groups, NODE_8X80)}
    assert one["learner"] == ["node0"] * 4
    two = Cluster((Node("a", 48, 4), Node("b", 48, 4)), "two nodes")
    placed = {p.group.name: p.nodes for p in place(groups, two)}
    assert placed["rollout"] == ["a"] * 4 and placed["learner"] == ["b"] * 4
    small = Cluster((Node("a", 48, 4),), "one small node")
    assert None in {p.group.name: p.nodes for p in place(groups, small)}["learner"]


def test_the_preset_fits_an_8x80_node_and_zero2_over_two_ranks_does_not():
    shape = KNOWN["qwen2.5-vl-7b"]
    plan = build_plan(load_config(PRESET, []), shape, NODE_8X80)
    assert plan.problems == []
    learner = plan.tables[0]
    # The review's hand estimate, about 60-66 GB, was for a full reference copy and logits at every position; the
    # sharded reference (auto under ZeRO-3: 15.4 -> 3.9 GiB) and completion-only logits (2.9 -> 1.7) take 12.7 off.
    old = build_plan(load_config(PRESET, ["learner.reference_memory=full", "learner.completion_only_logits=false"]),
                     shape, NODE_8X80).tables[0]
    assert 50 * GIB < old.total < 70 * GIB
    assert old.total - learner.total == pytest.approx((15.4 - 3.85 + 2.9 - 1.7) * GIB, rel=0.02)
    parts = {p.name: p.bytes for p in learner.parts}
    assert parts["reference model"] == pytest.approx(shape.params * 2 / 4)
    bad = build_plan(load_config(PRESET, ["learner.num_ranks=2", "learner.zero_stage=2"]), shape, NODE_8X80)
    [msg] = bad.problems
    assert msg.startswith("learner (learner.zero_stage=2, learner.num_ranks=2): does not fit")
    assert "optimizer states 46.3 GiB" in msg


def test_rollout_and_resource_verdicts_name_the_setting():
    shape = KNOWN["qwen2.5-vl-7b"]
    plan = build_plan(load_config(PRESET, ["rollout.gpu_memory_utilization=0.3"]), shape, NODE_8X80)
    assert any("rollout.max_model_len=32768" in p and "vLLM refuses to start" in p for p in plan.problems)
    plan = build_plan(load_config(PRESET, ["rollout.num_gpus_per_worker=0.5"]), shape, NODE_8X80)
    assert any("2 vLLM engines share a GPU" in p for p in plan.problems)
    plan = build_plan(load_config(PRESET, ["rollout.num_workers=6"]), shape, NODE_8X80)
    assert any(p.startswith("resources: the run reserves 10 GPUs, the cluster has 8") for p in plan.problems)


def _dry_run(*overrides: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    start = time.monotonic()
    out = subprocess.run([sys.executable, "launch/train.py", "--config", str(PRESET), *overrides, "--dry-run"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    return out, time.monotonic() - start


def test_dry_run_of_the_gpu_preset_prints_the_plan_and_fits():
    out, elapsed = _dry_run()
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for expected in ("cluster: ASSUMED (not detected): one node with 8 GPUs x 79.6 GiB", "learner (DeepSpeed ZeRO-3",
                     "memory per GPU: learner rank (ZeRO-3 over 4 ranks)", "optimizer states",
                     "memory per GPU: rollout worker (vLLM", "vLLM KV cache", "result: fits"):
        assert expected in text, f"missing {expected!r} in:\n{text}"
    assert elapsed < 30, f"the dry run took {elapsed:.1f} s"


def test_dry_run_with_zero2_over_two_ranks_does_not_fit_and_names_the_part():
    out, _ = _dry_run("learner.num_ranks=2", "learner.zero_stage=2")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "result: DOES NOT FIT" in out.stdout
    assert "learner (learner.zero_stage=2, learner.num_ranks=2): does not fit" in out.stdout
    assert "79.6 GiB there; largest parts: optimizer states" in out.stdout


def test_dry_run_starts_no_ray_and_loads_no_model():
    code = ("import sys\nfrom medgrpo_ray.cli.sft import main\n"
            f"rc = main(['--config', {str(PRESET)!r}, '--dry-run'])\n"
            "print(rc, [m for m in ('ray', 'transformers', 'vllm', 'deepspeed') if m in sys.modules])\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stdout.startswith("SFT launch plan for")


def test_a_running_cluster_is_read_from_ray_without_starting_workers(monkeypatch):
    import types

    from medgrpo_ray.cli.launch_plan import describe_cluster

    calls = []
    fake = types.SimpleNamespace(
        init=lambda **kw: calls.append(("init", kw["address"])), shutdown=lambda: calls.append(("shutdown",)),
        nodes=lambda: [{"Alive": True, "NodeManagerAddress": "10.0.0.1",
                        "Resources": {"CPU": 192.0, "GPU": 8.0, "accelerator_type:H200": 1.0}},
                       {"Alive": False, "Resources": {"CPU": 8.0}}])
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    cluster, cuda = describe_cluster(load_config(PRESET, []), None)
    assert calls == [("init", "10.0.0.1:6379"), ("shutdown",)] and cuda is None
    [node] = cluster.nodes
    assert (node.cpus, node.gpus, round(node.gpu_memory / GIB, 1), node.gpu_type) == (192.0, 8.0, 140.4, "H200")
    assert cluster.description.startswith("connected to 10.0.0.1:6379: 1 node(s), 192 CPUs, 8 GPUs")


def test_colocated_layout_tables_add_up_per_phase_on_an_8x80_node():
    """placement=colocated on the 7B preset over 8 ranks: one bundle per GPU (rank + engine, no rollout group);
    static keeps both resident (learner + vLLM's 0.85 share does not fit, a smaller share does), sleep peaks at the
    larger phase: the update (learner only) or generation (vLLM's share + the learner's 16-bit parameters, its
    sharded reference and the runtime)."""
    shape = KNOWN["qwen2.5-vl-7b"]
    colo = ["placement=colocated", "learner.num_ranks=8", "rollout.num_workers=8"]
    split = build_plan(load_config(PRESET, ["learner.num_ranks=8"]), shape, NODE_8X80)
    learner_total = split.tables[0].total  # the same learner rank's parts in either layout
    vllm_budget = 0.85 * 79.6 * GIB

    static = build_plan(load_config(PRESET, colo), shape, NODE_8X80)
    assert [g.name for g in actor_groups(load_config(PRESET, colo))] == ["reward", "judge", "learner"]
    [table] = static.tables
    assert table.total == pytest.approx(learner_total + vllm_budget)
    [msg] = static.problems
    assert msg.startswith("colocated (static)") and "rollout.gpu_memory_utilization" in msg and "sleep" in msg
    smaller = build_plan(load_config(PRESET, colo + ["rollout.gpu_memory_utilization=0.35"]), shape, NODE_8X80)
    assert smaller.problems == [] and smaller.tables[0].total == pytest.approx(learner_total + 0.35 * 79.6 * GIB)

    sleep = build_plan(load_config(PRESET, colo + ["rollout.colocated_memory=sleep"]), shape, NODE_8X80)
    update, generate = sleep.tables
    parts = {p.name: p.bytes for p in update.parts}
    assert update.total == pytest.approx(learner_total)
    kept = parts["parameters"] + parts["reference model"] + 2.0 * GIB
    assert generate.total == pytest.approx(kept + vllm_budget) and sleep.problems == []
    assert len(sleep.layouts) == 3 and sleep.layouts[2].strip().startswith("colocated, sleep:   8 GPUs")
