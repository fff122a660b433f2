"""Throughput of the training rewards, the leaderboard evaluator and the normalizer on synthetic predictions.

    python benchmarks/bench_rewards.py [--n 50000] [--seed 0] [--out benchmarks/results/rewards.json]

Generates N seeded records in the published merged format, spread over the tasks (GT plus a perturbed answer
in the task's answer format, some malformed), then times compute_reward on every record, evaluate() on all
of them (no judge, no embedder), and RewardNormalizer on the raw rewards. Writes records/s as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections import Counter
from pathlib import Path

from medgrpo_ray.evaluation import evaluate
from medgrpo_ray.rewards.normalization import RewardNormalizer
from medgrpo_ray.rewards import compute_reward
from medgrpo_ray.rewards.fields import record_dataset, record_task

TASK_DATASETS = {
    "tal": ["NurViD", "CholecT50", "AVOS", "CoPESD"],
    "stg": ["CoPESD", "EgoSurgery", "CholecTrack20"],
    "next_action": ["AVOS", "CholecT50", "CoPESD", "EgoSurgery"],
    "dense_captioning_gpt": ["NurViD", "CoPESD", "AVOS"],
    "skill_assessment": ["JIGSAWS"],
    "cvs_assessment": ["Cholec80_CVS"],
    "video_summary_gemini": ["CoPESD", "NurViD"],
    "region_caption_gpt": ["EgoSurgery"],
}
SA_ASPECTS = ["Respect for tissue", "Suture/needle handling", "Time and motion", "Flow of operation", "Overall performance", "Quality of final product"]
NAP_CLASSES = {"AVOS": ["cutting", "tying", "suturing"], "CholecT50": ["preparation", "clipping-and-cutting", "gallbladder-dissection"],
               "CoPESD": ["adjust camera", "lift flap with forceps"], "EgoSurgery": ["incision", "closure", "dissection"]}


def _jitter(rng: random.Random, x: float, scale: float) -> float:
    return round(max(0.0, x + rng.uniform(-scale, scale)), 1)


def synth_record(rng: random.Random, qa_type: str) -> dict:
    """One GT record with a plausible, sometimes malformed, model answer."""
    dataset = rng.choice(TASK_DATASETS[qa_type])
    fps = rng.choice(["0.5", "0.5", "1.0", "2.0"])
    rec = {"qa_type": qa_type, "data_source": dataset, "metadata": {"fps": fps, "video_id": f"v{rng.randrange(600)}"},
           "question": "synthetic question", "gnd": "", "struc_info": []}
    malformed = rng.random() < 0.1
    if qa_type == "tal":
        spans = [(s, s + rng.uniform(2, 20)) for s in sorted(rng.uniform(0, 300) for _ in range(rng.randint(1, 3)))]
        rec["struc_info"] = [{"spans": [{"start": round(s, 1), "end": round(e, 1)} for s, e in spans]}]
        pred = [f"{_jitter(rng, s, 3)}-{_jitter(rng, e, 3)}" for s, e in spans[: rng.randint(1, len(spans))]]
        rec["answer"] = "unsure" if malformed else ", ".join(pred) + " seconds."
    elif qa_type == "stg":
        boxes, parts = {}, []
        for i in range(rng.randint(2, 6)):
            t = f"{1.0 + 4 * i:.1f}"
            x, y = rng.uniform(0, 1500), rng.uniform(0, 800)
            boxes[t] = [round(x), round(y), round(x + rng.uniform(50, 400)), round(y + rng.uniform(50, 300))]
            if rng.random() < 0.9:
                parts.append(f"{t} seconds: [" + ", ".join(str(round(v + rng.uniform(-40, 40))) for v in boxes[t]) + "]")
        rec["struc_info"] = [{"object": "forceps", "bbox_dict": boxes}]
        rec["answer"] = "no box" if malformed else " ".join(parts)
    elif qa_type == "next_action":
        classes = NAP_CLASSES[dataset]
        rec["gnd"] = rng.choice(classes)
        rec["answer"] = rng.choice(classes) if not malformed else "the surgeon continues"
    elif qa_type.startswith("dense_captioning"):
        bounds = sorted(round(rng.uniform(0, 600), 1) for _ in range(2 * rng.randint(2, 6)))
        segs = [{"start": a, "end": b, "caption": f"step {i}: the nurse acts"} for i, (a, b) in enumerate(zip(bounds[::2], bounds[1::2]))]
        rec["struc_info"] = [{"dc_segments": segs}] if dataset == "NurViD" else segs
        lines = [f"{_jitter(rng, s['start'], 5)}-{_jitter(rng, s['end'], 5)} seconds: {s['caption']}" for s in segs]
        rec["answer"] = "a nurse works" if malformed else "\n".join(lines)
    elif qa_type == "skill_assessment":
        scores = {a: rng.randint(1, 5) for a in SA_ASPECTS}
        rec["struc_info"] = [{"skill_level": rng.choice("NIE"), "skill_scores": scores}]
        rec["answer"] = "good" if malformed else ", ".join(f"{a}: {min(5, max(1, v + rng.randint(-1, 1)))}/5" for a, v in scores.items())
    elif qa_type == "cvs_assessment":
        scores = {k: rng.randint(0, 2) for k in ("two_structures", "cystic_plate", "hepatocystic_triangle")}
        rec["struc_info"] = [{"cvs_scores": scores}]
        rec["answer"] = "" if malformed else f"Two structures: {scores['two_structures']}, Cystic plate: {rng.randint(0, 2)}, Hepatocystic triangle: {scores['hepatocystic_triangle']}"
    else:
        rec["gnd"] = "forceps lift the mucosal flap while the knife dissects"
        rec["answer"] = "forceps lift the flap"
    return rec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "rewards.json"))
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    qa_types = list(TASK_DATASETS)
    records = [synth_record(rng, qa_types[i % len(qa_types)]) for i in range(args.n)]
    merged = {str(i): r for i, r in enumerate(records)}

    t0 = time.perf_counter()
    results = [compute_reward(r, r["answer"]) for r in records]
    reward_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    report = evaluate(merged)
    eval_s = time.perf_counter() - t0

    rows = [(record_dataset(r), record_task(r), res.value) for r, res in zip(records, results) if res.value is not None]
    norm = RewardNormalizer({}, warmup_count=256)
    t0 = time.perf_counter()
    norm.normalize_many(rows)
    norm_s = time.perf_counter() - t0

    payload = {
        "n_records": args.n,
        "seed": args.seed,
        "records_per_task": dict(Counter(record_task(r) for r in records)),
        "reward": {"seconds": reward_s, "records_per_s": args.n / reward_s, "no_reward": sum(r.value is None for r in results)},
        "evaluator": {"seconds": eval_s, "records_per_s": args.n / eval_s, "leaderboard_row": report.row(3)},
        "normalizer": {"seconds": norm_s, "rewards_per_s": len(rows) / norm_s},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: payload[k] for k in ("reward", "evaluator", "normalizer")}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
