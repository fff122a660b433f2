"""NAP (`next_action`) as the leaderboard computes it (eval_next_action.py): nap_acc.

Per record: prediction = answer.strip(), GT = gnd.strip(), CoPESD legacy names mapped on both sides
(nap_classes.COPESD_LEGACY). Class list by the record's dataset (nap_classes.py): AVOS, CholecT50, CoPESD
fixed; NurViD the list of the first procedure in table order named in the question (case-insensitive), else
the sorted union of all NurViD actions; any other dataset the sorted set of that dataset's non-empty GT
labels. An empty GT or a GT outside its class list -> record skipped. A prediction equal to a class -> that
class; otherwise the class with the highest cosine similarity of sentence embeddings (`embedder`,
all-MiniLM-L6-v2 on the leaderboard). Without an embedder those predictions are counted wrong and the report
says how many there were. nap_acc = correct / counted, pooled over datasets.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from medgrpo_ray.evaluation.bootstrap import Sample, pooled_ratio
from medgrpo_ray.medvidbench.nap_classes import COPESD_LEGACY, FIXED, NURVID_PROCEDURES
from medgrpo_ray.evaluation.types import Embedder, Item, Metric, not_computed
from medgrpo_ray.rewards.fields import record_dataset, text


@dataclass
class _Row:
    rid: str
    dataset: str
    pred: str
    gt: str
    classes: tuple[str, ...]
    correct: bool | None = None  # None while it waits for the embedding fallback


def nurvid_classes(question: str, table: Mapping[str, tuple[str, ...]]) -> tuple[tuple[str, ...], str]:
    """(class list, source): the first procedure in table order named in the question (case-insensitive
    substring), else the union of all actions in the table."""
    q = question.lower()
    for name, actions in table.items():
        if name.lower() in q:
            return tuple(actions), f"procedure {name}"
    return tuple(sorted({a for actions in table.values() for a in actions})), "union"


def nearest_classes(embedder: Embedder, preds: list[str], class_lists: list[tuple[str, ...]]) -> list[str]:
    """For each prediction, the class of its list with the highest cosine similarity (first on ties)."""
    texts = sorted(set(preds) | {c for cl in class_lists for c in cl})
    vectors = np.asarray(embedder.encode(texts), dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise ValueError(f"embedder.encode returned shape {vectors.shape}; expected ({len(texts)}, D)")
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    index = {t: i for i, t in enumerate(texts)}
    out = []
    for pred, classes in zip(preds, class_lists):
        sims = vectors[[index[c] for c in classes]] @ vectors[index[pred]]
        out.append(classes[int(np.argmax(sims))])
    return out


def _rows(items: list[Item], table: Mapping[str, tuple[str, ...]]) -> tuple[list[_Row], dict[str, str]]:
    grouped: dict[str, list[tuple[str, Mapping]]] = defaultdict(list)
    for rid, rec in items:
        grouped[record_dataset(rec)].append((rid, rec))
    rows, sources = [], {}
    for dataset, recs in sorted(grouped.items()):
        legacy = COPESD_LEGACY if dataset == "CoPESD" else {}
        pairs = [(text(r.get("answer")).strip(), text(r.get("gnd")).strip()) for _, r in recs]
        pairs = [(legacy.get(p, p), legacy.get(g, g)) for p, g in pairs]
        gt_set = tuple(sorted({g for _, g in pairs if g}))  # LB: empty GT labels are not classes
        for (rid, rec), (pred, gt) in zip(recs, pairs):
            if dataset in FIXED:
                classes, sources[dataset] = FIXED[dataset], "fixed list"
            elif dataset == "NurViD" and table:
                classes, _ = nurvid_classes(text(rec.get("question")), table)
                sources[dataset] = "per-procedure table (union of all actions when no listed procedure is named)"
            else:
                classes = gt_set
                sources[dataset] = "GT labels present" + (" (NurViD table empty)" if dataset == "NurViD" else "")
            rows.append(_Row(rid, dataset, pred, gt, classes))
    return rows, sources


def evaluate_nap(items: list[Item], embedder: Embedder | None = None, nurvid_table: Mapping[str, tuple[str, ...]] | None = None) -> Metric:
    if not items:
        return not_computed("nap_acc", "no next_action records")
    rows, sources = _rows(items, NURVID_PROCEDURES if nurvid_table is None else nurvid_table)
    counted = [r for r in rows if r.gt and r.gt in r.classes]  # LB skips an empty GT on every path
    pending = []
    for r in counted:
        if r.pred in r.classes:
            r.correct = r.pred == r.gt
        else:
            pending.append(r)
    note = ""
    if pending and embedder is not None:
        for r, cls in zip(pending, nearest_classes(embedder, [r.pred for r in pending], [r.classes for r in pending])):
            r.correct = cls == r.gt
    elif pending:
        for r in pending:
            r.correct = False
        note = (
            f"no embedder configured: {len(pending)} predictions that are not an exact class were counted wrong "
            "(the leaderboard maps them to the nearest class by all-MiniLM-L6-v2 embeddings)"
        )
    if not counted:
        return not_computed("nap_acc", f"none of {len(rows)} next_action records has its GT in its class list", len(rows))
    per: dict[str, list[bool]] = defaultdict(list)
    for r in counted:
        per[r.dataset].append(bool(r.correct))
    details = {
        "skipped_gt_not_in_classes": len(rows) - len(counted),
        "needed_embedding": len(pending),
        "embedder": embedder is not None,
        "class_source": sources,
    }
    value = sum(r.correct for r in counted) / len(counted)
    per_dataset = {d: sum(v) / len(v) for d, v in sorted(per.items())}
    # Rows: the counted records (whether a record counts depends on its GT only), [1, correct]; class lists
    # built from the GT labels present are kept as on the full set.
    sample = Sample(tuple(r.rid for r in counted), tuple(r.dataset for r in counted),
                    np.array([[1.0, float(bool(r.correct))] for r in counted]), pooled_ratio)
    return Metric("nap_acc", value, per_dataset, len(counted), len(rows), note, details, sample)
