"""The learner's `train_step` against the floor: a plain forward + backward + optimizer step of the same model on
the same tokens and pixels, in one process and one run. Writes benchmarks/results/learner.json.

Batch: the quickstart's (configs/quickstart_cpu.yaml: tiny Qwen2.5-VL, next-action records of the synthetic
benchmark, 8 prompts x G = 8 = 64 completions, micro-batches of 16), no KL. Three things alternate, `--reps`
times each after one warm-up: the learner as it was (`algorithm.recompute_old_logprobs=true`: a separate
no-grad forward for the old log-probs), the learner as it is (old log-probs = the training forward's, detached,
with one update per step), and the floor (an HF copy of the model and torch AdamW; its inputs are prepared once
outside the timing, so the floor is the model's compute alone). Then, unless `--no-quickstart`, the quickstart's
step time before and after: short `launch/train.py` runs, alternated, first step excluded.

Then (unless `--no-logits`) the completion-only logits: the same learner step with the LM head over every position
(`learner.completion_only_logits=false`, before) and only from the first completion position (after), each variant
in its own process (peak RSS is per process), alternated `--logits-runs` times, on the tiny model widened to
Qwen2.5-VL's vocabulary (152,064: the logits' size is what this changes); reports step time, the peak RSS a step
adds over the loaded learner, and the largest log-prob difference between the variants on the same micro-batch.

    .venv/bin/python benchmarks/bench_learner.py [--reps 5] [--quickstart-steps 8] [--quickstart-runs 2]
        [--logits-runs 2] [--no-logits] [--no-quickstart]
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


QWEN25_VL_VOCAB = 152064


def logits_child(model_dir: str, completion_only: bool, steps: int, tmp: Path) -> dict:
    """One variant, in this (fresh) process: peak RSS after loading, after `steps` learner steps, step times, and
    the log-probs of the first micro-batch before any update."""
    import resource

    import torch

    from medgrpo_ray.config import load_config
    from medgrpo_ray.data.records_io import load_records
    from medgrpo_ray.driver.trainer import select_records
    from medgrpo_ray.learner.policy import PolicyLearner
    from medgrpo_ray.weight_sync.collective import free_port

    cfg = load_config(str(ROOT / "configs/quickstart_cpu.yaml"), [
        "algorithm.kl_coef=0.0", f"data.video_root={tmp / 'syn'}", f"model.path={model_dir}",
        f"learner.completion_only_logits={str(completion_only).lower()}"])
    records = select_records(load_records(tmp / "syn" / "train.json")[0], cfg.data.tasks, cfg.data.datasets)
    torch.set_num_threads(1)
    learner = PolicyLearner(cfg, model_dir, 0, 1, "127.0.0.1", free_port())
    shard = make_batch(cfg, learner, records, cfg.algorithm.prompts_per_step, cfg.algorithm.group_size)
    first = shard.micro_batches[0]
    inputs, _ = learner.inputs.group_inputs(list(first))
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731 - MiB on Linux
    loaded = rss()  # before any forward: what the steps add on top is theirs
    with torch.no_grad():
        lp, mask = learner._logprobs(learner.engine.module, learner.inputs.logprob_samples(first, inputs),
                                     forward=learner.engine)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        learner.train_step(dataclasses.replace(shard))
        times.append(time.perf_counter() - t0)
    learner.shutdown()
    return {"completion_only": completion_only, "peak_rss_loaded_mib": round(loaded, 1),
            "peak_rss_after_steps_mib": round(rss(), 1), "step_s": [round(t, 4) for t in times[1:]],
            "logprobs": [row[m].tolist() for row, m in zip(lp, mask)],
            "sequence_tokens": int(inputs["input_ids"].shape[1]) if "input_ids" in inputs else None}


def logits_part(runs: int, steps: int, tmp: Path) -> dict:
    from medgrpo_ray.data.synthetic import generate
    from medgrpo_ray.models.tiny_vlm import build_tiny_vlm

    if not (tmp / "syn" / "train.json").is_file():
        generate(tmp / "syn", seed=0, n_train=96, n_test=0)
    model_dir = build_tiny_vlm(tmp / "tiny_fullvocab", seed=0, vocab_size=QWEN25_VL_VOCAB)
    rows: dict[str, list[dict]] = {"before": [], "after": []}
    for k in range(runs):
        for name, only in (("before", False), ("after", True)):  # alternated, each in a fresh process
            out = tmp / f"logits_{name}_{k}.json"
            subprocess.run([sys.executable, __file__, "--logits-child", str(model_dir), str(only).lower(), str(steps),
                            str(tmp), str(out)], check=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), cwd=ROOT)
            rows[name].append(json.loads(out.read_text()))
            r = rows[name][-1]
            print(f"logits {name} run {k}: step {sum(r['step_s']) / len(r['step_s']):.3f} s, peak RSS "
                  f"{r['peak_rss_after_steps_mib']:.0f} MiB (loaded {r['peak_rss_loaded_mib']:.0f})", flush=True)
    diff = max(abs(a - b) for ra, rb in zip(rows["before"][0]["logprobs"], rows["after"][0]["logprobs"])
               for a, b in zip(ra, rb))
    summary = {}
    for name, rs in rows.items():
        steps_all = [t for r in rs for t in r["step_s"]]
        summary[name] = {"mean_step_s": round(sum(steps_all) / len(steps_all), 4),
                         "peak_rss_mib": round(max(r["peak_rss_after_steps_mib"] for r in rs), 1),
                         "step_adds_mib": round(max(r["peak_rss_after_steps_mib"] - r["peak_rss_loaded_mib"]
                                                    for r in rs), 1)}
    return {"vocab_size": QWEN25_VL_VOCAB, "runs_each": runs, "steps_per_run": steps, **summary,
            "after_over_before_step_time": round(summary["after"]["mean_step_s"] / summary["before"]["mean_step_s"], 3),
            "step_adds_after_over_before": round(summary["after"]["step_adds_mib"]
                                                 / max(summary["before"]["step_adds_mib"], 1e-9), 3),
            "max_abs_logprob_diff": diff}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quickstart-runs", type=int, default=2)
    ap.add_argument("--quickstart-steps", type=int, default=8)
    ap.add_argument("--no-quickstart", action="store_true")
    ap.add_argument("--logits-runs", type=int, default=2)
    ap.add_argument("--logits-steps", type=int, default=3)
    ap.add_argument("--no-logits", action="store_true")
    ap.add_argument("--no-learner", action="store_true", help="skip the learner-vs-floor part")
    ap.add_argument("--logits-child", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/learner.json"))
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.logits_child:
        model_dir, only, steps, tmp, out = a.logits_child
        Path(out).write_text(json.dumps(logits_child(model_dir, only == "true", int(steps), Path(tmp))))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        res = {"benchmark": "learner_vs_floor", "cpu_count": os.cpu_count()}
        if not a.no_learner:
            res["learner"] = learner_part(a.reps, tmp)
            print(json.dumps(res["learner"], indent=1), flush=True)
        if not a.no_quickstart:
            res["quickstart"] = quickstart_part(a.quickstart_runs, a.quickstart_steps, tmp)
        if not a.no_logits:
            res["completion_only_logits"] = logits_part(a.logits_runs, a.logits_steps, tmp)
            print(json.dumps(res["completion_only_logits"], indent=1), flush=True)
    res["notes"] = ["floor: HF model + torch AdamW, inputs prepared outside the timing (compute only); the learner's "
                    "time includes its own input preparation (frames, processor) and DeepSpeed's step",
                    "before: recompute_old_logprobs=true (the separate no-grad forward); after: the default",
                    "completion_only_logits: before = LM head at every position, after = from the first completion "
                    "position (the default); peak RSS per fresh process, step_adds = peak after the steps minus the "
                    "peak after loading"]
    write_results(a.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
