"""Synthetic MedVidBench: coverage, determinism, and ground truth that matches the decoded pixels."""
from __future__ import annotations

import json
import math
import re

import av
import numpy as np
import pytest
from PIL import Image

from medgrpo_ray.data import synthetic
from medgrpo_ray.data.records_io import load_records
from medgrpo_ray.data.synthetic_scene import CVS_COLOURS, SHAPES, SKILL_COLOURS, SOURCES, STORED_FPS
from medgrpo_ray.medvidbench.tasks import DATASETS, TASKS

N_TRAIN, N_TEST = 24, 6


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    assert synthetic.main(["--out", str(out), "--seed", "0", "--train", str(N_TRAIN), "--test", str(N_TEST)]) == 0
    records = load_records(out / "train.json", on_bad="raise")[0] + load_records(out / "test.json", on_bad="raise")[0]
    return out, records, json.loads((out / "manifest.json").read_text())


_VIDEOS: dict = {}


def clip_frames(root, rec) -> list[np.ndarray]:
    """The frames a loader sees: frame k at k / fps from the clip start (decoded mp4 or the JPEG list)."""
    if not rec.is_video_file:
        return [np.asarray(Image.open(root / p).convert("RGB")) for p in rec.frame_paths]
    path = root / rec.video_path
    if path not in _VIDEOS:
        with av.open(str(path)) as c:
            _VIDEOS[path] = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    n = int(round((rec.end_s - rec.start_s) * rec.fps))
    return [_VIDEOS[path][int(round((rec.start_s + k / rec.fps) * STORED_FPS))] for k in range(n)]


def blob(frame: np.ndarray, rgb, rec) -> tuple[tuple[int, int, int, int], float] | None:
    """Box and fill ratio of the solid region of colour `rgb` inside the source's instrument band.

    Pixels must match and so must their four neighbours (an erosion), which drops the blended edge pixels of
    other shapes (yellow over red tissue blends to orange); the box is the eroded box grown back by one pixel.
    """
    band = int(SOURCES[rec.data_source].y_span[1] * frame.shape[0])
    m = np.abs(frame[:band].astype(int) - np.array(rgb)).max(-1) < 60
    core = m.copy()
    core[1:-1, 1:-1] &= m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    core[[0, -1], :] = False
    core[:, [0, -1]] = False
    ys, xs = np.nonzero(core)
    if len(xs) < 6:
        return None
    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    return (x1 - 1, y1 - 1, x2 + 1, y2 + 1), len(xs) / ((x2 - x1) * (y2 - y1))


def shape_of(fill: float) -> str:
    return "rect" if fill > 0.7 else "diamond"  # instruments are rectangles or diamonds (labels 5-9)


def visible_label(frame, rec, codebook) -> str | None:
    """The label whose instrument (colour and shape) is drawn in the frame."""
    for label, code in codebook[rec.data_source].items():
        found = blob(frame, code["rgb"], rec)
        if found and shape_of(found[1]) == code["shape"]:
            return label
    return None


def assert_box_close(found, gt, tol=3):
    assert found is not None, f"instrument colour not found; GT box {gt}"
    assert all(abs(a - b) <= tol for a, b in zip(found[0], gt)), f"drawn {found[0]} vs GT {gt}"


def test_covers_every_task_source_and_both_video_forms(bench):
    out, records, manifest = bench
    assert len(records) == N_TRAIN + N_TEST
    assert {r.task for r in records} == set(TASKS)
    assert {r.dataset for r in records} == set(DATASETS)
    assert "Cholec80_CVS" in {r.data_source for r in records}  # the leaderboard's spelling
    assert any(r.is_video_file for r in records) and any(not r.is_video_file for r in records)
    assert all(r.is_RC and r.rc_box for r in records if r.task == "region_caption")
    assert manifest["splits"]["train"]["records"] == N_TRAIN and manifest["splits"]["test"]["records"] == N_TEST
    train_videos = {r.metadata["video_id"] for r in records[:N_TRAIN]}
    assert not train_videos & {r.metadata["video_id"] for r in records[N_TRAIN:]}  # disjoint splits
    shipped = load_records(out / "train.parquet", on_bad="raise")[0]
    assert [r.to_dict() for r in shipped] == [r.to_dict() for r in records[:N_TRAIN]]
    assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) < 2_500_000


