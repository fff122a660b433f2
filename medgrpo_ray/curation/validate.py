"""The dual-model caption validation rule (ours: MedGRPO publishes only "dual-model similarity check") and the caption
records assembled from its decision.

Per caption (one per provider, `a` and `b`):
1. **parse**: strict JSON, `{"caption": str}` (VS, RC) or `{"segments": [{"id", "caption"}]}` with exactly the
   unit's segment ids (DVC); anything else fails `format`.
2. **format**: words per caption (per segment for DVC) within `min_words..max_words` of the task; no forbidden
   words (bounding box, box, overlay, colour words, frame numbers, label/annotation talk), no timestamps
   ("12 s", "0:45", "t=", "3-5 seconds"), no refusal phrases.
3. **grounding**: g = share of the unit's required facts the caption mentions (case-insensitive, whole words,
   with `caption_units.SYNONYMS`; a label counts when every content word of it appears, by stem), and h = the
   closed-vocabulary terms it names that the clip's annotations do not support (an invented instrument).
   A caption is grounded when it parses, passes format, g >= min_grounding and len(h) <= max_invented.
4. **agreement** of two grounded captions: s = cosine of their embeddings (DVC: the lowest over the segments),
   embedder injected (`encode(texts) -> (N, D)`); optionally j = a judge callable's score; they agree when
   s >= min_agreement or (j is not None and min_judge is set and j >= min_judge).

Decision per unit (`decide`):
- both grounded and agreeing -> keep_both; both grounded but disagreeing -> `disagree_policy`: "review" (default:
  written to the review file, not kept), "drop", or "keep_both";
- exactly one grounded -> keep_one (the other is logged with its reasons);
- none grounded -> regenerate once (attempt 0), naming the missing facts (`Decision.missing`), then drop.
- provider errors (a `ProviderError` string: 429 / 500 / timeout after the client's retries) are inputs: one side
  failed -> the other is judged alone (keep_one if grounded, else regenerate / drop); both failed -> regenerate
  once, then drop. `Decision.reason` is the counter key (manifest: decisions by kind and reason).

Calibrating the thresholds: caption ~100 units per source with both providers, have a person rate every caption
acceptable or not (and every pair "same content" or not). Set min_words/max_words to the 2nd/98th percentile of
the accepted captions' lengths; keep min_grounding = 1 and max_invented = 0 unless accepted captions fail them
(then extend SYNONYMS rather than loosen); set min_agreement to the lowest s among pairs the person marked "same
content" whose captions were both accepted, and check how many "different content" pairs lie above it (the
published 0.82 for two clinically different sentences is why grounding comes first and s second); min_judge
likewise on j. Record the sample and the resulting settings in the run's config.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from medgrpo_ray.curation.caption_text import PROMPT_VERSION, SYNONYMS
from medgrpo_ray.curation.caption_units import CaptionUnit, Fact
from medgrpo_ray.curation.templates import TEMPLATES_VERSION

KINDS = ("keep_both", "keep_one", "regenerate", "drop", "review")
DEFAULT_MIN_WORDS = {"dense_captioning": 10, "video_summary": 30, "region_caption": 10}
DEFAULT_MAX_WORDS = {"dense_captioning": 60, "video_summary": 200, "region_caption": 60}
FORBIDDEN = (r"bounding[\s-]*box(es)?", r"\bbox(es)?\b", r"\boverlay\w*", r"\boverlaid\b", r"\bframes?\b",
             r"\bgreen\b", r"\bred\b", r"\bblue\b", r"\byellow\b", r"\bcolou?r(ed|s)?\b", r"\bannotat\w*",
             r"\blabel(s|ed|led)?\b", r"\btimestamps?\b")
TIMESTAMP = (r"\b\d+(\.\d+)?\s*(s|sec|secs|seconds?)\b", r"\b\d{1,2}:\d{2}\b", r"\bt\s*=\s*\d",
             r"\b\d+(\.\d+)?\s*-\s*\d+(\.\d+)?\b")
REFUSAL = (r"\bI'?m sorry\b", r"\bI am sorry\b", r"\bI cannot\b", r"\bI can'?t\b", r"\bunable to\b",
           r"\bas an AI\b", r"\bI do not have\b", r"\bnot possible to (determine|describe)\b")
STOPWORDS = {"the", "a", "an", "of", "and", "to", "in", "on", "with", "for", "by", "at", "from"}


class ProviderError(str):
    """What a provider returned instead of a caption (the client's last error after its retries: "429 ...",
    "500 ...", "timeout ...")."""


@dataclass(frozen=True)
class ValidationSettings:
    """Thresholds of the rule (defaults ours; calibrate as the module docstring says)."""

    min_words: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_MIN_WORDS))
    max_words: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_MAX_WORDS))
    min_grounding: float = 1.0        # g: share of required facts mentioned
    max_invented: int = 0             # h: unsupported closed-vocabulary terms allowed
    min_agreement: float = 0.75       # tau_s on the embedding cosine
    min_judge: Optional[float] = None  # tau_j on the judge score (None: the judge cannot rescue a low s)
    disagree_policy: str = "review"   # both grounded, not agreeing: "review" | "drop" | "keep_both"
    max_attempts: int = 2             # attempt 0 and one regeneration

    def __post_init__(self) -> None:
        if self.disagree_policy not in ("review", "drop", "keep_both"):
            raise ValueError(f"disagree_policy {self.disagree_policy!r}: expected review, drop or keep_both")


@dataclass
class Check:
    """One caption judged alone."""

    provider: str
    texts: Optional[dict] = None      # segment id (DVC) or 0 -> caption text; None when it did not parse
    error: Optional[str] = None       # provider error
    problems: list[str] = field(default_factory=list)
    g: Optional[float] = None
    missing: list[Fact] = field(default_factory=list)
    invented: list[str] = field(default_factory=list)

    @property
    def grounded(self) -> bool:
        return self.error is None and self.texts is not None and not self.problems


@dataclass
class Decision:
    kind: str
    kept: list[str]
    reasons: list[str]
    scores: dict
    reason: str = ""                  # the counter key
    missing: list[str] = field(default_factory=list)   # facts to name on a regeneration
    texts: dict = field(default_factory=dict)          # provider -> parsed texts (segment id -> caption)


# --- matching --------------------------------------------------------------------------------------------------
def _term_pattern(term: str) -> str:
    words = [re.escape(w) for w in re.split(r"[\s\-_]+", term.lower()) if w]
    return r"\b" + r"[\s\-_]*".join(words) + r"(s|es)?\b"


def _mentions_term(text: str, term: str) -> bool:
    low = text.lower()
    return any(re.search(_term_pattern(t), low) for t in (term, *SYNONYMS.get(term, ())))


def _stem(word: str) -> str:
    return word[:max(4, len(word) - 3)] if len(word) > 4 else word


def _mentions_words(text: str, phrase: str) -> bool:
    """Every content word of `phrase` appears (a word matches a caption word starting with its stem)."""
    tokens = re.findall(r"[a-z0-9]+", text.lower())
    words = [w for w in re.findall(r"[a-z0-9]+", phrase.lower()) if w not in STOPWORDS]
    return bool(words) and all(any(tok.startswith(_stem(w)) for tok in tokens) for w in words)


def mentions(text: str, fact: Fact) -> bool:
    if fact.kind == "verb":
        return any(re.search(r"\b" + re.escape(_stem(v)), text.lower()) for v in (fact.term, *SYNONYMS.get(fact.term, ())))
    if fact.kind == "label":
        return _mentions_words(text, fact.term) or _mentions_term(text, fact.term)
    return _mentions_term(text, fact.term)


def invented_terms(text: str, unit: CaptionUnit) -> list[str]:
    """Closed-vocabulary terms the caption names that the clip's annotations do not support (longest first, so
    "specimen bag" is not also counted as a bare "bag")."""
    low = text.lower()
    out = []
    for term in sorted(unit.vocabulary, key=lambda t: (-len(t), t)):
        if any(re.search(_term_pattern(t), low) for t in (term, *SYNONYMS.get(term, ()))):
            if term not in unit.supported:
                out.append(term)
            for t in (term, *SYNONYMS.get(term, ())):
                low = re.sub(_term_pattern(t), " ", low)
    return out


# --- one caption -----------------------------------------------------------------------------------------------
def parse(unit: CaptionUnit, raw: str) -> tuple[Optional[dict], Optional[str]]:
    """(segment id or 0 -> caption, None) or (None, why it is malformed)."""
    try:
        data = json.loads(raw)
    except (TypeError, ValueError) as err:
        return None, f"not JSON ({err})"
    if unit.task == "dense_captioning":
        segs = data.get("segments") if isinstance(data, dict) else None
        if not isinstance(segs, list) or not all(isinstance(x, dict) for x in segs):
            return None, 'expected {"segments": [{"id", "caption"}]}'
        out = {}
        for x in segs:
            if not isinstance(x.get("caption"), str) or isinstance(x.get("id"), bool):
                return None, f"segment entry {x!r:.80} lacks a string caption"
            try:
                out[int(x.get("id"))] = x["caption"]
            except (TypeError, ValueError):
                return None, f"segment id {x.get('id')!r} is not an integer"
        want = [s.id for s in unit.segments]
        if sorted(out) != want or len(segs) != len(want):
            return None, f"segment ids {sorted(out)} != the unit's {want}"
        return out, None
    if not isinstance(data, dict) or not isinstance(data.get("caption"), str) or set(data) != {"caption"}:
        return None, 'expected {"caption": "..."}'
    return {0: data["caption"]}, None


def check(unit: CaptionUnit, provider: str, raw: str, s: ValidationSettings) -> Check:
    if isinstance(raw, ProviderError):
        return Check(provider, error=str(raw), problems=[f"provider error: {raw}"])
    texts, why = parse(unit, raw)
    if texts is None:
        return Check(provider, problems=[f"format: {why}"])
    c = Check(provider, texts={k: " ".join(v.split()) for k, v in texts.items()})
    lo, hi = s.min_words[unit.task], s.max_words[unit.task]
    for k, text in c.texts.items():
        where = f" (segment {k})" if unit.task == "dense_captioning" else ""
        n = len(text.split())
        if not lo <= n <= hi:
            c.problems.append(f"format: {n} words{where}, expected {lo}-{hi}")
        for kind, pats in (("forbidden word", FORBIDDEN), ("timestamp", TIMESTAMP), ("refusal", REFUSAL)):
            hits = [m.group(0) for p in pats for m in [re.search(p, text, re.I)] if m]
            if hits:
                c.problems.append(f"format: {kind} {hits}{where}")
    for f in unit.required:
        text = c.texts.get(f.segment) if f.segment is not None else " ".join(c.texts.values())
        if not mentions(text or "", f):
            c.missing.append(f)
    c.g = 1.0 - len(c.missing) / len(unit.required) if unit.required else 1.0
    c.invented = sorted({t for text in c.texts.values() for t in invented_terms(text, unit)})
    if c.g < s.min_grounding:
        c.problems.append("grounding: missing " + ", ".join(f.describe() for f in c.missing))
    if len(c.invented) > s.max_invented:
        c.problems.append(f"grounding: unsupported terms {c.invented}")
    return c


def agreement(a: Check, b: Check, embedder) -> float:
    """Cosine of the two captions' embeddings; for DVC the lowest over the segments."""
    keys = sorted(a.texts)
    emb = np.asarray(embedder.encode([a.texts[k] for k in keys] + [b.texts[k] for k in keys]), dtype=float)
    ea, eb = emb[:len(keys)], emb[len(keys):]
    cos = (ea * eb).sum(1) / np.maximum(np.linalg.norm(ea, axis=1) * np.linalg.norm(eb, axis=1), 1e-12)
    return float(cos.min())


