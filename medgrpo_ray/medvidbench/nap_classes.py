"""Next-action class lists per dataset, exactly as the MedVidBench leaderboard uses them (data only; nap.py
picks a list and scores). Over 400 lines because it is a table: one label per line, kept whole so it can be
checked against its source line by line.

Source: the public repository ChaoSFu/MedVid_understanding, file
MedVidBench-Leaderboard/evaluation/eval_next_action.py at commit 6a68818e69ef502a0c9d651449511c5801d1e500.
Only the label strings and the name mapping are taken from it. Matching is exact on stripped strings (case
and inner whitespace included), so every string is kept as the leaderboard spells it, typos included
("carlot-triangle-dissection", "Spread the proximal bedshee", "Withdraw contaminated bed shee", "Expose the
connection sit", the procedure names "...Resuscitation WIth Manual..." and "...Infusion and Maintaince").

- AVOS (3 actions), CHOLECT50 (7 phases), COPESD (8 actions): fixed class lists.
- COPESD_LEGACY (8 entries): old CoPESD action name -> current name, applied to prediction and GT.
- NURVID_PROCEDURES (49 procedures): one action list per procedure. The first procedure, in this table's
  order, whose name is a case-insensitive substring of the question wins; a question naming none gets the
  sorted union of all actions. "Subcutaneous Injection" precedes "Subcutaneous Injection Insulin", so the
  latter's list is never picked (any question naming it also names the former); kept as on the leaderboard.
"""
from __future__ import annotations

AVOS: tuple[str, ...] = (
    "cutting",
    "tying",
    "suturing",
)

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

# legacy CoPESD action name -> current name (applied to prediction and GT after strip(), before matching).
# "lift flap with forceps" maps to itself on the leaderboard too.
COPESD_LEGACY: dict[str, str] = {
    "manipulate flap with forceps and knife": "position flap with forceps and knife",
    "dissect flap with knife": "dissect flap tissue with knife",
    "manipulate flap with forceps": "position flap with forceps only",
    "retract flap with forceps": "retract flap edge with forceps only",
    "retract flap with forceps and knife": "retract flap edge with forceps and knife",
    "lift flap with forceps": "lift flap with forceps",
    "hold flap with forceps": "stabilize flap with forceps",
    "retracting mucosa flap with forceps and knife": "retract flap edge with forceps and knife",
}

