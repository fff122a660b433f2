"""Caption units and the dual-model validation rule: one scripted caption pair per behaviour, each ending in the
documented decision; the structured input; DVC records round-trip through the parser and self-score 1.0."""
from __future__ import annotations

import json

import numpy as np
import pytest

from medgrpo_ray.curation.caption_units import build_unit
from medgrpo_ray.curation.schema import Box, Segment, SourceVideo, Triplet
from medgrpo_ray.curation.tasks import TaskSettings
from medgrpo_ray.curation.validate import (ProviderError, ValidationSettings, caption_records, count_decisions,
                                           decide, dvc_problem)

S = TaskSettings(seed=3, min_len=20.0, max_len=60.0)


def video() -> SourceVideo:
    segs = [Segment(0.0, 30.0, "CalotTriangleDissection", "phase"), Segment(30.0, 60.0, "ClippingCutting", "phase")]
    boxes = {float(t): [Box("grasper", 10 + t, 20, 100 + t, 120, track_id="1", extra={"operator": "ASRH"}),
                        Box("hook", 300, 200, 380, 260, track_id="2")] for t in range(0, 30)}
    boxes.update({float(t): [Box("clipper", 200, 100, 260, 180, track_id="3")] for t in range(30, 60)})
    trips = {float(t): [Triplet("hook", "dissect", "cystic duct"), Triplet("grasper", "retract", "gallbladder")]
             for t in range(0, 30)}
    trips.update({float(t): [Triplet("clipper", "clip", "cystic artery")] for t in range(30, 60)})
    return SourceVideo("CholecTrack20", "VID01", 25.0, frame_size=(854, 480), duration_s=60.0,
                       video_path="VID01.mp4", segments=segs, boxes=boxes, triplets=trips,
                       procedure="laparoscopic cholecystectomy")


class FakeEmbedder:
    """Embeds a text as the vector assigned to it, [1, 0] by default: controlled cosines."""

    def __init__(self, vectors=None):
        self.vectors = vectors or {}

    def encode(self, texts):
        return np.asarray([self.vectors.get(t, [1.0, 0.0]) for t in texts], dtype=float)


def vs_unit():
    return build_unit("video_summary", video(), S, 0)


def rc_unit(k=0):
    return build_unit("region_caption", video(), S, k)


def vs_caption(unit, drop=(), extra=""):
    """A grounded VS caption of about 40 words naming every required fact except those in `drop`."""
    facts = " and ".join(f.term for f in unit.required if f.term not in drop)
    text = (f"The surgeon works steadily through the operation, and the view shows {facts} while the instruments "
            "move carefully across the operative field with controlled, deliberate motions, keeping the tissue "
            f"under gentle tension throughout the whole sequence {extra}")
    return json.dumps({"caption": text})


def test_vs_unit_input_has_every_frame_time_and_the_facts():
    u = vs_unit()
    text = u.input_text()
    assert len(u.frame_lines) == len(u.clip.times()) >= 1
    for i, t in enumerate(u.frame_times):
        assert f"<Frame {i}> t={t:.1f} s ({t / u.clip.length:.2f})" in text
    for f in u.required:
        assert f.term in text
    assert {f.kind for f in u.required} >= {"label", "instrument", "verb"}
    assert '{"caption"' in text and "Allowed vocabulary:" in text
    assert "missing: hook" not in text and "omitted" in u.input_text(missing=["instrument 'hook'"])


def test_agree_keeps_both():
    u = vs_unit()
    d = decide(u, vs_caption(u), vs_caption(u, extra="today"), 0, embedder=FakeEmbedder())
    assert d.kind == "keep_both" and d.kept == ["gpt", "gemini"] and d.reason == "agree"
    assert d.scores["s"] == pytest.approx(1.0) and d.scores["g"] == {"gpt": 1.0, "gemini": 1.0}


def test_paraphrase_kept_above_threshold_and_reviewed_below():
    u = vs_unit()
    a, b = vs_caption(u), vs_caption(u, extra="overall")
    tb = json.loads(b)["caption"]
    cos80 = FakeEmbedder({tb: [0.8, 0.6]})          # cosine 0.80 with [1, 0]
    d = decide(u, a, b, 0, embedder=cos80)
    assert d.kind == "keep_both" and d.scores["s"] == pytest.approx(0.8)
    d = decide(u, a, b, 0, embedder=cos80, settings=ValidationSettings(min_agreement=0.9))
    assert d.kind == "review" and d.kept == []
    # a judge above tau_j rescues a low cosine
    d = decide(u, a, b, 0, embedder=cos80, judge=lambda unit, x, y: 4.5,
               settings=ValidationSettings(min_agreement=0.9, min_judge=4.0))
    assert d.kind == "keep_both" and d.scores["j"] == 4.5


