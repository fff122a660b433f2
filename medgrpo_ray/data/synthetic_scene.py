"""Procedural "surgical" scenes for the synthetic MedVidBench: what is drawn at each time, and its exact boxes.

A scene is a tissue-like background (smooth noise in a per-source palette, vessels, a slow camera drift, sensor
noise) with a timeline of phases. During a phase exactly one instrument head is visible: its colour and shape
identify the phase label (a fixed per-source code, `appearance`), it moves linearly (plus a small tremor) and
its box [x1, y1, x2, y2] is known exactly (the head fills columns x1..x2-1 and rows y1..y2-1). Grey distractors
(gauze, suction) are never asked about. Cholec80-CVS scenes draw three anatomical structures whose brightness is
their CVS score; JIGSAWS scenes draw six stitch markers along the bottom whose colour is the aspect's 1..5 score.
Every pixel is a pure function of (scene, time), so the same seed gives the same video. Docs: docs/data.md.
"""
from __future__ import annotations

import math
from fractions import Fraction
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from medgrpo_ray.medvidbench.nap_classes import NURVID_PROCEDURES
from medgrpo_ray.io.atomic import atomic_path

RGB = tuple[int, int, int]
STORED_FPS = 4  # every record fps (0.5, 1, 2) samples exact stored frames
INSTRUMENT_COLOURS: tuple[RGB, ...] = ((245, 215, 20), (20, 200, 235), (35, 60, 225), (150, 40, 210), (250, 130, 10))
COLOUR_NAMES = ("yellow", "cyan", "blue", "purple", "orange")
SHAPES = ("rect", "diamond", "ellipse")  # labels 0-4 rectangles, 5-9 diamonds: same colour, distinct shape
DISTRACTOR_COLOURS: tuple[RGB, ...] = ((150, 150, 145), (110, 110, 118), (190, 185, 175))
SHAFT_COLOUR: RGB = (75, 75, 82)
CVS_COLOURS: tuple[RGB, ...] = ((120, 35, 45), (215, 150, 135), (250, 245, 225))  # score 0, 1, 2
SKILL_COLOURS: tuple[RGB, ...] = ((200, 30, 30), (235, 120, 30), (235, 220, 40), (150, 210, 60), (30, 160, 70))


@dataclass(frozen=True)
class SourceSpec:
    """One source dataset's vocabulary, tasks and difficulty."""

    name: str  # data_source as written in records
    procedure: str
    labels: tuple[str, ...]  # phases / actions in their fixed order (the next action is the following one)
    instruments: tuple[str, ...]  # instrument whose head is drawn during each label
    tasks: tuple[str, ...]  # task families built per video, in order (rare tasks first)
    size: tuple[int, int]  # (W, H) of the stored video; W a multiple of 64 (see write_mp4)
    palette: tuple[RGB, RGB]  # tissue colours
    box_frac: float  # instrument head height / frame height
    speed: float  # px/s of instrument motion
    noise: float  # sensor noise sigma (grey levels)
    distractors: int
    durations: tuple[int, ...] = (16, 20, 24)  # seconds, even
    y_span: tuple[float, float] = (0.0, 1.0)  # vertical band (fractions of H) instruments stay in
    drift: float = 3.0  # px amplitude of the camera drift
    phase_lengths: tuple[int, ...] = (4, 6, 8, 10)  # seconds a phase may last (even)

    def __post_init__(self) -> None:
        if self.size[0] % 64 or self.size[1] % 16 or len(self.labels) != len(self.instruments):
            raise ValueError(f"SourceSpec {self.name}: width must be a multiple of 64 and height of 16 "
                             "(reproducible H.264), and every label needs an instrument")


def with_difficulty(spec: SourceSpec, d: float) -> SourceSpec:
    """The source at difficulty `d` in [0, 1] (a knob of the synthetic generator, for experiments that need
    sources of unequal difficulty on the same task): d = 0 draws large, nearly still instrument heads in long
    phases on a clean image (a rough box or span already overlaps well); d = 1 small, fast heads in short phases
    with heavy noise and three distractors. Vocabulary, tasks and frame size stay the source's own."""
    if not 0.0 <= d <= 1.0:
        raise ValueError(f"difficulty of {spec.name} must be in [0, 1], got {d}")
    lengths = (8, 10) if d < 1 / 3 else (4, 6, 8, 10) if d < 2 / 3 else (4, 6)
    band = spec.y_span[1] - spec.y_span[0]  # a head must fit the vertical band instruments stay in
    return replace(spec, box_frac=round(min(0.6 - 0.5 * d, 0.8 * band), 4), speed=round(1.0 + 11.0 * d, 4),
                   noise=round(1.0 + 6.0 * d, 4), distractors=int(round(3 * d)), phase_lengths=lengths)


