"""Answer parsers, one per answer format, reading model text the way the MedVidBench leaderboard reads it.

Both the training rewards and the leaderboard-exact evaluator use these, so a policy is trained on exactly
what the leaderboard will parse. The quirks are deliberate (docs/evaluation.md lists them): e.g. every
`a-b` in a TAL answer is a segment, dense-caption segments must start on their own line.
"""
from __future__ import annotations

import re

from medgrpo_ray.rewards.types import (
    ActionAnswer,
    Box,
    CaptionSegment,
    CaptionSegments,
    CvsAnswer,
    Segments,
    SkillAnswer,
    TimedBoxes,
    Unparseable,
)

_NUM = r"(\d+(?:\.\d+)?)"

# --- temporal segments (tal) -------------------------------------------------------------------------------
_TAL_RANGE = re.compile(_NUM + r"\s*-\s*" + _NUM)
_TAL_PROSE = re.compile(r"(?:from\s+)?" + _NUM + r"\s*(?:seconds|s)?\s+to\s+" + _NUM + r"\s*(?:seconds|s)?", re.I)
_TAL_HMS = re.compile(r"(\d{1,2}):(\d{2}):(\d{2})\s+to\s+(\d{1,2}):(\d{2}):(\d{2})", re.I)


def parse_segments(answer: str) -> Segments | Unparseable:
    """Every `a-b` (spaces allowed around '-') is a segment; only if there is none, the prose fallback
    `[from] X[s|seconds] to Y[s|seconds]` and `HH:MM:SS to HH:MM:SS` both apply (prose matches first).
    No reordering: a reversed segment stays reversed."""
    text = answer or ""
    items = [(float(a), float(b)) for a, b in _TAL_RANGE.findall(text)]
    if items:
        return Segments(tuple(items), "range")
    items = [(float(a), float(b)) for a, b in _TAL_PROSE.findall(text)]
    for h1, m1, s1, h2, m2, s2 in _TAL_HMS.findall(text):
        items.append((int(h1) * 3600.0 + int(m1) * 60 + int(s1), int(h2) * 3600.0 + int(m2) * 60 + int(s2)))
    if items:
        return Segments(tuple(items), "prose")
    return Unparseable("no time segment: expected 'a-b seconds' (or 'from X to Y seconds', 'HH:MM:SS to HH:MM:SS')")


# --- timestamped boxes (stg) -------------------------------------------------------------------------------
_STG_ENTRY = re.compile(_NUM + r"\s+seconds:\s*\[([^\]]+)\]")
_STG_FALLBACK = re.compile(r"\[\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]\]")


def _four_floats(body: str) -> Box | None:
    parts = body.split(",")
    if len(parts) != 4:
        return None
    try:
        x1, y1, x2, y2 = (float(p) for p in parts)
    except ValueError:
        return None
    return x1, y1, x2, y2


def parse_timed_boxes(answer: str) -> TimedBoxes | Unparseable:
    """All `t seconds: [x1, y1, x2, y2]` entries, keyed str(float(t)). An entry that is not exactly four
    numbers takes the last valid box (recorded in `carried`), or is dropped if there was none. Without any
    such entry: `[[a, b, c, d]]` integer boxes in order (`fallback`), to be assigned to GT timestamps."""
    text = answer or ""
    entries: list[tuple[str, Box]] = []
    carried: set[str] = set()
    last: Box | None = None
    matches = _STG_ENTRY.findall(text)
    for t, body in matches:
        key = str(float(t))
        box = _four_floats(body)
        if box is None:
            if last is None:
                continue
            box = last
            carried.add(key)
        else:
            carried.discard(key)
            last = box
        entries.append((key, box))
    if entries:
        return TimedBoxes(tuple(entries), frozenset(carried))
    if matches:
        return Unparseable("'t seconds: [...]' entries found but none holds four numbers")
    ordered = tuple(tuple(float(v) for v in m) for m in _STG_FALLBACK.findall(text))
    if ordered:
        return TimedBoxes(fallback=True, ordered=ordered)  # type: ignore[arg-type]
    return Unparseable("no box: expected 't seconds: [x1, y1, x2, y2]' entries")


# --- dense-caption segments --------------------------------------------------------------------------------
_DVC_PRIMARY = re.compile(
    _NUM + r"-" + _NUM + r"\s+seconds?:\s+(.*?)(?=\n\s*\d+(?:\.\d+)?-\d+(?:\.\d+)?\s+seconds?:|\Z)", re.S
)
_UNIT = r"\s*(?:seconds?|secs?|s)?"
_DVC_LINE_RANGE = re.compile(_NUM + _UNIT + r"\s*(?:-|–|to)\s*" + _NUM + _UNIT, re.I)
_DVC_START_END = re.compile(r"start\s*time\W*" + _NUM + r".*?end\s*time\W*" + _NUM + _UNIT, re.I)
_CAPTION_LEAD = " \t*:;,.-–|"


