"""nap_acc with the leaderboard's own tables (nap_classes.py, from ChaoSFu/MedVid_understanding
MedVidBench-Leaderboard/evaluation/eval_next_action.py @ 6a68818e): CoPESD legacy names, NurViD procedure
pick, skips, the fixed lists, and the --nurvid-table override. Every number is worked out by hand below."""
import importlib
import json

import pytest

from medgrpo_ray.evaluation import evaluate
from medgrpo_ray.evaluation.nap import evaluate_nap, nurvid_classes
from medgrpo_ray.medvidbench.nap_classes import AVOS, CHOLECT50, COPESD, COPESD_LEGACY, FIXED, NURVID_PROCEDURES


def nap(answer, gnd, dataset, question="What comes next?"):
    return {"qa_type": "next_action", "answer": answer, "gnd": gnd, "data_source": dataset, "question": question,
            "metadata": {"fps": "1.0"}}


def items(*records):
    return [(str(i), r) for i, r in enumerate(records)]


def load_command(name):
    """The command behind launch/<name>.py (medgrpo_ray/cli/<name>.py)."""
    return importlib.import_module(f"medgrpo_ray.cli.{name}")


# --- CoPESD legacy names -----------------------------------------------------------------------------------

def test_copesd_legacy_names_are_mapped_on_prediction_and_gt():
    """r1: legacy prediction 'hold flap with forceps' -> 'stabilize flap with forceps' = GT -> right.
    r2: ' dissect flap with knife ' strips, then maps to 'dissect flap tissue with knife' = GT -> right.
    r3: legacy GT 'manipulate flap with forceps' -> 'position flap with forceps only' (now in the list, so
        counted, not skipped); prediction in the new name -> right.
    r4: both legacy: pred -> 'retract flap edge with forceps only', GT 'retracting mucosa flap with forceps
        and knife' -> 'retract flap edge with forceps and knife' -> both classes, different -> wrong.
    r5: GT 'Hold flap with forceps' (capital H) is no legacy key and not in the list -> skipped.
    Counted 4, right 3 -> 3/4 = 0.75; skipped 1; every prediction is a class -> no embedding needed."""
    m = evaluate_nap(items(
        nap("hold flap with forceps", "stabilize flap with forceps", "CoPESD"),
        nap(" dissect flap with knife ", "dissect flap tissue with knife", "CoPESD"),
        nap("position flap with forceps only", "manipulate flap with forceps", "CoPESD"),
        nap("retract flap with forceps", "retracting mucosa flap with forceps and knife", "CoPESD"),
        nap("stabilize flap with forceps", "Hold flap with forceps", "CoPESD"),
    ))
    assert m.value == pytest.approx(0.75)
    assert (m.counted, m.total) == (4, 5)
    assert m.details["skipped_gt_not_in_classes"] == 1 and m.details["needed_embedding"] == 0
    assert m.details["class_source"] == {"CoPESD": "fixed list"}


def test_legacy_map_is_copesd_only():
    """EgoSurgery: classes = its GT labels {'hold flap with forceps', 'incision'} (no mapping outside CoPESD).
    r1 'stabilize flap with forceps' is not a class -> needs the embedding, none given -> wrong.
    r2 'incision' = GT -> right. 1/2 = 0.5, one prediction needed the embedding."""
    m = evaluate_nap(items(
        nap("stabilize flap with forceps", "hold flap with forceps", "EgoSurgery"),
        nap("incision", "incision", "EgoSurgery"),
    ))
    assert (m.value, m.counted, m.details["needed_embedding"]) == (0.5, 2, 1)


# --- NurViD procedure pick ---------------------------------------------------------------------------------

def test_nurvid_two_procedures_table_order_wins_not_question_order():
    """The question names 'skin preparation' first and 'administering oral medications' later (lower case).
    Table order has 'Administering Oral Medications' first (index 0; 'Skin Preparation' is index 37), so its
    list is used: 'Prepare medications' (only in that list) counts; 'Cleanse skin' (only in Skin
    Preparation's list) is skipped. r1 right, r2 skipped, r3 'Check' vs GT 'Document': both classes, wrong.
    Counted 2, right 1 -> 0.5; skipped 1."""
    q = "In this skin preparation clip, recorded after administering oral medications, what comes next?"
    classes, source = nurvid_classes(q, NURVID_PROCEDURES)
    assert source == "procedure Administering Oral Medications"
    assert classes == NURVID_PROCEDURES["Administering Oral Medications"]
    assert "Cleanse skin" in NURVID_PROCEDURES["Skin Preparation"] and "Cleanse skin" not in classes
    assert "Prepare medications" not in NURVID_PROCEDURES["Skin Preparation"]
    m = evaluate_nap(items(
        nap("Prepare medications", "Prepare medications", "NurViD", q),
        nap("Cleanse skin", "Cleanse skin", "NurViD", q),
        nap("Check", "Document", "NurViD", q),
    ))
    assert (m.value, m.counted, m.total, m.details["skipped_gt_not_in_classes"]) == (0.5, 2, 3, 1)