# --- the decision ----------------------------------------------------------------------------------------------
def decide(unit: CaptionUnit, caption_a: str, caption_b: str, attempt: int = 0, *, embedder=None,
           judge: Optional[Callable[[CaptionUnit, str, str], Optional[float]]] = None,
           settings: Optional[ValidationSettings] = None, providers: Sequence[str] = ("gpt", "gemini")) -> Decision:
    """The rule's decision for one unit's pair of raw provider outputs (or ProviderError strings) on `attempt`
    (0 = first generation, 1 = the regeneration)."""
    s = settings or ValidationSettings()
    ca, cb = check(unit, providers[0], caption_a, s), check(unit, providers[1], caption_b, s)
    scores: dict = {"g": {c.provider: c.g for c in (ca, cb)},
                    "h": {c.provider: len(c.invented) for c in (ca, cb)}, "s": None, "j": None}
    reasons = [f"{c.provider}: {p}" for c in (ca, cb) for p in c.problems]
    texts = {c.provider: c.texts for c in (ca, cb) if c.grounded}
    can_retry = attempt + 1 < s.max_attempts
    if ca.grounded and cb.grounded:
        if embedder is None:
            raise ValueError("two grounded captions need an embedder for the agreement check")
        sim = agreement(ca, cb, embedder)
        scores["s"] = round(sim, 4)
        j = judge(unit, " ".join(ca.texts.values()), " ".join(cb.texts.values())) if judge else None
        scores["j"] = j
        if sim >= s.min_agreement or (j is not None and s.min_judge is not None and j >= s.min_judge):
            return Decision("keep_both", list(providers), reasons, scores, "agree", texts=texts)
        reasons.append(f"disagree: s={sim:.3f} < {s.min_agreement}" + (f", j={j}" if j is not None else ""))
        kind = {"review": "review", "drop": "drop", "keep_both": "keep_both"}[s.disagree_policy]
        return Decision(kind, list(providers) if kind == "keep_both" else [], reasons, scores,
                        f"disagree_{s.disagree_policy}", texts=texts)
    errors = [c for c in (ca, cb) if c.error is not None]
    for c in (ca, cb):
        if c.grounded:
            reason = "other_provider_error" if errors else "one_grounded"
            return Decision("keep_one", [c.provider], reasons, scores, reason, texts=texts)
    reason = {0: "none_grounded", 1: "one_provider_error_other_ungrounded", 2: "both_provider_error"}[len(errors)]
    missing = sorted({f.describe() for c in (ca, cb) if c.error is None for f in c.missing})
    if not missing and len(errors) < 2:
        missing = sorted({f.describe() for c in (ca, cb) if c.texts is None and c.error is None for f in unit.required})
    if can_retry:
        return Decision("regenerate", [], reasons, scores, reason, missing=missing)
    return Decision("drop", [], reasons + [f"still failing after {attempt + 1} attempts"], scores, reason)


