"""The project's synthetic scenes (data/synthetic_scene.py) written as local copies of source datasets in their
native formats, so the curation stage (converters -> clips -> template tasks -> self-score gate) runs end to end
offline, with every label known exactly from the scene that drew it.

Four trees under one output root, each what its converter in curation/sources/ reads (the layouts and units are the
ones documented there and in docs/curation.md section 2; ids, names and file placements below marked "ours" are
this exporter's choices):

- `CholecTrack20/Training/VIDnn/VIDnn.json` + `VIDnn.mp4` beside it (STG, TAG; frames 256x192, so convert with
  `frame_size=(256, 192)`, ExportedSource.load_kwargs): `info` with the published
  "bbox format" string, a `categories` table (ids in the converter's native order: TOOLS, PHASES, OPERATORS, as
  COCO-style lists), `annotations` keyed by **25 fps native frame numbers** sampled at 1 fps (key = 25 x second),
  one instance per key: `instrument` id, `phase` id, `operator` id, `tool_bbox` **normalized tlwh**,
  `intraoperative_track` / `intracorporeal_track` / `visibility_track` (one track per scene phase segment: each
  segment's instrument head is its own tracked object, ours), visibility flags. Scene phase i is native phase i
  (both follow Cholec80's phase order); scene instrument names are the native tool names.
- `NurViD/annotations/NurViD_annotations.json` + `procedures.csv` + `actions.csv` + `videos/<id>.mp4` (TAG, NAP):
  one entry per video with `operationID`, `annotations` [{actionID, segment [s, e]}] written in a shuffled order
  (the native file is unsorted), integer `duration` and `fps`, `resolution` "WxH", `subset`, `url`. The names
  CSVs hold every procedure of nap_classes.NURVID_PROCEDURES (operationID = table position from 1, ours) and the
  union of their actions (global actionIDs in first-appearance order, ours), so the synthetic procedure and its
  actions carry the leaderboard's exact strings and NAP records self-score perfectly.
- `JIGSAWS/Suturing/` (SA, TAG on gestures): `meta_file_Suturing.txt` (`trial level GRS s1..s6`, the scene's six
  aspect scores, GRS their sum, level N/I/E from the GRS: < 15 N, < 23 I, else E, ours), `transcriptions/<trial>.txt`
  (`start end Gxx`, 30 Hz frames, end frame inclusive; scene labels 0..3 -> G1, G2, G3, G6) and
  `video/<trial>_capture1.avi` (Motion JPEG in AVI, the native container). Trials are named Suturing_<B..I><nnn>.
  Only the Suturing folder is written (the scenes are suturing), so the converter counts Knot_Tying and
  Needle_Passing as absent task folders (`jigsaws_task_folder_missing`, 2).
- `Cholec80-CVS/surgeons_annotations.csv` (the workbook's CSV export: `video`, initial/final minute/second, the
  three criteria, `Total`, `critical_view`) + `videos/videoNN.mp4` (Cholec80's own layout) (CVS): two intervals
  per video, the scene's two CVS states [0, d/2] and [d/2, d].

Videos are the scenes' own renderings at data.synthetic_scene.STORED_FPS (4 fps); the annotation units stay the
native ones (25 fps keys, 30 Hz transcriptions, min:s), which is exactly what the converters must undo: the records
address clips by seconds, so a decode is the same whatever the file's frame rate. Tier 1: pure except for writing
the files (JSON through io.atomic; videos through synthetic_scene.write_mp4 or the AVI writer below).
"""
from __future__ import annotations

import csv
import io
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from medgrpo_ray.curation.sources import cholectrack20 as ct20
from medgrpo_ray.data.synthetic_scene import SOURCES, STORED_FPS, Scene, make_scene, render_frames, write_mp4
from medgrpo_ray.io.atomic import atomic_path, atomic_write_json, atomic_write_text
from medgrpo_ray.medvidbench.nap_classes import NURVID_PROCEDURES

FORMATS = ("CholecTrack20", "NurViD", "JIGSAWS", "Cholec80-CVS")
SPEC_OF = {"CholecTrack20": "CholecTrack20", "NurViD": "NurViD", "JIGSAWS": "JIGSAWS", "Cholec80-CVS": "Cholec80_CVS"}
TRACK20_FPS = 25  # native frame numbers of the annotation keys
JIGSAWS_HZ = 30
JIGSAWS_GESTURES = ("G1", "G2", "G3", "G6")  # reaching for / positioning / pushing the needle, pulling the suture
BBOX_FORMAT = "tlwh = [top_left_x, top_left_y, box_width, box_height]"


@dataclass
class ExportedSource:
    """One exported tree: its root and the keyword arguments to give the converter's `load` (CholecTrack20's
    frame size: the scenes are not the release's 854x480, and the native JSON does not say), and the scenes by
    native video id (the truth to check against)."""

    name: str
    root: Path
    scenes: dict[str, Scene] = field(default_factory=dict)
    load_kwargs: dict = field(default_factory=dict)