def test_nurvid_female_listed_before_male_which_it_contains():
    """'female retention catheterization' contains 'male retention catheterization'; Female is listed first
    (index 16, Male 23), so a Female question gets the Female list, which lacks 'Position the patient'
    (Male's list has it). Female record skipped; Male record counted and right -> 1/1 = 1.0, skipped 1."""
    fq, mq = "Female Retention Catheterization: next step?", "Male Retention Catheterization: next step?"
    assert nurvid_classes(fq, NURVID_PROCEDURES)[1] == "procedure Female Retention Catheterization"
    assert nurvid_classes(mq, NURVID_PROCEDURES)[1] == "procedure Male Retention Catheterization"
    m = evaluate_nap(items(
        nap("Position the patient", "Position the patient", "NurViD", fq),
        nap("Position the patient", "Position the patient", "NurViD", mq),
    ))
    assert (m.value, m.counted, m.details["skipped_gt_not_in_classes"]) == (1.0, 1, 1)


def test_nurvid_gt_outside_procedure_list_skipped_and_union_fallback():
    """r1 'Use of Restraints' has the one action 'Immobilize the shoulder'; GT 'Check' is not in it ->
    skipped. r2 names no procedure -> the union of all 140 actions; GT 'Immobilize the shoulder' is in it;
    prediction 'Transport in wheelchair' is another class -> wrong. r3 'Subcutaneous Injection Insulin'
    question: 'Subcutaneous Injection' (index 40) is found before the Insulin entry (41), so its list (no
    'Prepare medication solution') applies -> skipped. r4 Intravenous Blood Sampling, exact -> right.
    Counted 2 (r2, r4), right 1 -> 0.5; skipped 2."""
    union, source = nurvid_classes("What comes next?", NURVID_PROCEDURES)
    assert source == "union" and len(union) == 140 and list(union) == sorted(union)
    m = evaluate_nap(items(
        nap("Check", "Check", "NurViD", "In this Use of Restraints video, what comes next?"),
        nap("Transport in wheelchair", "Immobilize the shoulder", "NurViD", "What comes next?"),
        nap("Prepare medication solution", "Prepare medication solution", "NurViD",
            "In this Subcutaneous Injection Insulin video, what comes next?"),
        nap("Mix blood sample", "Mix blood sample", "NurViD", "In this Intravenous Blood Sampling video"),
    ))
    assert (m.value, m.counted, m.total) == (0.5, 2, 4)
    assert m.details["skipped_gt_not_in_classes"] == 2
    assert m.per_dataset == {"NurViD": 0.5}


def test_empty_gt_is_skipped_not_a_class():
    """LB: an empty GT is never a class (GT-label datasets take only non-empty labels) -> skipped.
    EgoSurgery classes = {'incision'}; r1 right; r2 GT '  ' strips to '' -> skipped (before the fix it was a
    class and counted: 1/2). 1/1 = 1.0, skipped 1, nothing needs the embedding."""
    m = evaluate_nap(items(nap("incision", "incision", "EgoSurgery"), nap("closure", "  ", "EgoSurgery")))
    assert (m.value, m.counted, m.details["skipped_gt_not_in_classes"], m.details["needed_embedding"]) == (1.0, 1, 1, 0)


# --- the tables themselves ---------------------------------------------------------------------------------

NURVID_SIZES = (  # per procedure, in table order (counted from the source file)
    7, 2, 9, 6, 5, 6, 9, 4, 7, 10, 3, 10, 4, 3, 6, 4, 4, 6, 4, 6, 8, 9, 5, 5, 5,
    2, 9, 6, 9, 5, 7, 4, 5, 7, 4, 7, 8, 3, 4, 4, 7, 3, 5, 2, 2, 3, 1, 8, 2,
)


