"""Leaderboard nap_acc, sa_acc and cvs_acc: class lists, embedding fallback, skips, dataset means."""
import numpy as np
import pytest

from medgrpo_ray.evaluation import evaluate
from medgrpo_ray.evaluation.nap import nurvid_classes


def nap(answer, gnd, dataset, question="What comes next?"):
    return {"qa_type": "next_action", "answer": answer, "gnd": gnd, "data_source": dataset, "question": question, "metadata": {"fps": "1.0"}}


class FakeEmbedder:
    """Hand-made 2-D vectors: cos(Suturing, suturing) = 0.9 / 0.906 = 0.994 (vs cutting 0.11, tying -0.99);
    cos(dissection, incision) = 0.8 > cos(dissection, closure) = 0.6."""

    VECTORS = {
        "suturing": [1, 0], "Suturing": [0.9, 0.1], "cutting": [0, 1], "tying": [-1, 0],
        "incision": [1, 0], "closure": [0, 1], "dissection": [0.8, 0.6],
    }

    def __init__(self):
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return np.array([self.VECTORS[t] for t in texts], dtype=float)


NAP_RECORDS = [
    nap("suturing", "suturing", "AVOS"),  # exact, right
    nap(" cutting ", "tying", "AVOS"),  # exact after strip, wrong
    nap("suturing", "knotting", "AVOS"),  # GT not in the AVOS list -> skipped
    nap("Suturing", "suturing", "AVOS"),  # case differs -> needs the embedding fallback
    nap("incision", "incision", "EgoSurgery"),  # classes = GT labels present {closure, incision}
    nap("dissection", "closure", "EgoSurgery"),  # not a class -> fallback
]


def test_nap_without_embedder_counts_fallbacks_wrong_and_says_so():
    """Counted 5 (one skipped); correct: records 1 and 5 -> 2/5 = 0.4. AVOS 1/3, EgoSurgery 1/2."""
    report = evaluate(NAP_RECORDS)
    m = report.metrics["nap_acc"]
    assert m.value == pytest.approx(0.4)
    assert m.per_dataset == pytest.approx({"AVOS": 1 / 3, "EgoSurgery": 0.5})
    assert (m.counted, m.total, m.details["skipped_gt_not_in_classes"], m.details["needed_embedding"]) == (5, 6, 1, 2)
    assert "no embedder configured" in m.note and "all-MiniLM-L6-v2" in m.note
    assert "2 predictions" in m.note


def test_nap_with_embedder_picks_nearest_class():
    """'Suturing' -> suturing (right); 'dissection' -> incision (GT closure, wrong). 3/5 = 0.6; AVOS 2/3."""
    emb = FakeEmbedder()
    m = evaluate(NAP_RECORDS, embedder=emb).metrics["nap_acc"]
    assert m.value == pytest.approx(0.6)
    assert m.per_dataset == pytest.approx({"AVOS": 2 / 3, "EgoSurgery": 0.5})
    assert len(emb.calls) == 1  # one batched encode call


TABLE = {
    "Subcutaneous Injection": ("disinfect skin", "insert needle", "withdraw needle"),
    "Subcutaneous Injection of Insulin": ("check insulin", "disinfect skin", "inject insulin"),
    "Intravenous Blood Sampling": ("apply tourniquet", "disinfect skin", "draw blood"),
}


def test_nurvid_class_list_by_first_procedure_named():
    classes, source = nurvid_classes("In this subcutaneous injection of insulin video...", TABLE)
    assert classes == TABLE["Subcutaneous Injection"] and source == "procedure Subcutaneous Injection"
    classes, source = nurvid_classes("In this wound dressing video...", TABLE)
    assert source == "union" and len(classes) == 7  # 9 actions, 'disinfect skin' three times


def test_nurvid_nap_with_table():
    """Insulin question: list of 'Subcutaneous Injection' (first match) lacks 'inject insulin' -> skipped.
    Blood sampling: exact right. Unknown procedure: union list, GT in it, answer a class -> wrong. 1/2."""
    records = [
        nap("inject insulin", "inject insulin", "NurViD", "In this Subcutaneous Injection of Insulin procedure video"),
        nap("draw blood", "draw blood", "NurViD", "In this Intravenous Blood Sampling procedure video"),
        nap("insert needle", "inject insulin", "NurViD", "In this procedure video"),
    ]
    m = evaluate(records, nurvid_table=TABLE).metrics["nap_acc"]
    assert (m.value, m.counted, m.details["skipped_gt_not_in_classes"]) == (0.5, 2, 1)


