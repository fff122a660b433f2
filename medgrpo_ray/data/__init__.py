"""The data layer: MedVidBench records (records.py), JSON/Parquet I/O (io.py, convert.py), video frames
(video.py), prompts (prompts.py) and the synthetic benchmark (synthetic.py, synthetic_scene.py).

Kept light: only the stdlib-only record types are imported here; pyarrow, PyAV and decord load on first use.
"""
from medgrpo_ray.data.records import RecordError, VideoRecord

__all__ = ["RecordError", "VideoRecord"]