def make_scenes(fmt: str, seed: int, count: int) -> dict[str, Scene]:
    """`count` scenes of the synthetic spec behind native format `fmt`, keyed by the native video id; the same
    (fmt, seed, count) gives the same scenes."""
    spec = SOURCES[SPEC_OF[fmt]]
    rng = np.random.default_rng([seed, zlib.crc32(fmt.encode())])
    ids = [video_id(fmt, i, rng) for i in range(count)]
    return {vid: make_scene(spec, vid, rng) for vid in ids}


def video_id(fmt: str, i: int, rng: np.random.Generator) -> str:
    """The i-th video id in the source's own convention (VID01, video01, Suturing_B001, an 11-character id)."""
    if fmt == "CholecTrack20":
        return f"VID{i + 1:02d}"
    if fmt == "Cholec80-CVS":
        return f"video{i + 1:02d}"
    if fmt == "JIGSAWS":
        return f"Suturing_{chr(ord('B') + i % 8)}{i // 8 + 1:03d}"
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"  # YouTube id characters
    return "".join(alphabet[j] for j in rng.integers(0, len(alphabet), 11))


def tlwh(box: tuple[int, int, int, int], size: tuple[int, int]) -> list[float]:
    """Pixel x1, y1, x2, y2 -> normalized [x, y, w, h] (fractions of the frame width / height)."""
    x1, y1, x2, y2 = box
    W, H = size
    return [round(x1 / W, 8), round(y1 / H, 8), round((x2 - x1) / W, 8), round((y2 - y1) / H, 8)]


# --- CholecTrack20 ---------------------------------------------------------------------------------------------

def cholectrack20_json(scene: Scene) -> dict:
    """The per-video JSON of one scene (see the module docstring)."""
    spec = scene.spec
    cats = {"instrument": [{"id": i, "name": n} for i, n in enumerate(ct20.TOOLS)],
            "phase": [{"id": i, "name": n} for i, n in enumerate(ct20.PHASES)],
            "operator": [{"id": i, "name": n} for i, n in enumerate(ct20.OPERATORS)]}
    annotations: dict[str, list[dict]] = {}
    for t in range(scene.duration):
        k = next(j for j, s in enumerate(scene.segments) if s.track.visible(t))
        seg = scene.segments[k]
        tool = ct20.TOOLS.index(spec.instruments[seg.label])
        annotations[str(t * TRACK20_FPS)] = [{
            "instrument": tool, "phase": seg.label, "operator": 1 + k % 3,
            "tool_bbox": tlwh(seg.track.box(float(t)), scene.size),
            "intraoperative_track": k + 1, "intracorporeal_track": k + 1, "visibility_track": k + 1,
            "visibility": 1, "visible": 1, "occluded": 0, "crowded": 0, "bleeding": 0, "smoke": 0, "blurred": 0,
            "undercoverage": 0, "reflection": 0, "stainedlens": 0, "verb": -1, "target": -1, "triplet": -1,
            "score": 1.0, "iscrowd": 0}]
    return {"info": {"description": "synthetic CholecTrack20-format export (medgrpo_ray)", "video": scene.video_id,
                     "fps": TRACK20_FPS, "label fps": 1, "bbox format": BBOX_FORMAT},
            "categories": cats, "annotations": annotations}


def export_cholectrack20(root: Path, scenes: dict[str, Scene]) -> None:
    for vid, scene in scenes.items():
        folder = root / "Training" / vid
        atomic_write_json(folder / f"{vid}.json", cholectrack20_json(scene))
        write_mp4(scene, folder / f"{vid}.mp4")


# --- NurViD ------------------------------------------------------------------------------------------------------

def nurvid_tables() -> tuple[dict[str, int], dict[str, int]]:
    """(procedure name -> operationID, action name -> actionID): table positions from 1 (ours)."""
    procedures = {name: i + 1 for i, name in enumerate(NURVID_PROCEDURES)}
    actions: dict[str, int] = {}
    for steps in NURVID_PROCEDURES.values():
        for a in steps:
            actions.setdefault(a, len(actions) + 1)
    return procedures, actions


def _names_csv(table: dict[str, int]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "name"])
    for name, i in sorted(table.items(), key=lambda x: x[1]):
        w.writerow([i, name])
    return buf.getvalue()


def nurvid_entry(scene: Scene, subset: str, rng: np.random.Generator) -> dict:
    procedures, actions = nurvid_tables()
    spec = scene.spec
    anns = [{"actionID": actions[spec.labels[s.label]], "segment": [float(s.start), float(s.end)]}
            for s in scene.segments]
    order = rng.permutation(len(anns))  # the native file's segments are not sorted
    W, H = scene.size
    return {"operationID": procedures[spec.procedure], "annotations": [anns[i] for i in order],
            "duration": int(scene.duration), "resolution": f"{W}x{H}", "fps": STORED_FPS, "subset": subset,
            "url": f"https://www.youtube.com/watch?v={scene.video_id}"}