def count_decisions(decisions: Iterable[Decision]) -> dict[str, dict[str, int]]:
    """kind -> reason -> count (the manifest's caption table)."""
    out: dict[str, Counter] = {}
    for d in decisions:
        out.setdefault(d.kind, Counter())[d.reason] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


# --- records ---------------------------------------------------------------------------------------------------
def answer_text(unit: CaptionUnit, texts: Mapping[int, str]) -> str:
    """The record's answer, assembled by code: DVC `a-b seconds: <label lower-case>: <caption>` lines; VS/RC the
    caption."""
    if unit.task == "dense_captioning":
        return "\n".join(f"{sg.start:.1f}-{sg.end:.1f} seconds: {sg.name}: {' '.join(texts[sg.id].split())}"
                         for sg in unit.segments)
    return " ".join(texts[0].split())


def caption_records(unit: CaptionUnit, decision: Decision, models: Mapping[str, str]) -> list[dict]:
    """One record per kept provider: qa_type `<task>_<provider>`, provenance in `curation`."""
    from medgrpo_ray.curation.caption_units import question

    q, picks = question(unit)
    out = []
    for provider in decision.kept:
        texts = decision.texts[provider]
        answer = answer_text(unit, texts)
        if unit.task == "dense_captioning":
            info = [{"start": sg.start, "end": sg.end, "label": sg.label, "caption": texts[sg.id]}
                    for sg in unit.segments]
        elif unit.task == "region_caption":
            info = [{**unit.region, "caption": answer}]
        else:
            info = [{"summary": answer}]
        out.append({
            "conversations": [{"from": "human", "value": "<video>\n" + q}, {"from": "gpt", "value": answer}],
            "video": unit.video, "metadata": dict(unit.metadata), "qa_type": f"{unit.task}_{provider}",
            "data_source": unit.source, "struc_info": info,
            "curation": {**picks, "templates_version": TEMPLATES_VERSION, "prompt_version": PROMPT_VERSION,
                         "seed": unit.seed, "unit": unit.unit, "clip": [unit.clip.start, unit.clip.end],
                         "provider": provider, "models": dict(models), "decision": decision.kind,
                         "decision_reason": decision.reason, "scores": decision.scores}})
    return out


def dvc_problem(record: Mapping) -> Optional[str]:
    """None when the DVC record's answer parses into exactly its struc_info segments and dvc_f1 scores it 1.0
    against itself, else why not."""
    from medgrpo_ray.curation.selfcheck import PERFECT, as_self_prediction
    from medgrpo_ray.evaluation.dvc import record_f1
    from medgrpo_ray.rewards.parsers import CaptionSegments, parse_caption_segments

    answer = record["conversations"][-1]["value"]
    parsed = parse_caption_segments(answer)
    if not isinstance(parsed, CaptionSegments) or parsed.source != "primary":
        return f"dvc: answer does not parse as 'a-b seconds:' lines ({parsed})"
    spans = [(s.start, s.end) for s in parsed.items]
    want = [(float(x["start"]), float(x["end"])) for x in record["struc_info"]]
    if spans != want:
        return f"dvc: parsed spans {spans} != struc_info {want}"
    try:
        f1 = record_f1("self", as_self_prediction(record))
    except Exception as err:  # noqa: BLE001 - a record the loader refuses is rejected with its message
        return f"not a valid record: {err}"
    return None if f1 is not None and f1 >= PERFECT else f"dvc: self F1 {f1}"
