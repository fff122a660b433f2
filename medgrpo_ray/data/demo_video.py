"""A tiny real H.264 video for demos and tests: a moving rectangle over a gradient, written with PyAV."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from medgrpo_ray.io.atomic import atomic_path


def write_demo_video(path: str | Path, seconds: float = 4.0, fps: int = 8, size: tuple[int, int] = (160, 224),
                     seed: int = 0) -> Path:
    """Encode `seconds` of a green rectangle sliding over a pink gradient to `path` (H.264, yuv420p)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    rng = np.random.default_rng(seed)
    base = np.zeros((h, w, 3), np.uint8)
    base[..., 0] = np.linspace(150, 230, w, dtype=np.uint8)[None, :]
    base[..., 1] = np.linspace(60, 110, h, dtype=np.uint8)[:, None]
    base[..., 2] = 90 + rng.integers(0, 20, (h, w), dtype=np.uint8)
    with atomic_path(path, suffix=".mp4") as tmp, av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(int(seconds * fps)):
            img = base.copy()
            x = int((w - 40) * i / max(1, seconds * fps - 1))
            img[h // 3: h // 3 + 30, x: x + 40] = (40, 200, 60)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