def test_omit_a_fact_keeps_the_other_or_regenerates_naming_it():
    u = vs_unit()
    label = next(f for f in u.required if f.kind == "label")
    d = decide(u, vs_caption(u, drop=(label.term,)), vs_caption(u), 0, embedder=FakeEmbedder())
    assert d.kind == "keep_one" and d.kept == ["gemini"] and d.reason == "one_grounded"
    assert any("missing" in r and label.term in r for r in d.reasons)
    d = decide(u, vs_caption(u, drop=(label.term,)), vs_caption(u, drop=(label.term,)), 0, embedder=FakeEmbedder())
    assert d.kind == "regenerate" and d.missing == [label.describe()]
    d = decide(u, vs_caption(u, drop=(label.term,)), vs_caption(u, drop=(label.term,)), 1, embedder=FakeEmbedder())
    assert d.kind == "drop"


def test_invented_instrument_rejects_that_caption():
    u = vs_unit()
    assert "scissors" in u.vocabulary and "scissors" not in u.supported
    d = decide(u, vs_caption(u), vs_caption(u, extra="with the scissors"), 0, embedder=FakeEmbedder())
    assert d.kind == "keep_one" and d.kept == ["gpt"] and d.scores["h"] == {"gpt": 0, "gemini": 1}
    assert any("unsupported terms ['scissors']" in r for r in d.reasons)
    # a synonym of an unsupported tool counts too
    d = decide(u, vs_caption(u, extra="with the clip applier"), vs_caption(u), 0, embedder=FakeEmbedder())
    supported_clipper = "clipper" in u.supported
    assert d.kind == ("keep_both" if supported_clipper else "keep_one")


def test_contradiction_reviewed_or_dropped_per_policy():
    u = vs_unit()
    a, b = vs_caption(u), vs_caption(u, extra="and it bleeds")
    emb = FakeEmbedder({json.loads(b)["caption"]: [0.0, 1.0]})   # orthogonal: cosine 0
    assert decide(u, a, b, 0, embedder=emb).kind == "review"
    d = decide(u, a, b, 0, embedder=emb, settings=ValidationSettings(disagree_policy="drop"))
    assert d.kind == "drop" and d.reason == "disagree_drop" and d.scores["s"] == pytest.approx(0.0)


@pytest.mark.parametrize("bad", ["{not json", '{"text": "x"}', '["caption"]', '{"caption": 3}'])
def test_malformed_json_fails_format(bad):
    u = vs_unit()
    d = decide(u, bad, vs_caption(u), 0, embedder=FakeEmbedder())
    assert d.kind == "keep_one" and d.kept == ["gemini"]
    assert any(r.startswith("gpt: format:") for r in d.reasons)
    d = decide(u, bad, bad, 0)
    assert d.kind == "regenerate" and d.missing == sorted(f.describe() for f in u.required)


def test_format_checks_words_forbidden_timestamps_refusal():
    u = vs_unit()
    short = json.dumps({"caption": "The hook dissects."})
    for raw, needle in [(short, "words"), (vs_caption(u, extra="inside the bounding box"), "forbidden"),
                        (vs_caption(u, extra="at 12.5 s"), "timestamp"),
                        (vs_caption(u, extra="I'm sorry"), "refusal")]:
        d = decide(u, raw, vs_caption(u), 0, embedder=FakeEmbedder())
        assert d.kind == "keep_one" and any(needle in r for r in d.reasons if r.startswith("gpt")), (raw, d.reasons)


@pytest.mark.parametrize("err", ["429 Too Many Requests after 5 retries", "500 Internal Server Error",
                                 "timeout after 60 s"])
def test_provider_errors(err):
    u = vs_unit()
    d = decide(u, ProviderError(err), vs_caption(u), 0, embedder=FakeEmbedder())
    assert d.kind == "keep_one" and d.kept == ["gemini"] and d.reason == "other_provider_error"
    d = decide(u, ProviderError(err), vs_caption(u, drop=(u.required[0].term,)), 0)
    assert d.kind == "regenerate" and d.missing == [u.required[0].describe()]
    d = decide(u, ProviderError(err), ProviderError(err), 0)
    assert d.kind == "regenerate" and d.reason == "both_provider_error"
    d = decide(u, ProviderError(err), ProviderError(err), 1)
    assert d.kind == "drop" and d.reason == "both_provider_error"
    counts = count_decisions([d, d])
    assert counts == {"drop": {"both_provider_error": 2}}