def appearance(label_index: int) -> tuple[RGB, str]:
    """(colour, shape) of the instrument head that marks label `label_index` of a source."""
    return INSTRUMENT_COLOURS[label_index % 5], SHAPES[(label_index // 5) % 3]


@dataclass(frozen=True)
class Track:
    """A shape moving linearly during [start, end) with a deterministic tremor; boxes are integer pixels."""

    start: float
    end: float
    x0: float
    y0: float
    vx: float
    vy: float
    w: int
    h: int
    colour: RGB
    shape: str
    tremor: float
    frame: tuple[int, int]  # (W, H)

    def box(self, t: float) -> tuple[int, int, int, int]:
        dt = t - self.start
        x = self.x0 + self.vx * dt + self.tremor * math.sin(5.3 * dt + self.start)
        y = self.y0 + self.vy * dt + self.tremor * math.cos(4.1 * dt)
        x1 = min(max(int(round(x)), 0), self.frame[0] - self.w)
        y1 = min(max(int(round(y)), 0), self.frame[1] - self.h)
        return x1, y1, x1 + self.w, y1 + self.h

    def visible(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True)
class Segment:
    """A phase: label index into the source's labels, shown by its instrument's track."""

    label: int
    track: Track

    @property
    def start(self) -> float:
        return self.track.start

    @property
    def end(self) -> float:
        return self.track.end


@dataclass(frozen=True)
class Scene:
    spec: SourceSpec
    video_id: str
    duration: int  # seconds
    segments: tuple[Segment, ...]  # consecutive, covering [0, duration)
    distractors: tuple[Track, ...]
    seed: int  # background and noise
    cvs: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None  # scores before / after duration / 2
    skill: tuple[int, ...] | None = None  # six aspect scores 1..5

    @property
    def size(self) -> tuple[int, int]:
        return self.spec.size

    def segment_at(self, t: float) -> Segment | None:
        return next((s for s in self.segments if s.track.visible(t)), None)

    def cvs_at(self, t: float) -> tuple[int, int, int] | None:
        return None if self.cvs is None else self.cvs[0 if t < self.duration / 2 else 1]


def _track(rng: np.random.Generator, spec: SourceSpec, start: float, end: float, colour: RGB, shape: str,
           speed: float, tremor: float, size_scale: float = 1.0) -> Track:
    """A track whose whole path (with tremor) stays inside the frame and the source's vertical band."""
    W, H = spec.size
    h = max(6, int(round(spec.box_frac * H * size_scale * rng.uniform(0.85, 1.15))))
    w = max(6, int(round(h * rng.uniform(0.8, 1.8))))
    lo_y, hi_y = spec.y_span[0] * H, spec.y_span[1] * H - h
    cx = rng.uniform(w / 2 + 2 + tremor, W - w / 2 - 2 - tremor)
    cy = rng.uniform(lo_y + h / 2 + tremor, hi_y + h / 2 - tremor)
    half = (end - start) / 2
    room_x = min(cx - w / 2, W - w / 2 - cx) - tremor - 1  # how far the centre may travel each way
    room_y = min(cy - h / 2 - lo_y, hi_y + h / 2 - cy) - tremor - 1
    if rng.random() < 0.5:  # mostly horizontal motion, else mostly vertical
        vx, vy = speed * rng.choice([-1, 1]), speed * rng.uniform(-0.3, 0.3)
    else:
        vx, vy = speed * rng.uniform(-0.3, 0.3), speed * rng.choice([-1, 1])
    vx = float(np.clip(vx, -max(room_x, 0) / half, max(room_x, 0) / half))
    vy = float(np.clip(vy, -max(room_y, 0) / half, max(room_y, 0) / half))
    x0, y0 = cx - w / 2 - vx * half, cy - h / 2 - vy * half
    return Track(start, end, x0, y0, vx, vy, w, h, colour, shape, tremor, (W, H))


def make_scene(spec: SourceSpec, video_id: str, rng: np.random.Generator) -> Scene:
    """Draw a scene's timeline: phases 4-10 s long on 2 s boundaries, labels in the source's cyclic order."""
    duration = int(rng.choice(spec.durations))
    skill = tuple(int(v) for v in rng.integers(1, 6, 6)) if spec.name == "JIGSAWS" else None
    cvs = tuple(tuple(int(v) for v in rng.integers(0, 3, 3)) for _ in range(2)) if "CVS" in spec.name else None
    tremor = 0.5 + (5 - sum(skill) / 6) * 0.8 if skill else 0.6
    segments, t, label = [], 0, int(rng.integers(len(spec.labels)))
    while t < duration:
        end = min(duration, t + int(rng.choice(spec.phase_lengths)))
        end = duration if duration - end < 4 else end
        colour, shape = appearance(label)
        speed = spec.speed * rng.uniform(0.7, 1.3)
        segments.append(Segment(label, _track(rng, spec, t, end, colour, shape, speed, tremor)))
        t, label = end, (label + 1) % len(spec.labels)
    distractors = tuple(
        _track(rng, spec, 0, duration, DISTRACTOR_COLOURS[i % 3], SHAPES[int(rng.integers(2))], spec.speed * 0.3,
               0.0, size_scale=rng.uniform(0.8, 1.3))
        for i in range(spec.distractors))
    return Scene(spec, video_id, duration, tuple(segments), distractors, int(rng.integers(2**31)), cvs, skill)


def _smooth(rng: np.random.Generator, shape_hw: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    grid = (rng.random(cells) * 255).astype(np.uint8)
    img = Image.fromarray(grid).resize((shape_hw[1], shape_hw[0]), Image.BICUBIC)
    return np.asarray(img, np.float32) / 255.0


def _background(scene: Scene) -> np.ndarray:
    """The static tissue canvas (larger than the frame by the drift margin), float32 (H', W', 3)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(scene.seed)
    W, H = scene.size
    m = int(math.ceil(scene.spec.drift)) + 1
    hw = (H + 2 * m, W + 2 * m)
    n = 0.7 * _smooth(rng, hw, (5, 7)) + 0.3 * _smooth(rng, hw, (11, 15))
    a, b = (np.array(c, np.float32) for c in scene.spec.palette)
    canvas = Image.fromarray((a + (b - a) * n[..., None]).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(5):  # vessels: short darker polylines wandering from a random point
        x, y = float(rng.uniform(0, hw[1])), float(rng.uniform(0, hw[0]))
        pts = [(x, y)]
        for _ in range(4):
            x, y = x + float(rng.normal(0, 25)), y + float(rng.normal(0, 25))
            pts.append((x, y))
        draw.line(pts, fill=tuple(int(v) for v in a * 0.65), width=int(rng.integers(1, 4)), joint="curve")
    return np.asarray(canvas, np.float32)


def _draw_shape(draw, box: Sequence[int], shape: str, colour: RGB) -> None:
    x1, y1, x2, y2 = box
    if shape == "rect":
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=colour)
    elif shape == "ellipse":
        draw.ellipse([x1, y1, x2 - 1, y2 - 1], fill=colour)
    else:
        cx, cy = (x1 + x2 - 1) / 2, (y1 + y2 - 1) / 2
        draw.polygon([(cx, y1), (x2 - 1, cy), (cx, y2 - 1), (x1, cy)], fill=colour)
        draw.point([(cx, y1), (x2 - 1, cy), (cx, y2 - 1), (x1, cy)], fill=colour)


def _draw_cvs(draw, size: tuple[int, int], scores: tuple[int, int, int]) -> None:
    """Two ducts (two_structures), a plate (cystic_plate), a triangle (hepatocystic_triangle) in the lower half."""
    W, H = size
    c = [CVS_COLOURS[s] for s in scores]
    for dx in (0, 12):
        draw.line([(0.08 * W + dx, 0.95 * H), (0.25 * W + dx, 0.58 * H)], fill=c[0], width=6)
    draw.rectangle([0.40 * W, 0.66 * H, 0.62 * W, 0.80 * H], fill=c[1])
    draw.polygon([(0.72 * W, 0.92 * H), (0.94 * W, 0.92 * H), (0.83 * W, 0.58 * H)], fill=c[2])


def _draw_skill(draw, size: tuple[int, int], scores: Sequence[int]) -> None:
    """Six stitch markers along the bottom edge, one per aspect, coloured by its score (red 1 .. green 5)."""
    W, H = size
    cell = (W - 16) / 6
    for i, s in enumerate(scores):
        x = 8 + i * cell
        draw.rectangle([x + 2, H - 11, x + cell - 3, H - 4], fill=SKILL_COLOURS[s - 1])


def render_frames(scene: Scene, times: Iterable[float]) -> Iterator[np.ndarray]:
    """RGB uint8 frames (H, W, 3) of the scene at `times` (seconds in the video)."""
    from PIL import Image, ImageDraw

    W, H = scene.size
    canvas = _background(scene)
    m = int(math.ceil(scene.spec.drift)) + 1
    for t in times:
        dx = int(round(scene.spec.drift * math.sin(0.35 * t)))
        dy = int(round(scene.spec.drift * math.sin(0.23 * t + 1.0)))
        frame = canvas[m + dy:m + dy + H, m + dx:m + dx + W]
        noise = np.random.default_rng([scene.seed, int(round(t * 1000))]).normal(0, scene.spec.noise, (H, W, 1))
        img = Image.fromarray((frame + noise).clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        if scene.cvs is not None:
            _draw_cvs(draw, scene.size, scene.cvs_at(t))
        for track in scene.distractors:
            _draw_shape(draw, track.box(t), track.shape, track.colour)
        seg = scene.segment_at(t)
        if seg is not None:
            x1, y1, x2, y2 = seg.track.box(t)
            corner_y = H - 1 if scene.spec.y_span[1] >= 1.0 else 0  # shafts avoid the CVS / skill markers
            entry = (W - 1 if (x1 + x2) / 2 < W / 2 else 0, corner_y)
            draw.line([((x1 + x2) / 2, (y1 + y2) / 2), entry], fill=SHAFT_COLOUR, width=4)
            _draw_shape(draw, (x1, y1, x2, y2), seg.track.shape, seg.track.colour)
        if scene.skill is not None:
            _draw_skill(draw, scene.size, scene.skill)
        yield np.asarray(img)


def write_mp4(scene: Scene, path: Path) -> None:
    """Encode the whole scene at STORED_FPS as H.264 yuv420p; the same scene gives the same bytes.

    Reproducible bytes need one thread, explicit timestamps and a width that is a multiple of 64: at width 224
    the first GOP of repeated encodes of identical frames came out differently (libx264 via PyAV 16).
    """
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    W, H = scene.size
    with atomic_path(path, suffix=".mp4") as tmp, av.open(str(tmp), "w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=STORED_FPS,
                                      options={"crf": "28", "preset": "veryfast", "threads": "1", "g": "8"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        times = [i / STORED_FPS for i in range(scene.duration * STORED_FPS)]
        for i, frame in enumerate(render_frames(scene, times)):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, STORED_FPS)  # explicit timestamps: x264's rate control reads them
            container.mux(stream.encode(vf))
        container.mux(stream.encode())


def write_jpegs(scene: Scene, times: Sequence[float], paths: Sequence[Path], quality: int = 85) -> None:
    """Write the frames at `times` as JPEG files (the published frame-list form)."""
    from PIL import Image

    for frame, path in zip(render_frames(scene, times), paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(path, quality=quality)


_CHOLEC80_PHASES = ("preparation", "calot triangle dissection", "clipping cutting", "gallbladder dissection",
                    "gallbladder packaging", "cleaning coagulation", "gallbladder retraction")
_LAPARO_TOOLS = ("grasper", "hook", "clipper", "bipolar", "specimen bag", "irrigator", "scissors")
# NurViD scenes show one real procedure and its leaderboard action list (nap_classes, in the table's order),
# so the evaluator, which takes the first procedure in table order named in the question, scores next_action
# against exactly these labels. No earlier entry's name is a substring of this one (tests check it).
NURVID_PROCEDURE = "Intravenous Blood Sampling"
_REDS, _PINKS = ((150, 45, 55), (215, 115, 115)), ((175, 70, 80), (230, 150, 145))

SOURCES: dict[str, SourceSpec] = {s.name: s for s in (
    SourceSpec("AVOS", "open surgery", ("cutting", "tying", "suturing"), ("scissors", "forceps", "needle driver"),
               ("stg", "tal", "region_caption", "next_action", "dense_captioning", "video_summary"),
               (256, 144), _REDS, box_frac=0.26, speed=6.0, noise=4.0, distractors=1),
    SourceSpec("CholecT50", "laparoscopic cholecystectomy",
               ("preparation", "carlot-triangle-dissection", "clipping-and-cutting", "gallbladder-dissection",
                "gallbladder-packaging", "cleaning-and-coagulation", "gallbladder-extraction"),
               ("grasper", "hook", "clipper", "bipolar", "specimen bag", "irrigator", "extraction forceps"),
               ("dense_captioning", "next_action", "region_caption", "tal", "video_summary"),
               (256, 192), _REDS, box_frac=0.24, speed=5.0, noise=3.0, distractors=1, durations=(20, 24, 28)),
    SourceSpec("CholecTrack20", "laparoscopic cholecystectomy", _CHOLEC80_PHASES, _LAPARO_TOOLS,
               ("stg", "tal", "video_summary", "stg", "region_caption"),
               (256, 192), _PINKS, box_frac=0.2, speed=8.0, noise=4.0, distractors=2),
    SourceSpec("Cholec80_CVS", "laparoscopic cholecystectomy", ("calot triangle dissection", "clipping cutting"),
               ("grasper", "hook"), ("cvs_assessment", "video_summary", "cvs_assessment"),
               (256, 192), _REDS, box_frac=0.2, speed=4.0, noise=2.0, distractors=0, y_span=(0.0, 0.5)),
    SourceSpec("CoPESD", "endoscopic submucosal dissection",
               ("adjust camera", "position flap with forceps and knife", "dissect flap tissue with knife",
                "position flap with forceps only", "retract flap edge with forceps only",
                "retract flap edge with forceps and knife", "lift flap with forceps", "stabilize flap with forceps"),
               ("endoscope cap", "insulated-tip knife", "dual knife", "hot biopsy forceps", "grasping forceps",
                "hook knife", "lifting forceps", "stabilizing forceps"),
               ("stg", "region_caption", "dense_captioning", "tal", "next_action", "video_summary"),
               (256, 192), _PINKS, box_frac=0.38, speed=3.0, noise=2.0, distractors=0),
    SourceSpec("EgoSurgery", "open plastic surgery",
               ("preparation", "design", "incision", "dissection", "hemostasis", "irrigation", "closure", "dressing"),
               ("drape clamp", "marker pen", "scalpel", "dissecting scissors", "electrocautery", "syringe",
                "needle holder", "tweezers"),
               ("region_caption", "stg", "next_action", "tal", "video_summary"),
               (256, 144), _REDS, box_frac=0.12, speed=12.0, noise=6.0, distractors=3, drift=5.0),
    SourceSpec("JIGSAWS", "suturing", ("reaching for the needle", "positioning the needle",
                                      "pushing the needle through the tissue", "pulling the suture"),
               ("right needle driver", "left needle driver", "needle", "suture"),
               ("skill_assessment", "video_summary", "dense_captioning", "skill_assessment"),
               (256, 192), ((195, 140, 130), (235, 195, 180)), box_frac=0.22, speed=6.0, noise=3.0, distractors=1,
               y_span=(0.0, 0.86), drift=1.0),
    SourceSpec("NurViD", NURVID_PROCEDURE, NURVID_PROCEDURES[NURVID_PROCEDURE],
               ("vacuum tube", "order sheet", "cotton swab", "charting pen", "soap dispenser", "specimen tube",
                "tourniquet", "venipuncture needle"),
               ("tal", "dense_captioning", "next_action", "video_summary"),
               (256, 144), ((200, 155, 130), (235, 200, 175)), box_frac=0.3, speed=4.0, noise=3.0, distractors=2,
               drift=2.0),
)}
