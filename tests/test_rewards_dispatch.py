"""compute_reward: dispatch on canonical task, "no reward" results, record objects, settings validation."""
import random

import pytest

from medgrpo_ray.rewards import NEEDS_JUDGE, RewardSettings, compute_reward


def test_caption_tasks_need_the_judge():
    for qa_type in ("video_summary_gpt", "video_summary_gemini", "region_caption_gpt", "region_caption_gemini"):
        r = compute_reward({"qa_type": qa_type, "gnd": "a caption"}, "a caption")
        assert r.value is None and r.reason == NEEDS_JUDGE


def test_unknown_qa_type_and_bad_field_are_no_reward_with_reason():
    r = compute_reward({"qa_type": "vqa"}, "x", rid="17")
    assert r.value is None and "record 17" in r.reason and "qa_type" in r.reason
    bad = {"qa_type": "tal", "struc_info": [{"spans": [{"start": "abc", "end": 3}]}]}
    r = compute_reward(bad, "1-3", rid="7")
    assert r.value is None and "record 7" in r.reason and "spans.start" in r.reason
    r = compute_reward({"qa_type": "tal", "struc_info": [{"spans": 5}]}, "1-3", rid="8")
    assert r.value is None and "record 8" in r.reason and "unexpected shape" in r.reason


def test_record_object_with_to_dict():
    class Rec:
        def to_dict(self):
            return {"qa_type": "next_action", "gnd": "tying", "data_source": "AVOS"}

    assert compute_reward(Rec(), "tying").value == 1.0
    with pytest.raises(TypeError, match="Mapping"):
        compute_reward(object(), "tying")


def test_settings_are_validated():
    with pytest.raises(ValueError, match="format_weight"):
        RewardSettings(format_weight=1.5)
    with pytest.raises(ValueError, match="dvc_thresholds"):
        RewardSettings(dvc_thresholds=())


def test_values_stay_in_unit_interval_for_random_answers():
    """Random junk of digits, dashes, brackets and words never leaves [0, 1] for any task."""
    rng = random.Random(0)
    records = [
        {"qa_type": "tal", "struc_info": [{"spans": [{"start": 3, "end": 8}]}]},
        {"qa_type": "stg", "struc_info": [{"bbox_dict": {"1.0": [0, 0, 10, 10], "2.0": [5, 5, 20, 20]}}]},
        {"qa_type": "dense_captioning_gemini", "struc_info": [{"start": 0, "end": 5, "caption": "a"}]},
        {"qa_type": "skill_assessment", "struc_info": [{"skill_level": "N", "skill_scores": {"Respect for tissue": 2}}]},
        {"qa_type": "cvs_assessment", "struc_info": [{"cvs_scores": {"two_structures": 0, "cystic_plate": 1, "hepatocystic_triangle": 2}}]},
        {"qa_type": "next_action", "gnd": "cutting"},
    ]
    alphabet = list("0123456789.-,:[] ") + ["seconds", "Two structures", "/5", "\n", "to", "Respect for tissue"]
    for _ in range(300):
        answer = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for rec in records:
            r = compute_reward(rec, answer, RewardSettings(format_weight=0.2))
            assert r.value is not None and 0.0 <= r.value <= 1.0, (rec["qa_type"], answer, r)
