"""Why a video or frame list could not be decoded: `VideoDecodeError` carries a reason code and the file at fault,
both set by `video.py` where it detects the failure, so a caller (the data check's report, counted by reason) reads
the cause instead of parsing the message. The message is for people and names the record and the file.

    try:
        clip_for_record(record, budget)
    except VideoDecodeError as err:
        err.reason, err.path  # "truncated", "/data/videos/a.mp4"
"""
from __future__ import annotations

import os
import stat
from typing import Iterable

MISSING_FILE = "missing file"  # the video or a frame image does not exist
EMPTY_FILE = "empty file"  # a regular file of 0 bytes
CORRUPT = "corrupt"  # the container cannot be opened or holds no decodable frames
TRUNCATED = "truncated"  # an MP4/MOV cut off mid-box, or frames that fail to decode past the cut
TIMEOUT = "timeout"  # the decode did not finish within data.decode_timeout_s
CLIP_OUTSIDE_VIDEO = "clip outside video"  # the record's time range is empty within the video
BAD_FRAME_IMAGE = "bad frame image"  # a frame image that PIL cannot read
FRAME_SIZE_MISMATCH = "frame size mismatch"  # the frames of a frame list differ in size
EMPTY_FRAME_LIST = "empty frame list"
ERROR = "error"  # any other failure
REASONS = (MISSING_FILE, EMPTY_FILE, CORRUPT, TRUNCATED, TIMEOUT, CLIP_OUTSIDE_VIDEO, BAD_FRAME_IMAGE,
           FRAME_SIZE_MISMATCH, EMPTY_FRAME_LIST, ERROR)


class VideoDecodeError(RuntimeError):
    """A video or frame list could not be turned into frames; the message names the record and the file.

    `reason` is one of `REASONS`; `path` is the video or frame file at fault (None when there is none, e.g. an
    empty frame list). Both survive pickling (BaseException pickles `__dict__` with the message).
    """

    def __init__(self, message: str, *, reason: str = ERROR, path: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.path = path


def is_regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def first_irregular(paths: Iterable[str]) -> str | None:
    """The first path that exists (a dangling link counts) but is not a regular file: a FIFO, device or socket,
    which is what a decode blocked in `open()` usually waits on."""
    return next((p for p in paths if p and os.path.lexists(p) and not is_regular_file(p)), None)


def iso_bmff_truncated(path: str) -> bool:
    """True when `path` looks like an MP4/MOV (an `ftyp` box first) whose top-level boxes run past the end of the
    file: a cut-off download or copy rather than random bytes. Reads only the 8-16 byte box headers (and never
    opens a FIFO or device, which could block)."""
    if not is_regular_file(path):
        return False
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            pos, first = 0, True
            while pos + 8 <= size:
                f.seek(pos)
                head = f.read(16)
                box_size, kind = int.from_bytes(head[:4], "big"), head[4:8]
                if first and kind != b"ftyp":
                    return False
                first = False
                if box_size == 1 and len(head) >= 16:
                    box_size = int.from_bytes(head[8:16], "big")
                elif box_size == 0:  # the box runs to the end of the file
                    return False
                if box_size < 8:
                    return False
                if pos + box_size > size:
                    return True
                pos += box_size
            return pos != size and not first
    except OSError:
        return False