def test_rc_unit_and_records():
    u = rc_unit()
    assert u.region and u.required[0].kind == "instrument" and u.required[0].term == u.region["object"]
    assert any("<target>" in line for line in u.frame_lines)
    cap = vs_caption(u)
    d = decide(u, cap, cap, 0, embedder=FakeEmbedder())
    assert d.kind == "keep_both"
    recs = caption_records(u, d, {"gpt": "gpt-4.1", "gemini": "gemini-2.5-flash"})
    assert [r["qa_type"] for r in recs] == ["region_caption_gpt", "region_caption_gemini"]
    c = recs[0]["curation"]
    assert c["models"]["gpt"] == "gpt-4.1" and c["decision"] == "keep_both" and c["prompt_version"]
    assert recs[0]["conversations"][1]["value"] == json.loads(cap)["caption"].strip()
    assert f"{u.region['t0']:.1f} seconds" in recs[0]["conversations"][0]["value"]


def dvc_caption(unit, skip=None):
    segs = []
    for sg in unit.segments:
        facts = " and ".join(f.term for f in unit.required if f.segment == sg.id and f.term != skip)
        segs.append({"id": sg.id, "caption": f"During this step the team performs {facts} with steady controlled "
                                             "movements of the instruments."})
    return json.dumps({"segments": segs})


@pytest.mark.parametrize("k", range(6))
def test_dvc_records_round_trip_and_self_score(k):
    u = build_unit("dense_captioning", video(), S, k)
    assert u.segments and all(f.segment is not None for f in u.required)
    assert "Segments to caption:" in u.input_text() and '"segments"' in u.input_text()
    d = decide(u, dvc_caption(u), dvc_caption(u), 0, embedder=FakeEmbedder())
    assert d.kind == "keep_both", d.reasons
    for rec in caption_records(u, d, {"gpt": "gpt-4.1", "gemini": "gemini-2.5-flash"}):
        assert rec["qa_type"].startswith("dense_captioning_")
        assert dvc_problem(rec) is None
        for line, sg in zip(rec["conversations"][1]["value"].splitlines(), u.segments):
            assert line.startswith(f"{sg.start:.1f}-{sg.end:.1f} seconds: {sg.name}: ")


def test_dvc_wrong_ids_and_missing_segment_fact():
    u = build_unit("dense_captioning", video(), S, 0)
    wrong = json.dumps({"segments": [{"id": 99, "caption": "x"}]})
    d = decide(u, wrong, dvc_caption(u), 0, embedder=FakeEmbedder())
    assert d.kind == "keep_one" and "segment ids" in d.reasons[0]
    label = u.required[0]
    d = decide(u, dvc_caption(u, skip=label.term), dvc_caption(u, skip=label.term), 0)
    assert d.kind == "regenerate" and label.describe() in d.missing


def test_units_are_seeded():
    a, b = build_unit("video_summary", video(), S, 2), build_unit("video_summary", video(), S, 2)
    assert (a.clip, a.input_text()) == (b.clip, b.input_text())



@pytest.mark.parametrize("fps, expected", [
    # two frame intervals: 0.5 fps -> 4 s, 1 fps -> 2 s, 2 fps -> 1 s. Segments A 1.5 s, B 4.0 s, C 24.5 s.
    ("0.5", [(1.5, 5.5, "B"), (5.5, 30.0, "C")]),
    ("1.0", [(1.5, 5.5, "B"), (5.5, 30.0, "C")]),
    ("2.0", [(0.0, 1.5, "A"), (1.5, 5.5, "B"), (5.5, 30.0, "C")]),
])
def test_dvc_segments_span_two_frame_intervals_at_the_units_rate(fps, expected):
    """The clip is the whole 30 s video (min_len = max_len = 30, clip seconds = video seconds) at one rate. At
    0.5 fps the frames are at 0, 2, 4, ... s: A [0, 1.5) holds one (0 s) and is left out, B [1.5, 5.5) holds two
    (2, 4 s) and is kept at exactly 4 s = 2 / 0.5; at 1 fps A (1.5 s < 2 s) is left out; at 2 fps all three."""
    from medgrpo_ray.curation.caption_units import dvc_min_segment

    segs = [Segment(0.0, 1.5, "A"), Segment(1.5, 5.5, "B"), Segment(5.5, 30.0, "C")]
    v = SourceVideo("NurViD", "n1", 30.0, duration_s=30.0, video_path="n1.mp4", segments=segs, procedure="injection")
    s = TaskSettings(seed=0, min_len=30.0, max_len=30.0, fps_prior={fps: 1.0})
    u = build_unit("dense_captioning", v, s, 0)
    assert (u.clip.start, u.clip.end, u.clip.fps) == (0.0, 30.0, float(fps))
    assert [(sg.start, sg.end, sg.label) for sg in u.segments] == expected
    assert [sg.id for sg in u.segments] == list(range(len(expected)))
    assert (dvc_min_segment(0.5), dvc_min_segment(1.0), dvc_min_segment(2.0)) == (4.0, 2.0, 1.0)
    for sg in u.segments:  # each kept segment holds at least two sampled frame times
        assert sum(sg.start <= t < sg.end for t in u.frame_times) >= 2
