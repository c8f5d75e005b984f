"""Reference implementations the benchmarks compare against: the original deep-events way.

They follow the original's algorithms (whole frames, the whole volume in memory — that is what
is being measured) in plain numpy/scipy, float32, without the original's TensorFlow detour.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage


def full_frame_ground_truth(
    path: Path,
    points: np.ndarray,
    *,
    n_frames: int,
    height: int,
    width: int,
    sigma: float = 5.0,
    cutoff: float = 0.1,
    meshgrid_per_point: bool = True,
) -> np.ndarray:
    """Render every point's Gaussian over the WHOLE frame into a ``T×Y×X`` float32 volume held
    in memory, combine by maximum, then write the volume uncompressed with tifffile.

    Per point, as the original's ``poi``/``get_gaussian``: a meshgrid of the whole frame, the
    Gaussian evaluated on it (float32), values under ``cutoff`` set to 0, the frame of the
    volume updated (here by maximum, as ours, so the outputs can be compared).
    ``meshgrid_per_point=False`` builds the meshgrid once instead (a faster variant, printed
    beside). ``points`` is ``N×3`` ``(frame, y, x)`` in pixels. Returns the volume.
    """

    def meshgrid() -> tuple[np.ndarray, np.ndarray]:
        return np.meshgrid(
            np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij"
        )

    grid = None if meshgrid_per_point else meshgrid()
    two_s2 = np.float32(2.0 * sigma * sigma)
    volume = np.zeros((n_frames, height, width), dtype=np.float32)
    for frame, y, x in points:
        t = round(float(frame))
        if not 0 <= t < n_frames:
            continue
        yy, xx = grid if grid is not None else meshgrid()
        gaussian = np.exp(-((yy - np.float32(y)) ** 2 + (xx - np.float32(x)) ** 2) / two_s2)
        gaussian[gaussian < cutoff] = 0.0
        np.maximum(volume[t], gaussian, out=volume[t])
    tifffile.imwrite(path, volume, photometric="minisblack")
    return volume


def original_event_scan(
    gt_path: Path,
    *,
    crop_size: int = 256,
    threshold: float = 0.5,
    max_gap_frames: int = 2,
) -> list[list[tuple[int, int, int]]]:
    """The original's event detection: read every frame whole, run a ``crop_size``-wide maximum
    filter over it, keep pixels equal to the filtered value and above ``threshold``, then link
    naively — a maximum joins the first event (of all events so far) whose last detection is
    at most ``max_gap_frames`` frames earlier and within ``crop_size`` pixels (the original
    used the crop size as the linking distance), else it opens a new event.

    Returns the events as lists of ``(frame, y, x)``.
    """
    events: list[list[tuple[int, int, int]]] = []
    with tifffile.TiffFile(gt_path) as tif:
        for t, page in enumerate(tif.pages):
            frame = page.asarray()
            filtered = ndimage.maximum_filter(frame, size=crop_size)
            ys, xs = np.nonzero((frame == filtered) & (frame > threshold))
            for y, x in zip(ys.tolist(), xs.tolist()):
                for event in events:
                    last_t, last_y, last_x = event[-1]
                    if 0 < t - last_t <= max_gap_frames and math.hypot(
                        y - last_y, x - last_x
                    ) <= float(crop_size):
                        event.append((t, y, x))
                        break
                else:
                    events.append([(t, y, x)])
    return events