def test_clips_fit_the_frame_budget_and_the_video(bench):
    out, records, _ = bench
    for rec in records:
        n = len(rec.frame_paths) if not rec.is_video_file else round((rec.end_s - rec.start_s) * rec.fps)
        assert 2 <= n <= synthetic.MAX_CLIP_FRAMES, rec.uid
        assert rec.metadata["fps"] in synthetic.FPS_CHOICES
        if rec.is_video_file:
            with av.open(str(out / rec.video_path)) as c:
                stream = c.streams.video[0]
                assert stream.average_rate == STORED_FPS and stream.codec_context.name == "h264"
                assert (stream.width, stream.height) == tuple(rec.metadata["frame_size"])
                assert rec.end_s * STORED_FPS <= stream.frames


def test_decord_reads_the_videos(bench):
    import decord

    out, records, _ = bench
    rec = next(r for r in records if r.is_video_file)
    vr = decord.VideoReader(str(out / rec.video_path))
    assert vr.get_avg_fps() == STORED_FPS
    frames = clip_frames(out, rec)
    idx = [int(round((rec.start_s + k / rec.fps) * STORED_FPS)) for k in range(len(frames))]
    got = vr.get_batch(idx).asnumpy()
    assert np.abs(got.astype(int) - np.stack(frames)).mean() < 2.0  # same pixels through decord and PyAV


def test_answers_agree_with_struc_info(bench):
    _, records, _ = bench
    for rec in records:
        a, si = rec.answer, rec.struc_info
        if rec.task == "tal":
            spans = [(float(x), float(y)) for x, y in re.findall(r"(\d+\.\d)-(\d+\.\d)", a)]
            assert spans == [(s["start"], s["end"]) for s in si[0]["spans"]] and a.endswith(" seconds.")
        elif rec.task == "stg":
            boxes = {t: json.loads(b) for t, b in re.findall(r"(\d+\.\d) seconds: (\[[^\]]+\])", a)}
            assert boxes == si[0]["bbox_dict"] and si[0]["object"] in rec.question
        elif rec.task == "dense_captioning":
            segs = si[0]["dc_segments"] if rec.data_source == "NurViD" else si[0] if rec.data_source == "CoPESD" else si
            assert a.split("\n") == [f"{s['start']:.1f}-{s['end']:.1f} seconds: {s['caption']}" for s in segs]
            assert [s["start"] for s in segs[1:]] == [s["end"] for s in segs[:-1]]  # contiguous phases
        elif rec.task == "skill_assessment":
            scores = si[0]["skill_scores"]
            assert a == ", ".join(f"{k}: {v}/5" for k, v in scores.items())
            mean = sum(scores.values()) / 6
            assert si[0]["skill_level"] == ("N" if mean <= 2 else "I" if mean <= 3.5 else "E")
        elif rec.task == "cvs_assessment":
            s = si[0]["cvs_scores"]
            assert a == (f"Two structures: {s['two_structures']}, Cystic plate: {s['cystic_plate']}, "
                         f"Hepatocystic triangle: {s['hepatocystic_triangle']}")
        elif rec.task == "next_action":
            assert a in SOURCES[rec.data_source].labels and si == []
        else:
            assert a and si == []


def test_ground_truth_is_read_by_the_reward_code(bench):
    from medgrpo_ray.rewards import fields, ground_truth

    _, records, _ = bench
    for rec in records:
        ev = rec.to_eval_dict()
        assert fields.record_task(ev) == rec.task and fields.record_dataset(ev) == rec.dataset
        assert fields.record_fps(ev) == rec.fps
        assert fields.frame_size(ev) == tuple(map(float, rec.metadata["frame_size"]))
        if rec.task == "tal":
            spans = [(s["start"], s["end"]) for s in rec.struc_info[0]["spans"]]
            assert ground_truth.tal_spans(ev["struc_info"]) == spans
        if rec.task == "stg":
            assert [k for k, _ in ground_truth.stg_boxes(ev["struc_info"])] == list(rec.struc_info[0]["bbox_dict"])
        if rec.task == "dense_captioning":
            assert len(ground_truth.caption_segments(ev["struc_info"])) == ev["gnd"].count("\n") + 1
        if rec.task == "cvs_assessment":
            assert ground_truth.cvs_truth(ev["struc_info"], ev["gnd"]) == rec.struc_info[0]["cvs_scores"]


def test_stg_boxes_are_where_the_instrument_is_drawn(bench):
    out, records, manifest = bench
    checked = 0
    for rec in (r for r in records if r.task == "stg"):
        codes = manifest["codebook"][rec.data_source].values()
        code = next(c for c in codes if c["instrument"] == rec.struc_info[0]["object"])
        frames = clip_frames(out, rec)
        for t, box in rec.struc_info[0]["bbox_dict"].items():
            k = round(float(t) * rec.fps)
            assert k == float(t) * rec.fps  # GT times fall on sampled frames
            assert_box_close(blob(frames[k], code["rgb"], rec), box)
            checked += 1
    assert checked >= 10


