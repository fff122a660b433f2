"""The learner's `train_step` against the floor: a plain forward + backward + optimizer step of the same model on
the same tokens and pixels, in one process and one run. Writes benchmarks/results/learner.json.

Batch: the quickstart's (configs/quickstart_cpu.yaml: tiny Qwen2.5-VL, next-action records of the synthetic
benchmark, 8 prompts x G = 8 = 64 completions, micro-batches of 16), no KL. Three things alternate, `--reps`
times each after one warm-up: the learner as it was (`algorithm.recompute_old_logprobs=true`: a separate
no-grad forward for the old log-probs), the learner as it is (old log-probs = the training forward's, detached,
with one update per step), and the floor (an HF copy of the model and torch AdamW; its inputs are prepared once
outside the timing, so the floor is the model's compute alone). Then, unless `--no-quickstart`, the quickstart's
step time before and after: short `launch/train.py` runs, alternated, first step excluded.

    .venv/bin/python benchmarks/bench_learner.py [--reps 5] [--quickstart-steps 8] [--quickstart-runs 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_batch(cfg, learner, records, prompts: int, group: int):
    import random

    from medgrpo_ray.grpo.batch import TrainSample, shard_samples

    tok = learner.processor.tokenizer
    rng = random.Random(0)
    samples = []
    for g, rec in enumerate(records[:prompts]):
        answer = rec.conversations[1]["value"]
        ids = tok(answer, add_special_tokens=False)["input_ids"][: cfg.rollout.max_new_tokens] + [tok.eos_token_id]
        for _ in range(group):
            samples.append(TrainSample(group_id=g, record=rec.to_dict(), completion_ids=list(ids),
                                       advantage=rng.choice([-1.0, 1.0]), dataset=rec.dataset, task=rec.task))
    return shard_samples(samples, 1, cfg.learner.micro_batch_size)[0]


def floor_step(model, opt, prepared, pad_id) -> None:
    """One plain step: forward + backward over every micro-batch, one AdamW step."""
    from medgrpo_ray.grpo.logprobs import completion_logprobs

    opt.zero_grad(set_to_none=True)
    for samples, adv in prepared:
        lp, mask = completion_logprobs(model, samples, pad_id=pad_id)
        loss = -((lp * mask).sum(-1) * adv).sum() / mask.sum()
        loss.backward()
    opt.step()


def learner_part(reps: int, tmp: Path) -> dict:
    import torch

    from medgrpo_ray.config import load_config
    from medgrpo_ray.data.records_io import load_records
    from medgrpo_ray.data.synthetic import generate
    from medgrpo_ray.learner.policy import PolicyLearner
    from medgrpo_ray.models.loading import load_policy, resolve_model_path
    from medgrpo_ray.driver.trainer import select_records
    from medgrpo_ray.weight_sync.collective import free_port

    cfg = load_config(str(ROOT / "configs/quickstart_cpu.yaml"), ["algorithm.kl_coef=0.0", f"data.video_root={tmp / 'syn'}"])
    generate(tmp / "syn", seed=0, n_train=96, n_test=0)
    records = select_records(load_records(tmp / "syn" / "train.json")[0], cfg.data.tasks, cfg.data.datasets)
    model_dir = resolve_model_path(cfg.model.path, cfg.model.cache_dir, cfg.model.tiny_seed)
    torch.set_num_threads(1)  # as in a Ray actor (one OMP thread); both sides the same
    learner = PolicyLearner(cfg, model_dir, 0, 1, "127.0.0.1", free_port())
    shard = make_batch(cfg, learner, records, cfg.algorithm.prompts_per_step, cfg.algorithm.group_size)
    n_samples = sum(len(mb) for mb in shard.micro_batches)

    model = load_policy(model_dir, dtype=cfg.model.dtype, attn_implementation=cfg.model.attn_implementation)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learner.lr)
    inputs, _ = learner.inputs.group_inputs([s for mb in shard.micro_batches for s in mb])
    prepared = [(learner.inputs.logprob_samples(mb, inputs), torch.tensor([s.advantage for s in mb]))
                for mb in shard.micro_batches]

    before = dataclasses.replace(cfg, algorithm=dataclasses.replace(cfg.algorithm, recompute_old_logprobs=True))
    after = dataclasses.replace(cfg, algorithm=dataclasses.replace(cfg.algorithm, recompute_old_logprobs=False))
    times: dict[str, list[float]] = {"learner_before": [], "learner_after": [], "floor": []}
    for rep in range(reps + 1):
        for name in times:
            t0 = time.perf_counter()
            if name == "floor":
                floor_step(model, opt, prepared, learner.pad_id)
            else:
                learner.cfg = before if name == "learner_before" else after
                learner.train_step(dataclasses.replace(shard))
            if rep:
                times[name].append(time.perf_counter() - t0)
    learner.shutdown()
    mean = {k: sum(v) / len(v) for k, v in times.items()}
    return {"samples": n_samples, "micro_batches": len(shard.micro_batches),
            "completion_tokens": sum(len(s.completion_ids) for mb in shard.micro_batches for s in mb),
            "mean_s": {k: round(v, 4) for k, v in mean.items()}, "all_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
            "ratio_over_floor": {"before": round(mean["learner_before"] / mean["floor"], 3),
                                 "after": round(mean["learner_after"] / mean["floor"], 3)}}


def quickstart_part(runs: int, steps: int, tmp: Path) -> dict:
    out: dict[str, list[float]] = {"before": [], "after": []}
    for k in range(runs):
        for name, flag in (("before", "true"), ("after", "false")):  # alternated
            run = f"qs-{name}-{k}"
            args = [sys.executable, str(ROOT / "launch/train.py"), "--config", str(ROOT / "configs/quickstart_cpu.yaml"),
                    f"run_name={run}", f"logging.output_dir={tmp / 'runs'}", f"data.synthetic_dir={tmp / 'qsyn'}",
                    f"algorithm.total_steps={steps}", "algorithm.eval_every=0", "checkpoint.every_n_steps=0",
                    "checkpoint.export_hf=false", "logging.progress_bar=false", f"algorithm.recompute_old_logprobs={flag}"]
            subprocess.run(args, check=True, capture_output=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), cwd=ROOT)
            rows = [json.loads(l) for l in (tmp / "runs" / run / "metrics.jsonl").read_text().splitlines()][1:]
            out[name] += [r["timing_s/step"] for r in rows]
            print(f"quickstart {name} run {k}: step {sum(r['timing_s/step'] for r in rows) / len(rows):.3f} s", flush=True)
    mean = {k: sum(v) / len(v) for k, v in out.items()}
    return {"steps_averaged_each": len(out["before"]), "mean_step_s": {k: round(v, 4) for k, v in mean.items()},
            "after_over_before": round(mean["after"] / mean["before"], 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quickstart-runs", type=int, default=2)
    ap.add_argument("--quickstart-steps", type=int, default=8)
    ap.add_argument("--no-quickstart", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/learner.json"))
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        res = {"benchmark": "learner_vs_floor", "cpu_count": os.cpu_count(), "learner": learner_part(a.reps, tmp)}
        print(json.dumps(res["learner"], indent=1), flush=True)
        if not a.no_quickstart:
            res["quickstart"] = quickstart_part(a.quickstart_runs, a.quickstart_steps, tmp)
    res["notes"] = ["floor: HF model + torch AdamW, inputs prepared outside the timing (compute only); the learner's "
                    "time includes its own input preparation (frames, processor) and DeepSpeed's step",
                    "before: recompute_old_logprobs=true (the separate no-grad forward); after: the default"]
    write_results(a.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
