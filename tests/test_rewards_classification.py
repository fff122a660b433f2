"""Training rewards for next action (exact label), skill assessment (per aspect) and CVS (per component)."""
import pytest

from medgrpo_ray.rewards import compute_reward
from medgrpo_ray.rewards.parsers import parse_cvs, parse_skill
from medgrpo_ray.rewards.types import Unparseable

ASPECTS = {
    "Respect for tissue": 3,
    "Suture/needle handling": 2,
    "Time and motion": 3,
    "Flow of operation": 3,
    "Overall performance": 3,
    "Quality of final product": 2,
}


def answer_for(scores):
    return ", ".join(f"{k}: {v}/5" for k, v in scores.items())


def sa_record(struc_info, gnd=""):
    return {"qa_type": "skill_assessment", "struc_info": struc_info, "gnd": gnd, "metadata": {"fps": "1.0"}, "data_source": "JIGSAWS"}


def cvs_record(scores, gnd=""):
    struc = [{"cvs_scores": scores}] if scores is not None else []
    return {"qa_type": "cvs_assessment", "struc_info": struc, "gnd": gnd, "metadata": {"fps": "1.0"}, "data_source": "Cholec80_CVS"}


def nap_record(gnd):
    return {"qa_type": "next_action", "gnd": gnd, "struc_info": [], "metadata": {"fps": "1.0"}, "data_source": "AVOS"}


# --- next action ---------------------------------------------------------------------------------------------
def test_nap_exact_after_normalisation():
    rec = nap_record("suturing")
    assert compute_reward(rec, "suturing").value == 1.0
    assert compute_reward(rec, '  "Suturing." ').value == 1.0
    assert compute_reward(rec, "tying").value == 0.0
    assert compute_reward(rec, "The next action is suturing").value == 0.0


def test_nap_empty_answer_and_missing_gt():
    assert compute_reward(nap_record("suturing"), "   ").value == 0.0
    assert compute_reward(nap_record(""), "suturing").value is None


# --- skill assessment ----------------------------------------------------------------------------------------
def test_sa_parser():
    p = parse_skill("Respect for tissue: 3/5, Suture/needle handling: 2/5, Time and motion: 4/5")
    assert p.numbers == (3, 2, 4) and p.level == "intermediate"  # mean 3.0 <= 3.5
    assert dict(p.aspects) == {"Respect for tissue": 3, "Suture/needle handling": 2, "Time and motion": 4}
    assert isinstance(parse_skill("an intermediate surgeon"), Unparseable)


def test_sa_exact_and_per_aspect_partial_credit():
    """Exact: 6/6 = 1. Two aspects wrong: 4/6. One aspect lower-cased (names are case-sensitive): 5/6."""
    rec = sa_record([{"skill_level": "I", "skill_scores": ASPECTS}])
    assert compute_reward(rec, answer_for(ASPECTS)).value == 1.0
    two_wrong = {**ASPECTS, "Respect for tissue": 4, "Time and motion": 1}
    assert compute_reward(rec, answer_for(two_wrong)).value == pytest.approx(4 / 6)
    lower = answer_for(ASPECTS).replace("Respect for tissue", "respect for tissue")
    assert compute_reward(rec, lower).value == pytest.approx(5 / 6)


def test_sa_unparseable_scores_zero():
    rec = sa_record([{"skill_level": "I", "skill_scores": ASPECTS}])
    r = compute_reward(rec, "The surgeon is intermediate.")
    assert r.value == 0.0 and r.reason.startswith("unparseable")


def test_sa_level_only_gt():
    """GT level E only. 'Respect: 4/5, Flow: 5/5' mean 4.5 > 3.5 -> expert -> 1; '3/5' -> intermediate -> 0."""
    rec = sa_record([{"skill_level": "E"}])
    assert compute_reward(rec, "Respect: 4/5, Flow: 5/5").value == 1.0
    assert compute_reward(rec, "Overall 3/5").value == 0.0


def test_sa_gt_from_gnd_when_struc_info_empty():
    """GT from gnd: Respect 3, Time 2. Answer Respect 3, Time 3 -> 1/2."""
    rec = sa_record([], gnd="Respect for tissue: 3/5, Time and motion: 2/5")
    assert compute_reward(rec, "Respect for tissue: 3/5, Time and motion: 3/5").value == 0.5


# --- CVS -----------------------------------------------------------------------------------------------------
GT_CVS = {"two_structures": 1, "cystic_plate": 0, "hepatocystic_triangle": 1}


def test_cvs_parser_quirks():
    """';' does not split: the piece's first component name decides, so only two_structures is read;
    'two structure:' (singular) yields nothing."""
    assert dict(parse_cvs("Two structures: 2; Cystic plate: 2").components) == {"two_structures": 2}
    assert isinstance(parse_cvs("two structure: 1"), Unparseable)


def test_cvs_exact_partial_and_quirk():
    """Exact 3/3; cystic plate wrong 2/3; ';'-separated answer reads only two_structures (1 = GT) -> 1/3;
    an out-of-range value (5) is wrong for its component -> 2/3."""
    rec = cvs_record(GT_CVS)
    assert compute_reward(rec, "Two structures: 1, Cystic plate: 0, Hepatocystic triangle: 1").value == 1.0
    assert compute_reward(rec, "Two structures: 1, Cystic plate: 1, Hepatocystic triangle: 1").value == pytest.approx(2 / 3)
    assert compute_reward(rec, "Two structures: 1; Cystic plate: 0; Hepatocystic triangle: 1").value == pytest.approx(1 / 3)
    assert compute_reward(rec, "Two structures: 1, Cystic plate: 5, Hepatocystic triangle: 1").value == pytest.approx(2 / 3)


def test_cvs_empty_and_gt_from_gnd():
    assert compute_reward(cvs_record(GT_CVS), "").value == 0.0
    rec = cvs_record(None, gnd="Two structures: 2, Cystic plate: 2, Hepatocystic triangle: 2")
    assert compute_reward(rec, "Two structures: 2, Cystic plate: 1, Hepatocystic triangle: 2").value == pytest.approx(2 / 3)
    assert compute_reward(cvs_record(None), "Two structures: 2").value is None
