"""Question templates for the template tasks: persona x dataset context x task instruction, each drawn from a
versioned paraphrase pool (data, committed; the published questions have this shape, curation.md 1.4).

The slots (procedure, action list, action, object, times) are filled by code, so questions state the facts exactly;
`TEMPLATES_VERSION` goes into every record (extra.curation.templates_version) and changes whenever a pool does.
The pools are ours: MedVidBench's own are not published.
"""
from __future__ import annotations

import numpy as np

TEMPLATES_VERSION = "2026-12-06.1"

PERSONAS: dict[str, tuple[str, ...]] = {
    "surgical": ("You are an expert in surgical video interpretation.",
                 "You are a surgeon reviewing an operative recording.",
                 "You are an assistant trained to analyze surgical videos."),
    "nursing": ("You are an expert in healthcare workflow understanding.",
                "You are a nursing educator reviewing a procedure recording.",
                "You are an assistant trained to analyze clinical procedure videos."),
}
PERSONA_KIND = {"NurViD": "nursing"}

CONTEXTS: dict[str, tuple[str, ...]] = {
    "CholecT50": ("This recording shows a laparoscopic cholecystectomy.",
                  "The video is from a laparoscopic gallbladder removal (CholecT50)."),
    "CholecTrack20": ("This recording shows a laparoscopic cholecystectomy with several instruments in view.",
                      "The video is from a laparoscopic gallbladder removal (CholecTrack20)."),
    "Cholec80-CVS": ("This recording shows the dissection phase of a laparoscopic cholecystectomy.",
                     "The video is from a laparoscopic cholecystectomy before clipping and cutting."),
    "JIGSAWS": ("This recording shows a robotic bench-top training exercise.",
                "The video is from a da Vinci surgical skills training session (JIGSAWS)."),
    "NurViD": ("This recording shows a nursing procedure.",
               "The video demonstrates a clinical nursing skill."),
    "AVOS": ("The video comes from the AVOS dataset of open surgeries.",),
    "EgoSurgery": ("This egocentric recording shows an open surgical procedure.",),
    "CoPESD": ("This recording shows an endoscopic submucosal dissection procedure.",),
}
GENERIC_CONTEXT = ("This recording shows a medical procedure.",)

# Task instructions; {slots} are filled by curation/tasks.py.
INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "tal": ("In this {procedure} procedure video, possible actions are: {actions}. "
            "Find the segment(s) where {action} happens.",
            "The {procedure} video may show these actions: {actions}. "
            "Give the start and end time in seconds of every segment where {action} happens.",
            "Possible actions in this {procedure} video: {actions}. When does {action} happen? "
            "Answer with the time span(s) in seconds."),
    "stg": ("What are the bounding boxes of the {object} sampled every {stride} seconds from {start} to {end} "
            "seconds? Give each as [x1, y1, x2, y2] in pixels.",
            "Track the {object} from {start} to {end} seconds: give its bounding box [x1, y1, x2, y2] in pixels "
            "every {stride} seconds."),
    "next_action": ("In this {procedure} video, the procedure includes the following step list: {steps}. "
                    "What comes next after the current video?",
                    "The {procedure} procedure consists of these steps: {steps}. Which step follows the one shown "
                    "in this clip? Answer with the step name only."),
    "skill_assessment": ("Assess the surgeon's skill in this {procedure} video. Score the following aspects "
                         "(1,2,3,4,5 scale): {aspects}.",
                         "Rate the performance in this {procedure} trial on each aspect from 1 to 5: {aspects}."),
    "cvs_assessment": ("Using Strasberg's guidelines for the critical view of safety, assign a score (0,1,2) to "
                       "each of: two structures, cystic plate, hepatocystic triangle.",
                       "Assess the critical view of safety in this clip: score two structures, cystic plate and "
                       "hepatocystic triangle, each from 0 to 2."),
}


def render(task: str, dataset: str, rng: np.random.Generator, **slots) -> tuple[str, dict]:
    """(question, which pool entries were used) for `task` on `dataset`, slots filled."""
    if task not in INSTRUCTIONS:
        raise ValueError(f"no question templates for task {task!r}; known: {sorted(INSTRUCTIONS)}")
    personas = PERSONAS[PERSONA_KIND.get(dataset, "surgical")]
    contexts = CONTEXTS.get(dataset, GENERIC_CONTEXT)
    pools = (personas, contexts, INSTRUCTIONS[task])
    picks = [int(rng.integers(len(p))) for p in pools]
    try:
        instruction = pools[2][picks[2]].format(**slots)
    except KeyError as err:
        raise ValueError(f"{task} template {picks[2]} needs the slot {err}; given {sorted(slots)}") from None
    question = " ".join((pools[0][picks[0]], pools[1][picks[1]], instruction))
    return question, {"persona": picks[0], "context": picks[1], "instruction": picks[2],
                      "templates_version": TEMPLATES_VERSION}