# NurViD procedure name -> its action list, in the leaderboard's order (the order decides which procedure a
# question naming several gets).
NURVID_PROCEDURES: dict[str, tuple[str, ...]] = {
    "Administering Oral Medications": (
        "Assist patient taking medicine",
        "Check",
        "Document",
        "Handwashing",
        "Organize the bed unit",
        "Position the patient",
        "Prepare medications",
    ),
    "Aseptic Technique": (
        "Check",
        "Take treatment towels",
    ),
    "Bed Rubbing": (
        "Change upper clothing",
        "Cleanse back",
        "Cleanse chest and abdomen",
        "Cleanse perineum",
        "Handwashing",
        "Rub lower limbs",
        "Rub upper limbs",
        "Soak feet",
        "Wash face",
    ),
    "Bed Shampoo": (
        "Apply shampoo",
        "Comb hair",
        "Dry hair",
        "Moisten hair",
        "Place an underpad",
        "Rinse shampoo",
    ),
    "Blood Glucose Monitoring": (
        "Disinfect skin",
        "Document",
        "Handwashing",
        "Measure blood glucose level",
        "Prepare glucometer",
    ),
    "Cardiopulmonary Resuscitation WIth Manual Resuscitation Bag": (
        "Administer oxygen",
        "Assist with ventilation using a simple respirator",
        "Defibrillate",
        "Identify cardiac arrest",
        "Open airway",
        "Perform chest compressions",
    ),
    "Change Sheets of an Occupied Bed": (
        "Change pillowcase",
        "Handwashing",
        "Prepare operating space",
        "Remove proximal bedsheet",
        "Replace clean bedsheet",
        "Spread the opposite side bed sheet",
        "Spread the proximal bedshee",
        "Withdraw contaminated bed shee",
        "Withdraw the opposite side bed sheet",
    ),
    "Change Wound Dressings": (
        "Cleanse skin",
        "Document",
        "Fill in dressing",
        "Handwashing",
    ),
    "Change a One-Piece Pouching System": (
        "Apply leak prevention ointment",
        "Apply skin protection film",
        "Cleanse skin",
        "Handwashing",
        "Remove ostomy bag",
        "Secure ostomy bag",
        "Trim ostomy bag baseplate",
    ),
    "Change a Two-Piece Pouching System": (
        "Apply leak prevention ointment",
        "Apply skin protection film",
        "Cleanse skin",
        "Handwashing",
        "Remove ostomy bag",
        "Remove the base plate",
        "Secure ostomy bag",
        "Secure the base",
        "Spray stoma care powder",
        "Trim ostomy bag baseplate",
    ),
    "Closed Bed Making": (
        "Cover pillow with pillowcase",
        "Prepare operating space",
        "Spread the large sheet",
    ),
    "Closed Intravenous infusion": (
        "Adjust drip rate",
        "Check",
        "Connect infusion device",
        "Disinfect skin",
        "Document",
        "Handwashing",
        "Release trapped air",
        "Remove needle",
        "Select a vein",
        "Venipuncture",
    ),
    "Closed System Blood Transfusion": (
        "Check",
        "Handwashing",
        "Release trapped air",
        "Transfuse blood",
    ),
    "Defibrillation": (
        "Defibrillate",
        "Observe defibrillation results",
        "Prepare defibrillation device",
    ),
    "Donning and Doffing Isolation Gowns": (
        "Fasten buckle",
        "Handwashing",
        "Loosen isolation gown",
        "Put on isolation gown",
        "Remove isolation gown",
        "Tie waist knot",
    ),
    "Electrocardiogram": (
        "Connect lead wires",
        "Expose the connection sit",
        "Remove the lead wires",
        "Save electrocardiogram (ECG) results",
    ),
    "Female Retention Catheterization": (
        "Disinfect skin",
        "Establish a sterile zone",
        "Insert urinary catheter",
        "Remove urinary catheter",
    ),
    "High-Volume Colonic Enemas": (
        "Check",
        "Inject medication",
        "Insert rectal tube",
        "Place an underpad",
        "Position the patient",
        "Remove rectal tube",
    ),
    "Infusion by Pump": (
        "Connect infusion device",
        "Flush the sealed tube",
        "Release trapped air",
        "Set parameters",
    ),
    "Intramuscular Injection": (
        "Check",
        "Disinfect skin",
        "Handwashing",
        "Inject medication",
        "Position the patient",
        "Prepare medication solution",
    ),
    "Intravenous Blood Sampling": (
        "Blood collection",
        "Check",
        "Disinfect skin",
        "Document",
        "Handwashing",
        "Mix blood sample",
        "Select a vein",
        "Venipuncture",
    ),
    "Intravenous Injection": (
        "Check",
        "Disinfect skin",
        "Document",
        "Handwashing",
        "Inject medication",
        "Prepare medication solution",
        "Release trapped air",
        "Select a vein",
        "Venipuncture",
    ),
    "Logrolling with Draw Sheet": (
        "Check",
        "Check and secure the tubing",
        "Handwashing",
        "Shift to the right side",
        "Turn patient to left lateral position",
    ),
    "Male Retention Catheterization": (
        "Disinfect skin",
        "Establish a sterile zone",
        "Insert urinary catheter",
        "Position the patient",
        "Remove urinary catheter",
    ),
    "Modified Seldinger Technique with Ultrasound for PICC Placement": (
        "Check and secure the tubing",
        "Disinfect skin",
        "Establish a sterile zone",
        "PICC insertion",
        "Withdraw the introducer sheath",
    ),
    "Multi-Parameter Monitoring": (
        "Connect the monitor",
        "Monitor blood oxygen saturation",
    ),
    "Nasogastric Gavage": (
        "Confirm the position of the gastric tube in the stomach",
        "Handwashing",
        "Insert gastric tube",
        "Measure the length of the gastric tube",
        "Nasogastric feeding",
        "Place an underpad",
        "Position the patient",
        "Remove gastric tube",
        "Secure gastric tube",
    ),
    "Nasogastric Tube": (
        "Check the pressure reducer",
        "Document",
        "Insert gastric tube",
        "Measure the length of the gastric tube",
        "Observe drainage situation",
        "Position the patient",
    ),
    "Oral Care for Unconscious Patients": (
        "Check",
        "Cleanse inner surfaces of teeth",
        "Cleanse lips",
        "Cleanse outer surfaces of teeth",
        "Document",
        "Handwashing",
        "Place an underpad",
        "Position the patient",
        "Prepare cotton balls",
    ),
    "Oral and Nasal Suctioning with Central Negative Pressure Device": (
        "Connect suction catheter",
        "Organize the bed unit",
        "Perform endotracheal suctioning",
        "Perform nasopharyngeal and nasotracheal suction",
        "Perform oral-pharyngeal suction",
    ),
    "Oral and Nasal Suctioning with Electric Suction Device": (
        "Adjust negative pressure",
        "Check",
        "Connect suction catheter",
        "Handwashing",
        "Perform nasopharyngeal and nasotracheal suction",
        "Perform oral-pharyngeal suction",
        "Rinse suction catheter",
    ),
    "Oxygen Nebulization": (
        "Adjust oxygen flow rate",
        "Guide nebulization",
        "Install nebulizer",
        "Withdraw nebulizer",
    ),
    "Oxygen Therapy with Central Oxygen Supply": (
        "Adjust oxygen flow rate",
        "Administer oxygen",
        "Handwashing",
        "Install oxygen inhalation device",
        "Withdraw oxygen inhalation device",
    ),
    "Penicillin Skin Testing": (
        "Check",
        "Disinfect skin",
        "Handwashing",
        "Observe results of skin test",
        "Perform intradermal puncture",
        "Prepare skin test solution",
        "Release trapped air",
    ),
    "Perineal Care": (
        "Clean and scrub the perineum",
        "Draw bed curtains",
        "Place an underpad",
        "Position the patient",
    ),
    "Peripheral Venous Indwelled Needle Infusion and Maintaince": (
        "Connect infusion device",
        "Disinfect skin",
        "Flush the sealed tube",
        "Handwashing",
        "Remove needle",
        "Secure the indwelling needle",
        "Venipuncture",
    ),
    "Retention Enema": (
        "Check",
        "Handwashing",
        "Inject medication",
        "Insert rectal tube",
        "Organize the bed unit",
        "Place an underpad",
        "Position the patient",
        "Remove rectal tube",
    ),
    "Skin Preparation": (
        "Cleanse skin",
        "Handwashing",
        "Position the patient",
    ),
    "Sputum Specimen Collection": (
        "Check",
        "Collect sputum specimen",
        "Handwashing",
        "Wear gloves",
    ),
    "Stool Specimen Collection": (
        "Check",
        "Collect stool specimen",
        "Handwashing",
        "Wear gloves",
    ),
    "Subcutaneous Injection": (
        "Aspirate medication",
        "Disinfect skin",
        "Handwashing",
        "Inject medication",
        "Perform subcutaneous puncture",
        "Release trapped air",
        "Remove needle",
    ),
    "Subcutaneous Injection Insulin": (
        "Disinfect skin",
        "Inject medication",
        "Prepare medication solution",
    ),
    "Surgical Hand Scrub": (
        "Dry hands",
        "Perform seven-step handwashing technique",
        "Perform surgical hand disinfection",
        "Perform surgical hand scrub",
        "Rinse with running water",
    ),
    "Throat Swab Collection": (
        "Collect pharyngeal swab specimen",
        "Document",
    ),
    "Transfer with Stretcher": (
        "Move and transfer",
        "Perform four-person transfer",
    ),
    "Urine Specimen Collection": (
        "Check",
        "Collect urine specimen",
        "Handwashing",
    ),
    "Use of Restraints": (
        "Immobilize the shoulder",
    ),
    "Vital Sign Assessment": (
        "Check the blood pressure meter",
        "Check the thermometer",
        "Document",
        "Handwashing",
        "Measure blood pressure",
        "Measure body temperature",
        "Measure pulse",
        "Measure respiration",
    ),
    "Wheelchair Transfer Technique": (
        "Assist with bed rest",
        "Transport in wheelchair",
    ),
}

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
