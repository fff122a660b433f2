"""Dense-caption judging, the hybrid caption reward (hand-worked), and the judge wired into the evaluator."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from judge_server import expected_scores, judge_server  # noqa: E402,F401  (fixture)

from medgrpo_ray.models.embedding import SentenceEmbedder  # noqa: E402
from medgrpo_ray.evaluation.evaluator import evaluate  # noqa: E402
from medgrpo_ray.judge.caption_reward import CaptionRewardSettings, CaptionSample, caption_rewards, judge_to_unit  # noqa: E402
from medgrpo_ray.config.schema import JudgeConfig  # noqa: E402
from medgrpo_ray.judge.client import build_judge  # noqa: E402
from medgrpo_ray.judge.dvc import aspect_mean_score, judge_dense_captions, match_caption_pairs  # noqa: E402
from medgrpo_ray.judge.types import ASPECTS, JudgeResult  # noqa: E402
from medgrpo_ray.models.tiny_text_encoder import build_tiny_text_encoder  # noqa: E402
from medgrpo_ray.rewards.types import CaptionSegment as Seg  # noqa: E402


def scores(*values: int) -> dict[str, int]:
    return dict(zip(ASPECTS, values))


class StubJudge:
    """Scores from a table keyed by (prediction, reference); unknown pairs fail. Records every batch."""

    def __init__(self, table: dict[tuple[str, str], dict[str, int] | None], flagged: frozenset[str] = frozenset()):
        self.table, self.flagged, self.batches = table, flagged, []

    def score_pairs(self, pairs, task):
        self.batches.append((task, list(pairs)))
        return [JudgeResult(scores=self.table[p], flagged_injection=p[0] in self.flagged) if self.table.get(p)
                else JudgeResult(error="timeout after 4 attempt(s)") for p in pairs]


class StubEncoder:
    """Fixed unit vectors per text, so cosines are hand-chosen. Records every encode call."""

    def __init__(self, vectors: dict[str, list[float]]):
        self.vectors, self.calls = vectors, []

    def encode(self, texts):
        self.calls.append(list(texts))
        return np.array([self.vectors[t] for t in texts], dtype=np.float32)


# ---- dense captioning --------------------------------------------------------------------------------------
PRED = [Seg(0, 10, "a"), Seg(10, 22, "b"), Seg(30, 40, "c"), Seg(2, 9, "d")]
GT = [Seg(0, 8, "x"), Seg(12, 20, "y"), Seg(50, 60, "z")]
# IoU: a-x 8/10 = 0.8; b-y 8/12 = 0.667; c matches nothing; d-x 6/9 = 0.667 (d-y 0)


def test_matching_takes_each_predictions_best_reference_above_tau():
    pairs = match_caption_pairs(PRED, GT)
    assert pairs == {0.3: [("a", "x"), ("b", "y"), ("d", "x")], 0.5: [("a", "x"), ("b", "y"), ("d", "x")], 0.7: [("a", "x")]}
    # a prediction overlapping two references takes the better one; ties go to the first
    assert match_caption_pairs([Seg(5, 15, "p")], [Seg(0, 10, "q"), Seg(6, 16, "r")])[0.3] == [("p", "r")]
    assert match_caption_pairs([Seg(5, 15, "p")], [Seg(0, 10, "q"), Seg(10, 20, "r")])[0.3] == [("p", "q")]
    assert match_caption_pairs([Seg(10, 0, "rev")], GT)[0.3] == []  # a reversed segment has IoU 0


def test_dvc_aggregation_hand_worked():
    judge = StubJudge({("a", "x"): scores(4, 4, 4, 4, 4), ("b", "y"): scores(2, 2, 3, 2, 1), ("d", "x"): None})
    (j,) = judge_dense_captions([(PRED, GT)], judge)
    # each unique pair judged once, in one batch, although (a, x) matches at three thresholds
    assert judge.batches == [("dense_captioning", [("a", "x"), ("b", "y"), ("d", "x")])]
    # tau 0.3 and 0.5: (d, x) failed and is left out; aspect means over (a,x),(b,y): 3, 3, 3.5, 3, 2.5 -> 3.0
    # tau 0.7: (a, x) only -> 4.0; score = (3 + 3 + 4) / 3
    assert j.per_threshold == {0.3: 3.0, 0.5: 3.0, 0.7: 4.0}
    assert j.score == pytest.approx(10 / 3) and j.matched and j.reason == ""


def test_dvc_zero_thresholds_are_left_out_and_edge_cases_are_explicit():
    judge = StubJudge({("b", "y"): scores(5, 5, 5, 5, 5)})
    no_07, nothing, failed, no_gt = judge_dense_captions(
        [([Seg(10, 22, "b")], GT), ([Seg(30, 40, "c")], GT), ([Seg(0, 10, "a")], GT), ([Seg(0, 10, "a")], [])], judge
    )
    assert no_07.per_threshold == {0.3: 5.0, 0.5: 5.0, 0.7: 0.0} and no_07.score == 5.0  # 0.7 matched nothing
    assert nothing.score == 0.0 and not nothing.matched and "IoU >= 0.3" in nothing.reason
    assert failed.score is None and "judge failed for all 1 matched pairs" in failed.reason
    assert no_gt.score is None and no_gt.reason == "no reference segments"
    assert aspect_mean_score([]) == 0.0


# ---- hybrid reward ---------------------------------------------------------------------------------------
VECS = {"pred a": [0.6, 0.8], "ref a": [1.0, 0.0], "pred b": [-1.0, 0.0], "ref b": [1.0, 0.0], "x": [1.0, 0.0], "y": [0.0, 1.0]}


def test_hybrid_reward_hand_worked():
    judge = StubJudge({("pred a", "ref a"): scores(4, 3, 5, 4, 4), ("pred b", "ref b"): scores(1, 1, 1, 1, 1)})
    enc = StubEncoder(VECS)
    samples = [CaptionSample("pred a", "ref a", "video_summary"), CaptionSample("pred b", "ref b", "region_caption")]
    a, b = caption_rewards(samples, judge, enc)
    # judge mean 4.0 -> (4 - 1) / 4 = 0.75; cosine 0.6; 0.5 * 0.75 + 0.5 * 0.6
    assert a.value == pytest.approx(0.675) and a.reason == ""
    assert a.components == pytest.approx({"judge_weight": 0.5, "similarity": 0.6, "judge_1to5": 4.0, "judge": 0.75, "flagged_injection": 0.0})
    # judge 1 -> 0; cosine -1 clipped to 0
    assert b.value == 0.0 and b.components["similarity"] == 0.0
    assert len(enc.calls) == 1 and sorted(enc.calls[0]) == ["pred a", "pred b", "ref a", "ref b"]  # one batched encode
    assert sorted(task for task, _ in judge.batches) == ["region_caption", "video_summary"]
    (w25,) = caption_rewards(samples[:1], judge, enc, CaptionRewardSettings(judge_weight=0.25))
    assert w25.value == pytest.approx(0.25 * 0.75 + 0.75 * 0.6)
    (judge_only,) = caption_rewards(samples[:1], judge, None, CaptionRewardSettings(judge_weight=1.0))
    (sim_only,) = caption_rewards(samples[:1], None, enc, CaptionRewardSettings(judge_weight=0.0))
    assert (judge_only.value, sim_only.value) == (pytest.approx(0.75), pytest.approx(0.6))
    assert [judge_to_unit(s) for s in (1, 2, 3, 4, 5, 0, 6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 0.0, 1.0]


def test_judge_failure_is_no_reward_or_similarity_fallback_never_a_silent_zero():
    judge = StubJudge({})  # every call fails
    enc = StubEncoder(VECS)
    sample = [CaptionSample("pred a", "ref a", "video_summary")]
    (none,) = caption_rewards(sample, judge, enc)
    assert none.value is None and "judge failed: timeout after 4 attempt(s)" in none.reason
    (fallback,) = caption_rewards(sample, judge, enc, CaptionRewardSettings(fallback_to_similarity=True))
    assert fallback.value == pytest.approx(0.6) and "similarity only" in fallback.reason

    class Exploding:
        def score_pairs(self, pairs, task):
            raise RuntimeError("connection pool exhausted")

        def encode(self, texts):
            raise RuntimeError("CUDA out of memory")

    (raised,) = caption_rewards(sample, Exploding(), enc)
    assert raised.value is None and "RuntimeError: connection pool exhausted" in raised.reason
    (no_sim,) = caption_rewards(sample, StubJudge({("pred a", "ref a"): scores(5, 5, 5, 5, 5)}), Exploding())
    assert no_sim.value is None and "similarity failed" in no_sim.reason


def test_empty_answers_and_bad_inputs_are_explicit():
    judge, enc = StubJudge({}), StubEncoder(VECS)
    empty, no_ref, dvc_bad, dvc_no_gt, other = caption_rewards(
        [CaptionSample("  ", "ref a", "region_caption"), CaptionSample("pred a", "", "video_summary"),
         CaptionSample("no segments here", [Seg(0, 8, "x")], "dense_captioning"),
         CaptionSample("0.0-8.0 seconds: x", [], "dense_captioning"), CaptionSample("a", "b", "tal")],
        judge, enc)
    assert (empty.value, empty.reason) == (0.0, "region_caption: empty answer")
    assert no_ref.value is None and "empty reference" in no_ref.reason
    assert dvc_bad.value == 0.0 and "dense_captioning: no dense-caption segment" in dvc_bad.reason
    assert dvc_no_gt.value is None and "no reference segments" in dvc_no_gt.reason
    assert other.value is None and "'tal' has no caption reward" in other.reason
    assert judge.batches == [] and enc.calls == []  # nothing to judge or embed
    with pytest.raises(ValueError, match="needs a judge"):
        caption_rewards([], None, enc)


def test_dense_caption_reward_hand_worked():
    judge = StubJudge({("a", "x"): scores(5, 5, 5, 5, 5), ("b", "y"): scores(3, 3, 3, 3, 3)})
    enc = StubEncoder({"a": [1.0, 0.0], "x": [1.0, 0.0], "b": [0.0, 1.0], "y": [0.6, 0.8], "c": [0.0, 1.0]})
    answer = "0.0-10.0 seconds: a\n10.0-22.0 seconds: b\n30.0-40.0 seconds: c"
    hit, miss = caption_rewards([CaptionSample(answer, GT, "dense_captioning"),
                                 CaptionSample("30.0-40.0 seconds: c", GT, "dense_captioning")], judge, enc)
    # judge: tau .3/.5 -> (5 + 3) / 2 = 4, tau .7 -> 5; (4 + 4 + 5) / 3 = 13/3 -> unit (13/3 - 1) / 4 = 5/6
    # similarity: cos(a,x) = 1, cos(b,y) = 0.8; tau .3/.5 -> 0.9, tau .7 -> 1.0; mean 2.8 / 3
    assert hit.components["judge_1to5"] == pytest.approx(13 / 3)
    assert hit.components["similarity"] == pytest.approx(2.8 / 3)
    assert hit.value == pytest.approx(0.5 * 5 / 6 + 0.5 * 2.8 / 3)
    assert miss.value == 0.0 and "no predicted segment matches" in miss.reason


# ---- end to end over HTTP, and the evaluator's caption columns ----------------------------------------------
REF = "The grasper retracts the gallbladder fundus while the hook dissects the cystic duct."


@pytest.fixture
def http_judge(judge_server, monkeypatch, tmp_path):
    monkeypatch.setenv("MEDGRPO_TEST_JUDGE_KEY", "sk-test-e2e")
    client = build_judge(JudgeConfig(base_url=judge_server.base_url, model="test-judge", api_key_env="MEDGRPO_TEST_JUDGE_KEY",
                                     timeout_s=2.0, backoff_initial_s=0.01, requests_per_minute=0.0, cache_dir=str(tmp_path / "cache")))
    yield client
    client.close()


def test_caption_rewards_over_http_with_the_tiny_encoder(http_judge, judge_server, tmp_path):
    encoder = SentenceEmbedder(build_tiny_text_encoder(tmp_path / "enc"))
    group = ["The grasper retracts the gallbladder.", "The hook dissects the cystic duct."] * 4  # G = 8, 2 distinct
    samples = [CaptionSample(p, REF, "video_summary") for p in group]
    samples.append(CaptionSample("0.0-8.0 seconds: The grasper retracts the gallbladder.", [Seg(0, 8, REF)], "dense_captioning"))
    rewards = caption_rewards(samples, http_judge, encoder)
    # G = 8 completions with 2 distinct texts -> 2 calls; the DVC pair is another task (another key) -> 1 call
    assert judge_server.control.requests == 3
    for sample, reward in zip(samples, rewards):
        text = sample.prediction if isinstance(sample.prediction, str) and sample.task != "dense_captioning" else group[0]
        judged = sum(expected_scores(text, REF).values()) / 5
        assert reward.components["judge_1to5"] == pytest.approx(judged)
        assert reward.value == pytest.approx(0.5 * (judged - 1) / 4 + 0.5 * reward.components["similarity"])
        assert 0.0 <= reward.value <= 1.0
    assert rewards[0].value == rewards[2].value


def test_evaluator_computes_caption_columns_with_the_judge(http_judge):
    def rec(qa_type, answer, gnd, struc_info=None, source="CholecT50"):
        return {"qa_type": qa_type, "answer": answer, "gnd": gnd, "struc_info": struc_info or [], "data_source": source,
                "metadata": {"fps": "1.0"}, "question": "q"}

    records = [
        rec("video_summary_gpt", "The grasper retracts the gallbladder.", REF),
        rec("video_summary_gemini", "The hook dissects the cystic duct.", REF, source="CoPESD"),
        rec("region_caption_gpt", "The grasper retracts the gallbladder fundus.", REF),
        rec("dense_captioning_gpt", "0.0-8.0 seconds: The grasper retracts.", REF, [{"start": 0, "end": 8, "caption": REF}]),
    ]
    row = evaluate(records, judge=http_judge).row()
    mean = lambda text: sum(expected_scores(text, REF).values()) / 5  # noqa: E731
    assert row["vs_llm"] == pytest.approx((mean(records[0]["answer"]) + mean(records[1]["answer"])) / 2)
    assert row["rc_llm"] == pytest.approx(mean(records[2]["answer"]))
    assert row["dvc_llm"] == pytest.approx(mean("The grasper retracts."))
    assert evaluate(records).row()["vs_llm"] is None  # no judge -> not computed