def export_nurvid(root: Path, scenes: dict[str, Scene], seed: int) -> None:
    procedures, actions = nurvid_tables()
    rng = np.random.default_rng([seed, zlib.crc32(b"NurViD order")])
    data = {vid: nurvid_entry(scene, "training", rng) for vid, scene in scenes.items()}
    atomic_write_json(root / "annotations" / "NurViD_annotations.json", data)
    atomic_write_text(root / "annotations" / "procedures.csv", _names_csv(procedures))
    atomic_write_text(root / "annotations" / "actions.csv", _names_csv(actions))
    for vid, scene in scenes.items():
        write_mp4(scene, root / "videos" / f"{vid}.mp4")


# --- JIGSAWS -----------------------------------------------------------------------------------------------------

def skill_level(grs: int) -> str:
    """N / I / E from the GRS (6..30): < 15 N, < 23 I, else E (ours; JIGSAWS' level is self-proclaimed)."""
    return "N" if grs < 15 else "I" if grs < 23 else "E"


def jigsaws_meta_line(scene: Scene) -> str:
    grs = sum(scene.skill)
    return f"{scene.video_id}\t{skill_level(grs)}\t{grs}\t" + "\t".join(str(s) for s in scene.skill)


def jigsaws_transcription(scene: Scene) -> str:
    """`start end Gxx` per phase segment: 30 Hz frames, the end frame included."""
    return "".join(f"{int(round(s.start * JIGSAWS_HZ))} {int(round(s.end * JIGSAWS_HZ)) - 1} "
                   f"{JIGSAWS_GESTURES[s.label]}\n" for s in scene.segments)


def write_avi(scene: Scene, path: Path) -> None:
    """The whole scene at STORED_FPS as Motion JPEG in an AVI container (JIGSAWS ships .avi files)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    W, H = scene.size
    with atomic_path(path, suffix=".avi") as tmp, av.open(str(tmp), "w") as container:
        stream = container.add_stream("mjpeg", rate=STORED_FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuvj420p"
        times = [i / STORED_FPS for i in range(scene.duration * STORED_FPS)]
        for i, frame in enumerate(render_frames(scene, times)):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, STORED_FPS)
            container.mux(stream.encode(vf))
        container.mux(stream.encode())


def export_jigsaws(root: Path, scenes: dict[str, Scene]) -> None:
    task = root / "Suturing"
    atomic_write_text(task / "meta_file_Suturing.txt", "".join(jigsaws_meta_line(s) + "\n" for s in scenes.values()))
    for vid, scene in scenes.items():
        atomic_write_text(task / "transcriptions" / f"{vid}.txt", jigsaws_transcription(scene))
        write_avi(scene, task / "video" / f"{vid}_capture1.avi")


# --- Cholec80-CVS ------------------------------------------------------------------------------------------------

CVS_HEADER = ("video", "initial_minute", "initial_second", "final_minute", "final_second", "two_structures",
              "cystic_plate", "hepatocystic_triangle", "Total", "critical_view")


def cvs_rows(scene: Scene, number: int) -> list[list]:
    """The scene's two CVS states as workbook rows: [0, d/2] and [d/2, d] in minutes:seconds."""
    half = scene.duration // 2  # durations are even
    rows = []
    for a, b in ((0, half), (half, scene.duration)):
        scores = scene.cvs_at(a)
        rows.append([number, a // 60, a % 60, b // 60, b % 60, *scores, sum(scores), int(sum(scores) >= 5)])
    return rows


def export_cholec80_cvs(root: Path, scenes: dict[str, Scene]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CVS_HEADER)
    for vid, scene in scenes.items():
        w.writerows(cvs_rows(scene, int(vid[len("video"):])))
        write_mp4(scene, root / "videos" / f"{vid}.mp4")
    atomic_write_text(root / "surgeons_annotations.csv", buf.getvalue())


# --- all ---------------------------------------------------------------------------------------------------------

def export(out: Path | str, seed: int = 0, count: int = 2, formats: tuple[str, ...] = FORMATS,
           ) -> dict[str, ExportedSource]:
    """Write `count` synthetic videos per native format under `out/<format>/`; returns format -> ExportedSource.
    Convert one with `converters()[fmt](e.root, report, **e.load_kwargs)`."""
    out = Path(out)
    unknown = [f for f in formats if f not in SPEC_OF]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; known: {list(FORMATS)}")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    result = {}
    for fmt in formats:
        scenes = make_scenes(fmt, seed, count)
        root = out / fmt
        if fmt == "CholecTrack20":
            export_cholectrack20(root, scenes)
        elif fmt == "NurViD":
            export_nurvid(root, scenes, seed)
        elif fmt == "JIGSAWS":
            export_jigsaws(root, scenes)
        else:
            export_cholec80_cvs(root, scenes)
        kwargs = {"frame_size": SOURCES[SPEC_OF[fmt]].size} if fmt == "CholecTrack20" else {}
        result[fmt] = ExportedSource(fmt, root, scenes, kwargs)
    return result