def test_nurvid_nap_with_empty_table_uses_gt_labels_and_says_so():
    """An empty table passed in (the built-in one is the leaderboard's 49 procedures): classes = NurViD GT
    labels {draw blood, inject insulin}: both records count, one right -> 1/2, and the report notes it."""
    records = [nap("draw blood", "draw blood", "NurViD"), nap("draw blood", "inject insulin", "NurViD")]
    report = evaluate(records, nurvid_table={})
    assert report.metrics["nap_acc"].value == 0.5
    assert any("NurViD procedure table is empty" in n for n in report.notes)


def sa(answer, scores, level="I", dataset="JIGSAWS"):
    return {"qa_type": "skill_assessment", "answer": answer, "struc_info": [{"skill_level": level, "skill_scores": scores}],
            "data_source": dataset, "gnd": "", "metadata": {"fps": "1.0"}}


def test_sa_aspect_balanced_then_dataset_mean():
    """JIGSAWS: r1 tissue 3=3 hit, time 3!=2 miss; r2 both hit; r3 ';' -> only tissue parsed (hit);
    r4 no k/5 -> skipped entirely. Tissue 3/3 = 1, time 1/2 -> balanced 0.75.
    OtherSA: tissue 1 vs 2 -> 0. sa_acc = (0.75 + 0) / 2 = 0.375 (pooled would be 0.625).
    f098 level accuracy (JIGSAWS): means 3 (I, right), 3 (GT E, wrong), 2.5 (I, right), r4 wrong -> 2/4."""
    t, m = "Respect for tissue", "Time and motion"
    records = [
        sa(f"{t}: 3/5, {m}: 3/5", {t: 3, m: 2}, "I"),
        sa(f"{t}: 4/5, {m}: 2/5", {t: 4, m: 2}, "E"),
        sa(f"{t}: 3/5; {m}: 2/5", {t: 3, m: 2}, "I"),
        sa("An intermediate performance.", {t: 3, m: 2}, "N"),
        sa(f"{t}: 1/5", {t: 2}, "N", dataset="OtherSA"),
    ]
    metric = evaluate(records).metrics["sa_acc"]
    assert metric.value == pytest.approx(0.375)
    assert metric.per_dataset == pytest.approx({"JIGSAWS": 0.75, "OtherSA": 0.0})
    assert (metric.counted, metric.details["skipped_no_score"]) == (4, 1)
    assert metric.details["level_acc_f098"]["JIGSAWS"] == pytest.approx(0.5)


def cvs(answer, scores, dataset="Cholec80_CVS"):
    return {"qa_type": "cvs_assessment", "answer": answer, "struc_info": [{"cvs_scores": scores}],
            "data_source": dataset, "gnd": "", "metadata": {"fps": "1.0"}}


def test_cvs_component_balanced_then_dataset_mean():
    """Cholec80-CVS: c1 (1,0,1) vs '1, 0, 2': two_structures hit, cystic_plate hit, triangle miss.
    c2 (2,2,2) vs ';'-separated: only two_structures parsed (hit). c3 empty answer: nothing parsed.
    c4 (1,1,1) vs 'two structure: 1' (nothing), plate 1 (hit), triangle 0 (miss).
    two_structures 2/2, cystic_plate 2/2, triangle 0/2 -> 2/3. Other: all three right -> 1.
    cvs_acc = (2/3 + 1) / 2 = 5/6. f098 buckets (Cholec80-CVS): c1 fair=fair, c2 fair!=excellent,
    c3 empty -> 0 poor = GT 1 poor (counted right), c4 poor!=fair -> 2/4."""
    records = [
        cvs("Two structures: 1, Cystic plate: 0, Hepatocystic triangle: 2", {"two_structures": 1, "cystic_plate": 0, "hepatocystic_triangle": 1}),
        cvs("Two structures: 2; Cystic plate: 2; Hepatocystic triangle: 2", {"two_structures": 2, "cystic_plate": 2, "hepatocystic_triangle": 2}),
        cvs("", {"two_structures": 0, "cystic_plate": 0, "hepatocystic_triangle": 1}),
        cvs("two structure: 1, cystic plate: 1, hepatocystic triangle: 0", {"two_structures": 1, "cystic_plate": 1, "hepatocystic_triangle": 1}),
        cvs("Two structures: 0, Cystic plate: 1, Hepatocystic triangle: 2", {"two_structures": 0, "cystic_plate": 1, "hepatocystic_triangle": 2}, "OtherCVS"),
    ]
    m = evaluate(records).metrics["cvs_acc"]
    assert m.value == pytest.approx(5 / 6)
    assert m.per_dataset == pytest.approx({"Cholec80-CVS": 2 / 3, "OtherCVS": 1.0})
    assert m.details["bucket_acc_f098"]["Cholec80-CVS"] == pytest.approx(0.5)