def test_region_caption_box_holds_the_captioned_instrument(bench):
    out, records, manifest = bench
    rcs = [r for r in records if r.task == "region_caption"]
    assert rcs
    for rec in rcs:
        frames = clip_frames(out, rec)
        frame = frames[rec.rc_frame_index]
        label = visible_label(frame, rec, manifest["codebook"])
        code = manifest["codebook"][rec.data_source][label]
        first = blob(frame, code["rgb"], rec)
        assert_box_close(first, rec.rc_box)
        assert code["instrument"] in rec.answer and label in rec.answer
        # the region and motion words follow the first and last sampled frames of the interval
        t1 = float(re.search(r"to (\d+\.\d) seconds", rec.question).group(1))
        last = blob(frames[math.ceil(t1 * rec.fps) - 1], code["rgb"], rec)
        (ax, ay), (bx, by) = [((b[0][0] + b[0][2]) / 2, (b[0][1] + b[0][3]) / 2) for b in (first, last)]
        H, W = frame.shape[:2]
        mx, my = (ax + bx) / 2, (ay + by) / 2
        if min(abs(mx - W / 2), abs(my - H / 2)) > 2:
            assert ("upper " if my < H / 2 else "lower ") + ("left" if mx < W / 2 else "right") in rec.answer
        if max(abs(bx - ax), abs(by - ay)) > 5 and abs(abs(bx - ax) - abs(by - ay)) > 2:
            way = ("to the right" if bx > ax else "to the left") if abs(bx - ax) > abs(by - ay) else (
                "downward" if by > ay else "upward")
            assert way in rec.answer, (rec.uid, rec.answer)


def test_tal_spans_are_when_the_instrument_is_visible(bench):
    out, records, manifest = bench
    for rec in (r for r in records if r.task == "tal"):
        label = re.search(r"Find the segment\(s\) where (.+) happens\.", rec.question).group(1)
        spans = [(s["start"], s["end"]) for s in rec.struc_info[0]["spans"]]
        for k, frame in enumerate(clip_frames(out, rec)):
            inside = any(a <= k / rec.fps < b for a, b in spans)
            assert (visible_label(frame, rec, manifest["codebook"]) == label) == inside, (rec.uid, k)


def test_next_action_follows_the_last_visible_phase(bench):
    out, records, manifest = bench
    for rec in (r for r in records if r.task == "next_action"):
        labels = SOURCES[rec.data_source].labels
        last = visible_label(clip_frames(out, rec)[-1], rec, manifest["codebook"])
        assert rec.answer == labels[(labels.index(last) + 1) % len(labels)]


def test_dense_caption_segments_follow_the_drawn_phases(bench):
    out, records, manifest = bench
    for rec in (r for r in records if r.task == "dense_captioning"):
        segs = rec.struc_info[0]["dc_segments"] if rec.data_source == "NurViD" else rec.struc_info
        segs = segs[0] if rec.data_source == "CoPESD" else segs
        for k, frame in enumerate(clip_frames(out, rec)):
            seg = next(s for s in segs if s["start"] <= k / rec.fps < s["end"])
            label = visible_label(frame, rec, manifest["codebook"])
            assert label is not None and manifest["codebook"][rec.data_source][label]["instrument"] in seg["caption"]


def _nearest(rgb, palette) -> int:
    return int(np.argmin([np.abs(np.array(rgb) - np.array(c)).sum() for c in palette]))


def test_cvs_and_skill_markers_encode_the_scores(bench):
    out, records, _ = bench
    seen = set()
    for rec in (r for r in records if r.task in ("cvs_assessment", "skill_assessment")):
        seen.add(rec.task)
        for frame in clip_frames(out, rec):
            H, W = frame.shape[:2]
            if rec.task == "cvs_assessment":
                at = {"two_structures": (0.165, 0.765), "cystic_plate": (0.51, 0.73),
                      "hepatocystic_triangle": (0.83, 0.85)}  # inside each structure (synthetic_scene._draw_cvs)
                for key, (fx, fy) in at.items():
                    y, x = int(fy * H), int(fx * W)
                    patch = frame[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).mean(0)
                    assert _nearest(patch, CVS_COLOURS) == rec.struc_info[0]["cvs_scores"][key], (rec.uid, key)
            else:
                cell = (W - 16) / 6
                drawn = [1 + _nearest(frame[H - 8, int(8 + (i + 0.5) * cell)], SKILL_COLOURS) for i in range(6)]
                assert drawn == list(rec.struc_info[0]["skill_scores"].values()), rec.uid
    assert seen == {"cvs_assessment", "skill_assessment"}