def _zero_shot_line(line: str) -> CaptionSegment | None:
    m = _DVC_START_END.search(line) or _DVC_LINE_RANGE.search(line)
    if not m:
        return None
    caption = line[m.end():].lstrip(_CAPTION_LEAD).rstrip()
    for label in ("description:", "caption:", "event:"):
        if caption.lower().startswith(label):
            caption = caption[len(label):].lstrip(_CAPTION_LEAD)
    return CaptionSegment(float(m.group(1)), float(m.group(2)), caption) if caption else None


def flatten_overlaps(segments: list[CaptionSegment]) -> list[CaptionSegment]:
    """Cut overlapping segments at every boundary; keep covered pieces, each with the caption of the longest
    segment covering it (first on ties). Endpoints are taken in sorted order."""
    spans = [(min(s.start, s.end), max(s.start, s.end), s.caption) for s in segments]
    bounds = sorted({b for lo, hi, _ in spans for b in (lo, hi)})
    pieces = []
    for a, b in zip(bounds, bounds[1:]):
        covering = [(hi - lo, -i, cap) for i, (lo, hi, cap) in enumerate(spans) if lo <= a and b <= hi]
        if covering:
            pieces.append(CaptionSegment(a, b, max(covering)[2]))
    return pieces


def _overlapping(segments: list[CaptionSegment]) -> bool:
    spans = sorted((min(s.start, s.end), max(s.start, s.end)) for s in segments)
    return any(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1))


def parse_caption_segments(answer: str) -> CaptionSegments | Unparseable:
    """`a-b seconds: caption` segments (no spaces around '-'); a caption runs until a newline followed by the
    next such header, so segments on one line merge into the first. Duplicate (start, end) pairs are dropped;
    if any two segments overlap they are flattened. If nothing matches: a per-line zero-shot fallback."""
    text = answer or ""
    found = [CaptionSegment(float(a), float(b), c.strip()) for a, b, c in _DVC_PRIMARY.findall(text)]
    source = "primary"
    if not found:
        found = [seg for seg in map(_zero_shot_line, text.splitlines()) if seg is not None]
        source = "zero_shot"
    if not found:
        return Unparseable("no dense-caption segment: expected lines 'a-b seconds: caption'")
    seen: set[tuple[float, float]] = set()
    unique = []
    for seg in found:
        if (seg.start, seg.end) not in seen:
            seen.add((seg.start, seg.end))
            unique.append(seg)
    if _overlapping(unique):
        return CaptionSegments(tuple(flatten_overlaps(unique)), True, source)
    return CaptionSegments(tuple(unique), False, source)


# --- skill assessment --------------------------------------------------------------------------------------
_SA_NUMBER = re.compile(r"(\d+)/5")
_SA_ASPECT = re.compile(r"^\s*(.+?):\s*(\d+)/5")


def parse_skill(answer: str) -> SkillAnswer | Unparseable:
    """All `k/5` numbers (level = their mean, out-of-range values kept) and, splitting on ',', every piece
    `Name: k/5` (names kept case-sensitive; a repeated name keeps its last value)."""
    text = answer or ""
    numbers = tuple(int(n) for n in _SA_NUMBER.findall(text))
    if not numbers:
        return Unparseable("no 'k/5' score: expected 'Respect for tissue: 3/5, ...'")
    aspects = {}
    for piece in text.split(","):
        m = _SA_ASPECT.match(piece)
        if m:
            aspects[m.group(1).strip()] = int(m.group(2))
    return SkillAnswer(numbers, aspects)


# --- CVS assessment ----------------------------------------------------------------------------------------
CVS_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("two structures", "two_structures"),
    ("cystic plate", "cystic_plate"),
    ("hepatocystic triangle", "hepatocystic_triangle"),
)
_CVS_PATTERNS = {name: re.compile(re.escape(name) + r":\s*(\d+)") for name, _ in CVS_COMPONENTS}


def parse_cvs(answer: str) -> CvsAnswer | Unparseable:
    """Split on ','; in each lower-cased piece the first component name it contains (in the order two
    structures, cystic plate, hepatocystic triangle) decides which `name: d` regex runs. Values are not
    range-checked; a component written twice keeps its last value."""
    components: dict[str, int] = {}
    for piece in (answer or "").split(","):
        low = piece.lower()
        for name, key in CVS_COMPONENTS:
            if name in low:
                m = _CVS_PATTERNS[name].search(low)
                if m:
                    components[key] = int(m.group(1))
                break
    if not components:
        return Unparseable("no CVS component: expected 'Two structures: d, Cystic plate: d, Hepatocystic triangle: d'")
    return CvsAnswer(components)


# --- next action -------------------------------------------------------------------------------------------
def parse_action(answer: str) -> ActionAnswer | Unparseable:
    """The answer text stripped; empty is unparseable."""
    label = (answer or "").strip()
    return ActionAnswer(label) if label else Unparseable("empty answer: expected one action label")
