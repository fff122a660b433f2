"""GPUs read, not assumed: the device of a GPU actor from Ray's assignment and CUDA_VISIBLE_DEVICES (masked or not),
the learner ranks' order by (node, physical GPU), the learner group's placement strategy, and the no-masking switch
reaching only GPU actors. Pure functions: no Ray cluster, no GPU."""
from __future__ import annotations

import pytest

from medgrpo_ray.config.devices import CPU, Device, local_device, process_device, sorted_gpu_ids
from medgrpo_ray.driver.placement import learner_strategy, rank_order, ranks_per_node


def test_masked_actor_sees_one_gpu_at_index_0():
    """Ray's default: CUDA_VISIBLE_DEVICES is the actor's own GPU, so torch index 0 whatever its physical id."""
    for noset in (False, True):  # a masked view reads the same whichever way it came about
        assert process_device(["5"], "5", noset) == Device(0, 0)
    assert process_device([3], "3", False).torch == "cuda:0"


def test_noset_actor_picks_the_physical_gpu_it_was_assigned():
    assert process_device([5], None, True) == Device(5, 5)  # every GPU visible, CUDA_VISIBLE_DEVICES unset
    assert process_device(["5"], "0,1,2,3,4,5,6,7", True) == Device(5, 5)
    assert process_device(["5"], "4,5,6,7", True) == Device(1, 1)  # the node itself was started with 4..7
    assert process_device(["GPU-b2", "GPU-a1"], "GPU-a1,GPU-b2", True) == Device(0, 0)  # UUIDs: by position
    assert process_device([6, 2], None, True).torch == "cuda:2"  # several: the lowest id


def test_cpu_actor_and_the_errors_name_the_setting():
    assert process_device([], None, False) == CPU and CPU.torch == "cpu" and CPU.local_rank == 0
    assert process_device([], "0,1", True) == CPU
    with pytest.raises(ValueError, match=r"noset_cuda_visible_devices.*CUDA_VISIBLE_DEVICES"):
        process_device(["5"], "0,1", True)
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES is unset"):
        process_device(["GPU-a1"], None, True)
    assert local_device(True) == Device(0, 0) and local_device(False) == CPU


def test_ranks_follow_node_then_physical_gpu():
    """Bundles land as (node B, GPU 3), (A, 1), (B, 0), (A, 0): ranks go A0, A1, B0, B3."""
    assert rank_order([("B", ["3"]), ("A", [1]), ("B", ["0"]), ("A", [0])]) == [3, 1, 2, 0]
    assert rank_order([("A", ["10"]), ("A", ["9"])]) == [1, 0]  # numeric, not text order
    assert rank_order([("A", []), ("A", []), ("B", [])]) == [0, 1, 2]  # CPU ranks keep their bundle order
    assert sorted_gpu_ids([10, "2", 9]) == ["2", "9", "10"]


def test_learner_group_strict_pack_when_one_node_holds_it():
    eight = [(128.0, 8.0)]
    assert learner_strategy(4, 8, 1, eight) == "STRICT_PACK"
    assert learner_strategy(4, 8, 1, [(64.0, 4.0), (128.0, 8.0)]) == "STRICT_PACK"  # the second node holds all 4
    assert learner_strategy(8, 8, 1, [(64.0, 4.0), (64.0, 4.0)]) == "PACK"  # two nodes needed
    assert learner_strategy(2, 1, 0, [(8.0, 0.0)]) == "STRICT_PACK"  # CPU only: by CPUs
    assert ranks_per_node(16, 8, 8, 1) == 2  # CPUs bound it


def test_learner_group_that_never_fits_is_an_error_naming_the_settings():
    with pytest.raises(ValueError, match=r"learner\.num_ranks=16 .*learner\.num_gpus_per_rank=1 .*8 such rank"):
        learner_strategy(16, 8, 1, [(128.0, 8.0)])
    with pytest.raises(ValueError, match="learner.num_ranks=1"):
        learner_strategy(1, 1, 1, [(8.0, 0.0)])  # no GPU anywhere


def test_noset_switch_reaches_gpu_actors_only():
    from medgrpo_ray.config import load_config
    from medgrpo_ray.driver.cluster import NOSET_CUDA_VISIBLE_DEVICES, actor_options

    on = load_config(None, ["ray.noset_cuda_visible_devices=true"])
    assert actor_options(on, "r", num_gpus=1)["runtime_env"]["env_vars"][NOSET_CUDA_VISIBLE_DEVICES] == "1"
    assert NOSET_CUDA_VISIBLE_DEVICES not in actor_options(on, "w", num_cpus=0)["runtime_env"]["env_vars"]
    off = load_config(None, [])
    assert NOSET_CUDA_VISIBLE_DEVICES not in actor_options(off, "r", num_gpus=1)["runtime_env"]["env_vars"]


def test_gpu_presets_carry_the_nccl_environment():
    from pathlib import Path

    from medgrpo_ray.config import load_config

    root = Path(__file__).resolve().parents[1]
    for name in ("qwen2_5_vl_7b.yaml", "qwen3_vl_4b.yaml"):
        cfg = load_config(str(root / "configs" / name), [])
        assert cfg.ray.env_vars["NCCL_NVLS_ENABLE"] == "0", name
        assert "NVIDIA/nccl#1906" in (root / "configs" / name).read_text()