def test_same_seed_same_bytes_other_seed_other_data(bench, tmp_path):
    out, records, _ = bench
    synthetic.generate(tmp_path / "again", seed=0, n_train=8, n_test=2)
    again = [d for split in ("train", "test") for d in json.loads((tmp_path / f"again/{split}.json").read_text())]
    assert again == [r.to_dict() for r in records[:8] + records[N_TRAIN:N_TRAIN + 2]]  # a prefix of the same stream
    files = [p for p in (tmp_path / "again").rglob("*") if p.suffix in (".mp4", ".jpg")]
    assert files and all(p.read_bytes() == (out / p.relative_to(tmp_path / "again")).read_bytes() for p in files)
    synthetic.generate(tmp_path / "other", seed=1, n_train=8, n_test=0)
    other = json.loads((tmp_path / "other/train.json").read_text())
    assert [d["conversations"] for d in other] != [d["conversations"] for d in again[:8]]
    first_video = "videos/AVOS_train_000.mp4"
    assert (tmp_path / "other" / first_video).read_bytes() != (out / first_video).read_bytes()


def test_shapes_cover_the_codebook():
    for spec in SOURCES.values():
        codes = {(i % 5, SHAPES[(i // 5) % 3]) for i in range(len(spec.labels))}
        assert len(codes) == len(spec.labels) == len(spec.instruments)  # one appearance per label


def test_next_action_labels_are_the_evaluators_class_lists():
    from medgrpo_ray.evaluation.nap import nurvid_classes
    from medgrpo_ray.medvidbench.nap_classes import FIXED, NURVID_PROCEDURES

    for name, classes in FIXED.items():
        assert SOURCES[name].labels == classes  # otherwise the evaluator would skip these records
    nurvid = SOURCES["NurViD"]
    assert nurvid.labels == NURVID_PROCEDURES[nurvid.procedure]
    # the evaluator takes the first procedure in table order named in the question: none may shadow this one
    assert nurvid_classes(nurvid.procedure, NURVID_PROCEDURES) == (nurvid.labels, f"procedure {nurvid.procedure}")


def test_evaluator_counts_every_next_action_record(tmp_path):
    from medgrpo_ray.evaluation import evaluate
    from medgrpo_ray.evaluation.nap import nurvid_classes
    from medgrpo_ray.medvidbench.nap_classes import NURVID_PROCEDURES

    per_batch = sum(len(spec.tasks) for spec in SOURCES.values())  # one batch = one video per source
    records = synthetic.generate_split(tmp_path, "test", 2 * per_batch, seed=0, frame_list_fraction=0.0)
    nap = [r for r in records if r.task == "next_action"]
    with_nap = {name for name, spec in SOURCES.items() if "next_action" in spec.tasks}
    assert {r.data_source for r in nap} == with_nap and "NurViD" in with_nap
    for rec in (r for r in nap if r.data_source == "NurViD"):  # the question names the scene's procedure
        procedure = SOURCES["NurViD"].procedure
        assert nurvid_classes(rec.question, NURVID_PROCEDURES) == (SOURCES["NurViD"].labels, f"procedure {procedure}")
    metric = evaluate([r.to_eval_dict(r.answer) for r in records]).metrics["nap_acc"]  # answers = GT
    assert metric.details["skipped_gt_not_in_classes"] == 0 and metric.details["needed_embedding"] == 0
    assert metric.counted == metric.total == len(nap)
    assert metric.value == 1.0 and metric.per_dataset == {name: 1.0 for name in sorted(with_nap)}


def test_regenerating_replaces_an_earlier_set_and_refuses_foreign_dirs(tmp_path):
    synthetic.generate(tmp_path / "s", seed=0, n_train=8, n_test=0)
    synthetic.generate(tmp_path / "s", seed=1, n_train=8, n_test=0)
    fresh = tmp_path / "fresh"
    synthetic.generate(fresh, seed=1, n_train=8, n_test=0)
    files = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    assert sorted(p.relative_to(tmp_path / "s") for p in (tmp_path / "s").rglob("*") if p.is_file()) == files
    assert all((tmp_path / "s" / f).read_bytes() == (fresh / f).read_bytes() for f in files)  # no stale frames
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="not empty and holds no synthetic manifest.json"):
        synthetic.generate(tmp_path / "mine", n_train=1, n_test=0)
