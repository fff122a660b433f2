"""The words of the caption prompts (ours: MedVidBench's are not published): the closed vocabulary of each source,
the synonyms a caption may use, readable names of coded labels, the task rules, the JSON output specs, the question
pools of the caption records, and `PROMPT_VERSION`, which goes into every caption record and changes whenever any of
them (or the structured input of caption_units.py) does.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from medgrpo_ray.curation.clips import rng_for
from medgrpo_ray.curation.templates import CONTEXTS, GENERIC_CONTEXT, PERSONA_KIND, PERSONAS

if TYPE_CHECKING:
    from medgrpo_ray.curation.caption_units import CaptionUnit

PROMPT_VERSION = "2026-12-06.3"
NULL_LABELS = {"", "null", "none", "background", "idle"}

# Ours: the closed vocabulary of each source (instrument and anatomy terms a caption may name only when the clip's
# annotations support them). CholecT50/CholecTrack20/Cholec80-CVS: the CholecT50 instrument and target classes
# (both a superset of the Cholec80 tools). `ambient` terms are always supported for the source (the organ the whole
# procedure is about). A source absent here has only the terms of its own boxes and triplets.
_CHOLEC_VOCAB = {
    "instrument": ("grasper", "bipolar", "hook", "scissors", "clipper", "irrigator", "specimen bag"),
    "anatomy": ("gallbladder", "cystic plate", "cystic duct", "cystic artery", "cystic pedicle", "blood vessel",
                "fluid", "abdominal wall", "liver", "adhesion", "omentum", "peritoneum", "gut"),
    "ambient": ("gallbladder", "liver"),
}
SOURCE_VOCABULARY: dict[str, dict[str, tuple[str, ...]]] = {
    "CholecT50": _CHOLEC_VOCAB, "CholecTrack20": _CHOLEC_VOCAB, "Cholec80-CVS": _CHOLEC_VOCAB,
    "JIGSAWS": {"instrument": ("needle driver", "grasper", "scissors"),
                "anatomy": ("needle", "suture", "tissue", "bench-top model"),
                "ambient": ("needle", "suture", "tissue", "bench-top model")},
}

# Ours: other spellings a caption may use for a term (matched case-insensitively, whole words, plural allowed).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "grasper": ("grasping forceps", "atraumatic grasper"),
    "bipolar": ("bipolar forceps", "bipolar grasper", "bipolar coagulator"),
    "hook": ("l-hook", "hook electrode", "electrocautery hook", "monopolar hook", "diathermy hook"),
    "scissors": ("scissor", "laparoscopic scissors"),
    "clipper": ("clip applier", "clip applicator", "clip-applier"),
    "irrigator": ("suction-irrigator", "suction irrigator", "irrigation cannula", "suction cannula"),
    "specimen bag": ("retrieval bag", "endobag", "specimen pouch"),
    "gallbladder": ("gall bladder", "gall-bladder"),
    "needle driver": ("needle holder",),
    "retract": ("pull", "lift"), "dissect": ("separate",), "coagulate": ("cauterize", "cauterise", "seal"),
    "aspirate": ("suction",), "grasp": ("hold", "grip"), "clip": ("clamp",), "cut": ("divide", "transect"),
    "pack": ("bag", "place into the bag"),
}

# Ours: readable names for coded labels (JIGSAWS gestures per the JIGSAWS paper's list).
LABEL_NAMES: dict[str, str] = {
    "G1": "reaching for needle with right hand", "G2": "positioning needle", "G3": "pushing needle through tissue",
    "G4": "transferring needle from left to right", "G5": "moving to center with needle in grip",
    "G6": "pulling suture with left hand", "G7": "pulling suture with right hand", "G8": "orienting needle",
    "G9": "using right hand to help tighten suture", "G10": "loosening more suture",
    "G11": "dropping suture and moving to end points", "G12": "reaching for needle with left hand",
    "G13": "making C loop around right hand", "G14": "reaching for suture with right hand",
    "G15": "pulling suture with both hands",
}
OPERATOR_NAMES = {"MSLH": "main surgeon's left hand", "MSRH": "main surgeon's right hand",
                  "ASRH": "assistant's right hand"}

TASK_RULES = (
    "Describe what happens: the actions, the dynamics and how the instruments and tissue move.",
    "Name instruments and anatomy only with the words of the allowed vocabulary, and only those the annotations "
    "support; name every required fact.",
    "Do not mention boxes, colours, overlays, labels, annotations, frame numbers, times or timestamps.",
    "Write plain clinical English in the present tense; no lists, no markdown.",
)
OUTPUT_SPECS = {
    "dense_captioning": 'Answer with JSON only: {"segments": [{"id": <segment id>, "caption": "<10-60 words>"}]}, '
                        "one entry per segment id above, in the same order.",
    "video_summary": 'Answer with JSON only: {"caption": "<one paragraph of 30-200 words>"}.',
    "region_caption": 'Answer with JSON only: {"caption": "<10-60 words about the target object>"}.',
}

# Question pools for the caption records (persona x context as in templates.py; these instructions are ours).
CAPTION_INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "dense_captioning": (
        "Possible actions in this {procedure} video: {actions}. Create an event list restricted to these actions: "
        "give each event as 'start-end seconds: action: description'.",
        "Densely caption this {procedure} video with the actions {actions}: one line per event, "
        "'start-end seconds: action: description'."),
    "video_summary": (
        "Summarize the video content in a short paragraph, focusing on the main {procedure} activities.",
        "Give a concise summary of what happens in this {procedure} video."),
    "region_caption": (
        "Describe the activity or state of the object inside the bounding box {box} at {t0} seconds, over the "
        "interval from {t0} to {t1} seconds.",
        "The bounding box {box} marks an object at {t0} seconds. Describe what it does from {t0} to {t1} seconds."),
}



def label_name(label: str) -> str:
    """The readable lower-case form of a label: coded names expanded, CamelCase / snake / kebab split."""
    if label in LABEL_NAMES:
        return LABEL_NAMES[label]
    s = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", label)
    return re.sub(r"[\s_\-]+", " ", s).strip().lower()



def question(unit: "CaptionUnit") -> tuple[str, dict]:
    """(question, pool picks) of a caption unit's records, drawn from (seed, video, task + '/question', k)."""
    k = int(unit.unit.rsplit("/", 1)[-1])
    rng = rng_for(unit.seed, unit.video_id, unit.task + "/question", k)
    personas = PERSONAS[PERSONA_KIND.get(unit.source, "surgical")]
    contexts = CONTEXTS.get(unit.source, GENERIC_CONTEXT)
    pools = (personas, contexts, CAPTION_INSTRUCTIONS[unit.task])
    picks = [int(rng.integers(len(p))) for p in pools]
    slots = {"procedure": unit.procedure or "surgical",
             "actions": ", ".join(dict.fromkeys(sg.name for sg in unit.segments))}
    if unit.region:
        slots.update(box=unit.region["box"], t0=f"{unit.region['t0']:.1f}", t1=f"{unit.region['t1']:.1f}")
    text = " ".join((pools[0][picks[0]], pools[1][picks[1]], pools[2][picks[2]].format(**slots)))
    return text, {"persona": picks[0], "context": picks[1], "instruction": picks[2]}