def test_table_sizes():
    """3 + 7 + 8 fixed; 8 legacy names; 49 procedures with 264 list entries (sum of NURVID_SIZES), 140
    distinct actions; no list has a duplicate."""
    assert (len(AVOS), len(CHOLECT50), len(COPESD), len(COPESD_LEGACY), len(NURVID_PROCEDURES)) == (3, 7, 8, 8, 49)
    assert tuple(len(v) for v in NURVID_PROCEDURES.values()) == NURVID_SIZES and sum(NURVID_SIZES) == 264
    assert len({a for v in NURVID_PROCEDURES.values() for a in v}) == 140
    assert all(len(set(v)) == len(v) for v in NURVID_PROCEDURES.values())
    assert FIXED == {"AVOS": AVOS, "CholecT50": CHOLECT50, "CoPESD": COPESD}
    assert set(COPESD_LEGACY.values()) <= set(COPESD)


def test_exact_strings_typos_kept():
    assert AVOS == ("cutting", "tying", "suturing")
    assert CHOLECT50[1] == "carlot-triangle-dissection"
    assert COPESD[-1] == "stabilize flap with forceps"
    assert COPESD_LEGACY["retracting mucosa flap with forceps and knife"] == "retract flap edge with forceps and knife"
    assert COPESD_LEGACY["lift flap with forceps"] == "lift flap with forceps"
    sheets = NURVID_PROCEDURES["Change Sheets of an Occupied Bed"]
    assert sheets[6:8] == ("Spread the proximal bedshee", "Withdraw contaminated bed shee")
    assert NURVID_PROCEDURES["Electrocardiogram"][1] == "Expose the connection sit"
    names = list(NURVID_PROCEDURES)
    assert names[0] == "Administering Oral Medications" and names[-1] == "Wheelchair Transfer Technique"
    assert "Cardiopulmonary Resuscitation WIth Manual Resuscitation Bag" in names
    assert "Peripheral Venous Indwelled Needle Infusion and Maintaince" in names
    assert names.index("Subcutaneous Injection") == 40 and names.index("Subcutaneous Injection Insulin") == 41


# --- --nurvid-table override -------------------------------------------------------------------------------

OVERRIDE = {"Wound Care": ["Clean wound", "Apply bandage"], "Intravenous Blood Sampling": ["Draw blood"]}
OVERRIDE_RECORDS = {
    "0": nap("Draw blood", "Draw blood", "NurViD", "In this Intravenous Blood Sampling video"),
    "1": nap("Clean wound", "Apply bandage", "NurViD", "In this Wound Care video"),
}


def test_nurvid_table_override_via_command(tmp_path):
    """With the JSON table: r0 list ('Draw blood',) -> right; r1 'Wound Care' list, both classes, wrong ->
    1/2 = 0.5, nothing skipped. Built-in table: 'Draw blood' is not in its Intravenous Blood Sampling list
    and r1 names no built-in procedure -> union, 'Apply bandage' not in it -> both skipped -> not computed."""
    table_path = tmp_path / "nurvid.json"
    table_path.write_text(json.dumps(OVERRIDE))
    results = tmp_path / "results.json"
    results.write_text(json.dumps(OVERRIDE_RECORDS))
    command = load_command("evaluate")
    assert load_command("scorers").load_nurvid_table(str(table_path)) == {k: tuple(v) for k, v in OVERRIDE.items()}

    out = tmp_path / "with_table.json"
    assert command.main([str(results), "--nurvid-table", str(table_path), "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["leaderboard_row"]["nap_acc"] == 0.5
    assert payload["metrics"]["nap_acc"]["counted"] == 2
    assert payload["metrics"]["nap_acc"]["details"]["skipped_gt_not_in_classes"] == 0

    out = tmp_path / "built_in.json"
    assert command.main([str(results), "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["leaderboard_row"]["nap_acc"] is None


def test_nurvid_table_override_via_evaluate():
    """Same records through evaluate(): table passed in -> 0.5 (see above); default -> not computed."""
    table = {k: tuple(v) for k, v in OVERRIDE.items()}
    assert evaluate(OVERRIDE_RECORDS, nurvid_table=table).metrics["nap_acc"].value == 0.5
    assert evaluate(OVERRIDE_RECORDS).metrics["nap_acc"].value is None
