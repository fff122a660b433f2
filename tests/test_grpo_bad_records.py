"""No single record may stop a GRPO run: a real run (launch/train.py, local Ray, vLLM, DeepSpeed) over a records
file that mixes good records with a 400,000-token question, a corrupt video, a frame list with a missing frame,
an inverted frame range and a frame list whose decode hangs (a frame path that is a named pipe: opening it
blocks, as a stalled network filesystem would). Every step runs; each bad record is quarantined once, named once
on the console, and never sampled again after its first failure, a resume included.
"""
from __future__ import annotations

import copy
import json
import os

import pytest

from grpo_system_support import metrics, overrides, run_train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, synthetic_bench):
    """The shared synthetic benchmark's next-action records with the bad ones mixed in; the bad files live in
    this module's own directory (absolute paths), the good ones in the benchmark (video_root)."""
    from medgrpo_ray.data.records import VideoRecord

    syn = synthetic_bench
    extra = tmp_path_factory.mktemp("bad_files")
    recs = json.loads((syn / "train.json").read_text())
    good = [r for r in recs if r["qa_type"] == "next_action" and r["data_source"] in ("AVOS", "EgoSurgery")
            and isinstance(r["video"], str)]
    frames = next(r["video"] for r in recs if isinstance(r["video"], list) and len(r["video"]) >= 4)
    base = good[0]

    def bad(video_id: str, **changes) -> dict:
        r = copy.deepcopy(base)
        r["metadata"]["video_id"] = video_id
        r.update(changes)
        return r

    (extra / "corrupt.mp4").write_bytes(os.urandom(20_000))
    fifo = extra / "stalled.jpg"
    os.mkfifo(fifo)
    long_q = "<video>\n" + "word " * 200_000 + "What comes next after the current video?"
    frame_meta = {"fps": "0.5", "video_id": "", "input_video_start_frame": "0", "input_video_end_frame": str(len(frames))}
    bads = {
        "long": bad("BAD_long", conversations=[{"from": "human", "value": long_q}, base["conversations"][1]]),
        "corrupt": bad("BAD_corrupt", video=str(extra / "corrupt.mp4")),
        "missing": bad("BAD_missing", video=frames[:2] + ["frames/nowhere/002.jpg"] + frames[3:],
                       metadata={**frame_meta, "video_id": "BAD_missing"}),
        "hang": bad("BAD_hang", video=frames[:1] + [str(fifo)] + frames[2:],
                    metadata={**frame_meta, "video_id": "BAD_hang"}),
        "inverted": bad("BAD_inverted", metadata={**base["metadata"], "video_id": "BAD_inverted",
                                                  "input_video_start_frame": "50", "input_video_end_frame": "10"}),
    }
    mixed = good[:3] + [bads["long"], bads["corrupt"]] + good[3:6] + [bads["missing"], bads["inverted"]] \
        + good[6:] + [bads["hang"]]
    path = extra / "mixed.json"
    path.write_text(json.dumps(mixed))
    inverted_index = mixed.index(bads["inverted"])
    uids = {k: VideoRecord.from_dict(v).uid for k, v in bads.items() if k != "inverted"}
    return syn, path, uids, inverted_index


def _args(corpus, out, name, model_cache, **extra):
    syn, path, _, _ = corpus
    return overrides(syn, out, name, model_cache, **{
        "data.train_path": str(path), "data.video_root": str(syn),
        "data.decode_timeout_s": 3, "rollout.max_model_len": 4096, "algorithm.total_steps": 6,
        "checkpoint.every_n_steps": 3, **extra})


def test_bad_records_are_quarantined_and_the_quarantine_survives_a_resume(corpus, tmp_path, model_cache):
    """Three steps, stop, resume=auto to six. Every step runs; each bad record is quarantined once and drawn in
    one step only (never again after its failure, the resumed half included: the quarantine and the sampler's
    exclusions are in the checkpoint)."""
    syn, path, uids, inverted_index = corpus
    first = run_train(_args(corpus, tmp_path, "mixed", model_cache, **{"algorithm.total_steps": 3}))
    state = json.loads((tmp_path / "mixed" / "checkpoints" / "step_000003" / "driver_state.json").read_text())
    assert len(state["quarantine"]) == len(state["sampler"]["excluded"]) + 1  # + the record rejected at load
    second = run_train(_args(corpus, tmp_path, "mixed", model_cache, resume="auto"))
    run_dir = tmp_path / "mixed"
    rows = metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]

    entries = [json.loads(l) for l in (run_dir / "quarantine.jsonl").read_text().splitlines()]
    kinds = {e["uid"] or f"index {e['index']}": e["kind"] for e in entries}
    assert len(entries) == 5, entries  # each bad record once, nothing else, across both halves
    assert kinds[uids["long"]] == "too_long"
    assert kinds[uids["corrupt"]] == kinds[uids["missing"]] == kinds[uids["hang"]] == "decode"
    assert kinds[f"index {inverted_index}"] == "load:metadata.input_video_end_frame"
    reasons = {e["uid"] or f"index {e['index']}": e["reason"] for e in entries}
    assert "rollout.max_model_len=4096" in reasons[uids["long"]] and "tokens" in reasons[uids["long"]]
    assert "did not finish within 3 s" in reasons[uids["hang"]]
    assert "nowhere/002.jpg" in reasons[uids["missing"]] and "corrupt.mp4" in reasons[uids["corrupt"]]
    assert all(e["source"].endswith("mixed.json") for e in entries)

    # Each bad record is drawn in one step only: after its first failure the sampler never returns it.
    log = [json.loads(l) for l in (run_dir / "rollouts.jsonl").read_text().splitlines()]
    for key, uid in uids.items():
        steps = {r["step"] for r in log if r.get("uid") == uid}
        assert len(steps) == 1, (key, steps)
        assert all(r["raw_reward"] is None for r in log if r.get("uid") == uid)
    assert sum(r["rollout/failed_groups"] for r in rows) >= 4
    assert rows[-1]["data/quarantined"] == 5
    assert sum(r["algorithm/samples_trained"] for r in rows) > 0  # the good records trained

    # Named once on the console (its quarantine line, in whichever half drew it); the inverted range once per
    # start (each start's load report lists the records it rejected).
    halves = [(o.stdout + o.stderr).splitlines() for o in (first, second)]
    for key in ("long", "corrupt", "missing", "hang"):
        assert sum(f"BAD_{key}" in line for console in halves for line in console) == 1, key
    for console in halves:
        assert sum(f"record {inverted_index}: field metadata.input_video_end_frame" in l for l in console) == 1
