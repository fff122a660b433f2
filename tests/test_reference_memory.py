"""The colocated reference's memory modes (learner/reference.py): the mode each setting resolves to, and on two
gloo ranks under ZeRO-3 the sharded reference (its own ZeRO-3 engine, partitioned over the ranks) gives the full
copy's log-probs while each rank holds only its share of the weights."""
from __future__ import annotations

import json
import os
import socket

import pytest
import torch.multiprocessing as mp

from medgrpo_ray.config.loader import resolve_reference_memory
from medgrpo_ray.learner.reference import reference_deepspeed_config


@pytest.mark.parametrize("mode,stage,expected", [("auto", 3, "sharded"), ("auto", 2, "full"), ("full", 3, "full"),
                                                 ("offload", 1, "offload"), ("sharded", 3, "sharded")])
def test_modes_resolve_by_zero_stage(mode, stage, expected):
    assert resolve_reference_memory(mode, stage) == expected


def test_sharded_needs_zero3_and_unknown_modes_are_refused():
    with pytest.raises(ValueError, match="learner.zero_stage = 2"):
        resolve_reference_memory("sharded", 2)
    with pytest.raises(ValueError, match="choose auto, full"):
        resolve_reference_memory("half", 3)
    from medgrpo_ray.config import load_config

    with pytest.raises(ValueError, match="learner.reference_memory"):
        load_config(None, ["learner.reference_memory=sharded", "learner.zero_stage=2"])


def test_the_reference_engine_config_has_no_optimizer():
    from medgrpo_ray.config import load_config
    from medgrpo_ray.learner.policy import deepspeed_config

    ref = reference_deepspeed_config(deepspeed_config(load_config(None, ["learner.zero_stage=1"])))
    assert "optimizer" not in ref and "gradient_clipping" not in ref and ref["zero_optimization"] == {"stage": 3}


def _rank(rank: int, port: int, model_dir: str, video: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK="0", DS_ACCELERATOR="cpu")
    import deepspeed
    import torch

    from medgrpo_ray.config import load_config
    from medgrpo_ray.data.prompts import budget_for, hf_inputs, prompt_text
    from medgrpo_ray.data.video import decode_video
    from medgrpo_ray.grpo.logprobs import LogprobSample, completion_logprobs
    from medgrpo_ray.learner.policy import deepspeed_config
    from medgrpo_ray.learner.reference import ColocatedReference
    from medgrpo_ray.models.loading import load_processor

    torch.set_num_threads(1)
    deepspeed.init_distributed(dist_backend="gloo", rank=rank, world_size=2, auto_mpi_discovery=False)
    proc = load_processor(model_dir)
    clip = decode_video(video, fps=1.0, start_s=0.0, end_s=2.0, budget=budget_for(proc, 2, 3136, 3136))
    inputs = hf_inputs(proc, prompt_text(proc, "What happens next?"), clip)
    ids = proc.tokenizer("the grasper retracts the tissue", add_special_tokens=False)["input_ids"]
    samples = [LogprobSample.from_processor(inputs, ids), LogprobSample.from_processor(inputs, ids[:3])]
    result = {}
    for mode in ("full", "sharded"):
        cfg = load_config(None, ["learner.zero_stage=3", f"learner.reference_memory={mode}"])
        ref = ColocatedReference(cfg, model_dir, torch.device("cpu"), deepspeed_config(cfg))
        with torch.no_grad(), ref.on_device():
            lp, mask = ref.logprobs(lambda m, s, forward=None: completion_logprobs(m, s, proc.tokenizer.pad_token_id,
                                                                                forward=forward), samples)
        held = sum((p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel()) for p in ref.module.parameters())
        total = sum((p.ds_numel if hasattr(p, "ds_numel") else p.numel()) for p in ref.module.parameters())
        result[mode] = {"mode": ref.mode, "lp": lp[mask].tolist(), "held": held, "total": total}
    with open(out, "w") as f:
        json.dump(result, f)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_sharded_reference_gives_the_full_copys_logprobs_with_half_the_weights(tmp_path, tiny_vlm_dir, demo_video):
    port = _free_port()
    outs = [str(tmp_path / f"rank{r}.json") for r in (0, 1)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_rank, args=(r, port, str(tiny_vlm_dir), str(demo_video), outs[r])) for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0, f"rank process exited {p.exitcode}"
    for out in outs:
        r = json.loads(open(out).read())
        assert (r["full"]["mode"], r["sharded"]["mode"]) == ("full", "sharded")
        assert len(r["full"]["lp"]) == len(r["sharded"]["lp"]) > 3  # every completion token of both samples
        assert max(abs(a - b) for a, b in zip(r["full"]["lp"], r["sharded"]["lp"])) <= 1e-6
        assert r["full"]["held"] == r["full"]["total"] == r["sharded"]["total"]
        assert r["sharded"]["held"] <= r["sharded"]["total"] / 2 + 1024  # its own partition (plus padding)
