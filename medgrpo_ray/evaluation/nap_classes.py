"""Next-action class lists per dataset, as the leaderboard uses them (data only; nap.py picks a list).

Matching is case-sensitive on stripped strings, so the spelling here must equal the GT spelling (including
the source data's "carlot-triangle-dissection").

Partial tables (extend them when the real lists are available; docs/evaluation.md):
- NURVID_PROCEDURES: the leaderboard has one action list for each of NurViD's 49 procedures. The lists are
  not in the public facts this project works from, so the table ships empty. With an empty table the
  evaluator uses the set of NurViD GT labels present (the leaderboard's rule for other datasets) and says so
  in the report; with a partial table, a question naming no listed procedure gets the union of all listed
  actions, as on the leaderboard.
- COPESD_LEGACY: the leaderboard maps legacy CoPESD action names to the current ones on both sides; the
  legacy names are not public either, so the map ships empty.
"""
from __future__ import annotations

AVOS: tuple[str, ...] = ("cutting", "tying", "suturing")

CHOLECT50: tuple[str, ...] = (
    "preparation",
    "carlot-triangle-dissection",
    "clipping-and-cutting",
    "gallbladder-dissection",
    "gallbladder-packaging",
    "cleaning-and-coagulation",
    "gallbladder-extraction",
)

COPESD: tuple[str, ...] = (
    "adjust camera",
    "position flap with forceps and knife",
    "dissect flap tissue with knife",
    "position flap with forceps only",
    "retract flap edge with forceps only",
    "retract flap edge with forceps and knife",
    "lift flap with forceps",
    "stabilize flap with forceps",
)

# legacy CoPESD action name -> current name (applied to prediction and GT before matching).
COPESD_LEGACY: dict[str, str] = {}

# NurViD procedure name -> its action list. Order matters: the first procedure (in this order) whose name is a
# case-insensitive substring of the question wins, so list a name before any longer name that contains it
# (e.g. "Subcutaneous Injection" before "Subcutaneous Injection of Insulin").
NURVID_PROCEDURES: dict[str, tuple[str, ...]] = {}

# The first public release (f098) used this fixed list for EgoSurgery (and other datasets); the leaderboard
# uses the sorted set of GT labels present instead. Kept for reference; the evaluator implements the leaderboard.
EGOSURGERY_F098: tuple[str, ...] = (
    "closing",
    "closure",
    "design",
    "dissection",
    "dressing",
    "hemostasis",
    "incision",
    "irrigation",
    "preparation",
)

FIXED: dict[str, tuple[str, ...]] = {"AVOS": AVOS, "CholecT50": CHOLECT50, "CoPESD": COPESD}
