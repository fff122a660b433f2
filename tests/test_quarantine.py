"""Quarantine bookkeeping and the curves PNG (pure, no Ray)."""
from __future__ import annotations

import json

from medgrpo_ray.data.quarantine import Quarantine, QuarantineEntry


def test_each_record_once_state_round_trip_and_listing(tmp_path):
    q = Quarantine(tmp_path / "quarantine.jsonl")
    e = QuarantineEntry(uid="v:next_action:abc", source="train.json", index=7, reason="record v: corrupt",
                        kind="decode", step=3, train_index=5)
    assert q.add(e) and not q.add(QuarantineEntry(**{**e.__dict__, "step": 4}))
    assert q.add(QuarantineEntry(uid="", source="train.json", index=9, reason="field fps", kind="load:metadata.fps", step=0))
    q.write()
    lines = [json.loads(l) for l in (tmp_path / "quarantine.jsonl").read_text().splitlines()]
    assert [(d["index"], d["kind"], d["step"]) for d in lines] == [(7, "decode", 3), (9, "load:metadata.fps", 0)]
    assert 5 in q and q.indices == {5} and q.counts() == {"decode": 1, "load:metadata.fps": 1}
    r = Quarantine()
    r.load_state_dict(json.loads(json.dumps(q.state_dict())))
    assert r.state_dict() == q.state_dict() and r.indices == {5}


def test_curves_png_from_metrics(tmp_path):
    from medgrpo_ray.tracking.plots import plot_run

    assert plot_run(tmp_path) is None  # no steps logged: nothing to plot
    with (tmp_path / "metrics.jsonl").open("w") as f:
        for step in range(1, 21):
            f.write(json.dumps({"step": step, "reward/raw_mean": step / 20, "reward/AVOS/next_action/raw": step / 20,
                                "learner/loss": 0.1, "algorithm/samples_trained": 8,
                                **({"eval/nap_acc": 0.5} if step % 10 == 0 else {})}) + "\n")
    png = plot_run(tmp_path)
    assert png == tmp_path / "curves.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
