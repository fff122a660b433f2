"""`VideoRecord`: one MedVidBench record, validated when read and written back losslessly.

The published format (a JSON list of these dicts) is read as is: `conversations` (human turn
"<video>\\n<question>", optional gpt turn = reference answer), `video` (list of frame image paths), `metadata`
(`fps`, `video_id`, `input_video_start_frame`, `input_video_end_frame`), `qa_type` (11 variants), `data_source`
(falls back to `dataset_name`), `struc_info` (per task), `is_RC` / `RC_info`. Our extension: `video` may be one
video file path (a string); its clip is `metadata.start_time` .. `metadata.end_time` (seconds in the file,
default the whole file) and a region-caption box is placed by `RC_info.start_time` (seconds from the clip start)
instead of `RC_info.start_frame`. Times in questions, answers and `struc_info` are seconds from the clip start:
frame k of a clip sampled at `fps` is at k / fps.

`to_dict()` returns exactly the dict that was read (unknown keys live in `extra`, the key order and explicit
nulls are kept, spellings such as fps "0.5" and `qa_type` variants are untouched). Docs: docs/data.md.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from medgrpo_ray.data.checks import FieldError, box, check_struc_info, int_like, number
from medgrpo_ray.medvidbench.tasks import canonical_dataset, canonical_task

KNOWN_KEYS: tuple[str, ...] = ("conversations", "video", "metadata", "qa_type", "data_source", "struc_info",
                               "is_RC", "RC_info")
REQUIRED_KEYS: tuple[str, ...] = ("conversations", "video", "metadata", "qa_type")
VIDEO_TOKEN = "<video>"


class RecordError(ValueError):
    """A malformed record; the message names the file, the record index, the field and what was expected."""

    def __init__(self, problem: str, *, source: str = "<memory>", index: int | None = None, field: str = "") -> None:
        self.source, self.index, self.field, self.problem = source, index, field, problem
        where = f"{source} record {index}" if index is not None else source
        super().__init__(f"{where}: field {field or '<record>'}: {problem}")


@dataclass
class VideoRecord:
    """One MedVidBench record. Fields hold the published values unchanged; properties give typed views."""

    conversations: list[dict[str, Any]]  # [{"from": "human", "value": "<video>\n..."}, {"from": "gpt", ...}?]
    video: str | list[str]  # a video file path, or the clip's frame image paths in temporal order
    metadata: dict[str, Any]  # fps, video_id, input_video_{start,end}_frame; start_time/end_time for files
    qa_type: str  # one of the 11 published variants (tal, dense_captioning_gpt, ...)
    data_source: str | None = None  # as spelled in the data (Cholec80_CVS or Cholec80-CVS, ...)
    struc_info: Any = None  # structured ground truth; None when the record has none
    is_RC: bool | None = None
    RC_info: dict[str, Any] | None = None  # {start_frame | start_time, start_frame_bbox: [x1, y1, x2, y2]}
    extra: dict[str, Any] = field(default_factory=dict)  # unknown top-level keys (dataset_name, gnd, ...)
    source: str = field(default="<memory>", compare=False, repr=False)  # file the record was read from
    index: int | None = field(default=None, compare=False, repr=False)  # position in that file
    key_order: tuple[str, ...] = field(default=(), compare=False, repr=False)  # keys as read, for to_dict
    # derived values computed once (uid, canonical names, the shared dicts): a record is not changed after it is read
    _cache: dict[str, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        try:
            self._validate()
        except FieldError as bad:
            raise RecordError(bad.problem, source=self.source, index=self.index, field=bad.field) from None

    @classmethod
    def from_dict(cls, d: Any, source: str = "<memory>", index: int | None = None) -> "VideoRecord":
        """Read one published-format dict (deep-copied); RecordError names `source`, `index` and the field."""
        if not isinstance(d, Mapping):
            raise RecordError(f"is a {type(d).__name__}; expected a JSON object", source=source, index=index)
        for key in REQUIRED_KEYS:
            if key not in d:
                raise RecordError(f"is missing; expected every record to have {', '.join(REQUIRED_KEYS)}",
                                  source=source, index=index, field=key)
        d = copy.deepcopy(dict(d))
        known = {k: d[k] for k in KNOWN_KEYS if k in d}
        extra = {k: v for k, v in d.items() if k not in KNOWN_KEYS}
        return cls(**known, extra=extra, source=source, index=index, key_order=tuple(d))

    def to_dict(self) -> dict[str, Any]:
        """The record in the published format, equal to the dict it was read from (a fresh copy)."""
        values = {k: getattr(self, k) for k in KNOWN_KEYS}
        out: dict[str, Any] = {}
        for key in self.key_order:
            if key in values:
                out[key] = values[key]
            elif key in self.extra:
                out[key] = self.extra[key]
        for key, value in values.items():
            if key not in out and (value is not None or key in REQUIRED_KEYS):
                out[key] = value
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return copy.deepcopy(out)

    def to_eval_dict(self, prediction: str | None = None) -> dict[str, Any]:
        """The merged-results shape evaluators and rewards read: metadata, qa_type, struc_info, question,
        answer (the model's output, "" if none), gnd (the reference answer), data_source."""
        return {
            "metadata": copy.deepcopy(self.metadata),
            "qa_type": self.qa_type,
            "struc_info": copy.deepcopy(self.struc_info) if self.struc_info is not None else [],
            "question": self.question,
            "answer": prediction if prediction is not None else "",
            "gnd": self.answer or "",
            "data_source": self.data_source or str(self.extra.get("dataset_name") or ""),
        }

    def shared_dict(self) -> dict[str, Any]:
        """`to_dict()` built once and shared: the driver sends it to workers every time the record is drawn.
        Read-only by contract (copy it before changing anything)."""
        if "dict" not in self._cache:
            self._cache["dict"] = self.to_dict()
        return self._cache["dict"]

    def shared_eval_dict(self) -> dict[str, Any]:
        """`to_eval_dict()` (no prediction) built once and shared, read-only: what the reward workers score."""
        if "eval" not in self._cache:
            self._cache["eval"] = self.to_eval_dict()
        return self._cache["eval"]

    # ---- typed views -------------------------------------------------------------------------------------
    @property
    def task(self) -> str:
        """Canonical task (tasks.TASKS) of `qa_type`."""
        if "task" not in self._cache:
            self._cache["task"] = canonical_task(self.qa_type)
        return self._cache["task"]

    @property
    def dataset(self) -> str:
        """Canonical dataset of `data_source`, else of `dataset_name` (the leaderboard's fallback), else "Unknown"."""
        if "dataset" not in self._cache:
            name = self.data_source or self.extra.get("dataset_name")
            self._cache["dataset"] = canonical_dataset(name) if isinstance(name, str) and name.strip() else "Unknown"
        return self._cache["dataset"]

    @property
    def question(self) -> str:
        """The human turn without its leading "<video>\\n"."""
        text = self.conversations[0]["value"]
        if text.startswith(VIDEO_TOKEN):
            text = text[len(VIDEO_TOKEN):]
            text = text[1:] if text.startswith("\n") else text
        return text

    @property
    def answer(self) -> str | None:
        """The reference answer: the gpt turn, else a top-level `gnd`; None if the record has neither."""
        if len(self.conversations) > 1:
            return self.conversations[1]["value"]
        gnd = self.extra.get("gnd")
        return gnd if isinstance(gnd, str) else None

    @property
    def fps(self) -> float:
        """Sampling rate of the clip (frames per second), from `metadata.fps` ("0.5", 1.0, ...)."""
        return float(self.metadata["fps"])

    @property
    def is_video_file(self) -> bool:
        return isinstance(self.video, str)

    @property
    def video_path(self) -> str | None:
        """The video file path (our extension), None for a frame-list record."""
        return self.video if isinstance(self.video, str) else None

    @property
    def frame_paths(self) -> list[str]:
        """The frame image paths of a frame-list record ([] for a video file)."""
        return [] if isinstance(self.video, str) else list(self.video)

    @property
    def start_s(self) -> float:
        """Clip start in seconds within the video file (0.0 for frame lists: the list is the clip)."""
        value = self.metadata.get("start_time") if self.is_video_file else None
        return 0.0 if value is None else float(value)

    @property
    def end_s(self) -> float | None:
        """Clip end in seconds within the video file (None = end of file); frame lists: len(frames) / fps."""
        if not self.is_video_file:
            return len(self.video) / self.fps
        value = self.metadata.get("end_time")
        return None if value is None else float(value)

    @property
    def rc_box(self) -> tuple[float, float, float, float] | None:
        """The region-caption box [x1, y1, x2, y2] when `is_RC`, else None."""
        if not self.is_RC or not self.RC_info:
            return None
        return tuple(float(v) for v in self.RC_info["start_frame_bbox"])  # type: ignore[return-value]

    @property
    def rc_frame_index(self) -> int | None:
        """Index, among the clip's frames sampled at `fps`, of the frame that carries the RC box (None when not
        `is_RC`): the position of `RC_info.start_frame` in a frame list, else round(start_time * fps)."""
        if not self.is_RC or not self.RC_info:
            return None
        if not self.is_video_file and "start_frame" in self.RC_info:
            return self.video.index(self.RC_info["start_frame"])
        return int(round(float(self.RC_info["start_time"]) * self.fps))

    @property
    def rc_time(self) -> float | None:
        """Seconds from the clip start of the frame that carries the RC box (None when not `is_RC`)."""
        if not self.is_RC or not self.RC_info:
            return None
        if not self.is_video_file and "start_frame" in self.RC_info:
            return self.video.index(self.RC_info["start_frame"]) / self.fps
        return float(self.RC_info["start_time"])

    @property
    def uid(self) -> str:
        """Stable id "<video_id>:<qa_type>:<12 hex of the content>"; identical across JSON and Parquet.
        Computed once (a record is not changed after it is read): the driver asks for it per sample."""
        if "uid" not in self._cache:
            blob = json.dumps(self.shared_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            digest = hashlib.sha1(blob.encode("utf-8")).hexdigest()[:12]
            self._cache["uid"] = f"{self.metadata.get('video_id', 'video')}:{self.qa_type}:{digest}"
        return self._cache["uid"]

    # ---- validation --------------------------------------------------------------------------------------
    def _validate(self) -> None:
        self._check_conversations()
        self._check_video()
        if not isinstance(self.qa_type, str):
            raise FieldError("qa_type", f"is {self.qa_type!r}; expected text such as \"tal\"")
        try:
            task = canonical_task(self.qa_type)
        except ValueError as err:
            raise FieldError("qa_type", str(err)) from None
        self._check_metadata()
        if self.data_source is not None and not isinstance(self.data_source, str):
            raise FieldError("data_source", f"is {self.data_source!r}; expected a dataset name such as \"CoPESD\"")
        if set(self.extra) & set(KNOWN_KEYS):
            clash = sorted(set(self.extra) & set(KNOWN_KEYS))
            raise FieldError("extra", f"holds known keys {clash}; expected them as fields, not in `extra`")
        if self.struc_info is not None:
            check_struc_info(task, self.struc_info)
        self._check_rc()

    def _check_conversations(self) -> None:
        turns = self.conversations
        if not isinstance(turns, list) or not turns:
            raise FieldError("conversations", f"is {turns!r}; expected a list of turns, the first "
                             "{\"from\": \"human\", \"value\": \"<video>\\n...\"}")
        for i, turn in enumerate(turns[:2]):
            speaker = ("human", "gpt")[i]
            if not isinstance(turn, Mapping) or turn.get("from") != speaker or not isinstance(turn.get("value"), str):
                raise FieldError(f"conversations[{i}]",
                                 f"is {turn!r}; expected {{\"from\": \"{speaker}\", \"value\": text}}")

    def _check_video(self) -> None:
        v = self.video
        if isinstance(v, str):
            if not v.strip():
                raise FieldError("video", "is an empty path; expected a video file path or a list of frame paths")
            return
        if not isinstance(v, list) or not v:
            raise FieldError("video", f"is {v!r}; expected a video file path or a non-empty list of frame paths")
        for i, path in enumerate(v):
            if not isinstance(path, str) or not path.strip():
                raise FieldError(f"video[{i}]", f"is {path!r}; expected a frame image path")

    def _check_metadata(self) -> None:
        m = self.metadata
        if not isinstance(m, Mapping):
            raise FieldError("metadata", f"is {m!r}; expected a dict with at least `fps`")
        if "fps" not in m:
            raise FieldError("metadata.fps", "is missing; expected the clip's sampling rate, e.g. \"1.0\"")
        number(m["fps"], "metadata.fps", positive=True)
        frames = {}
        for key in ("input_video_start_frame", "input_video_end_frame"):
            if m.get(key) is not None:
                frames[key] = int_like(m[key], f"metadata.{key}", lo=0)
        if len(frames) == 2 and frames["input_video_end_frame"] < frames["input_video_start_frame"]:
            raise FieldError("metadata.input_video_end_frame",
                             f"is {m['input_video_end_frame']!r}, before input_video_start_frame "
                             f"{m['input_video_start_frame']!r}; expected end frame >= start frame")
        start = number(m["start_time"], "metadata.start_time", minimum=0.0) if m.get("start_time") is not None else 0.0
        if m.get("end_time") is not None and number(m["end_time"], "metadata.end_time") <= start:
            raise FieldError("metadata.end_time", f"is {m['end_time']!r}; expected a time after start_time ({start})")

    def _check_rc(self) -> None:
        if self.is_RC is not None and not isinstance(self.is_RC, bool):
            raise FieldError("is_RC", f"is {self.is_RC!r}; expected true or false")
        info = self.RC_info
        if info is None and not self.is_RC:
            return
        if not isinstance(info, Mapping) or (self.is_RC and not info):
            raise FieldError("RC_info", f"is {info!r}; expected "
                             "{\"start_frame\": <path>, \"start_frame_bbox\": [x1, y1, x2, y2]}")
        if not info:
            return
        if "start_frame_bbox" not in info:
            raise FieldError("RC_info.start_frame_bbox", "is missing; expected [x1, y1, x2, y2] in pixels")
        box(info["start_frame_bbox"], "RC_info.start_frame_bbox")
        if not self.is_video_file and "start_frame" in info:
            if info["start_frame"] not in self.video:
                raise FieldError("RC_info.start_frame",
                                 f"is {info['start_frame']!r}; expected one of the paths in `video`")
        elif "start_time" in info:
            t = number(info["start_time"], "RC_info.start_time", minimum=0.0)
            length = None if self.end_s is None else self.end_s - self.start_s
            if length is not None and t >= length:
                raise FieldError("RC_info.start_time",
                                 f"is {t} s; expected seconds from the clip start, below {length}")
        else:
            key = "start_time" if self.is_video_file else "start_frame"
            raise FieldError(f"RC_info.{key}", "is missing; expected `start_frame` (a path in `video`) for a frame "
                             "list, `start_time` (seconds from the clip start) for a video file")
