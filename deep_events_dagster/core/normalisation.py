"""Per-frame normalisation of images and ground-truth masks (the training sets' and the models').

**Normalisation** (version :data:`NORMALISATION_VERSION`), per frame, on float32 copies (inputs
are never modified): images — non-finite values clipped to the frame's finite range (float16
crops of the original overflow to ``inf``), minimum subtracted, divided by the maximum when that
is above 0.2; masks — divided by 255 when the frame's maximum is above 1 (the original's GT was
scaled 0–254), clipped to [0, 1]; with ``smooth = σ > 0`` (the original's option) each mask
frame is then blurred with a Gaussian of σ pixels and rescaled to its former maximum, so a peak
of 1 stays 1 and a sample stays positive exactly when it was.

:data:`NORMALISATION_VERSION` is part of every training set's content address
(:mod:`deep_events_dagster.core.training_set`): change it with the rules.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = [
    "NORMALISATION_VERSION",
    "normalize_image_frames",
    "normalize_mask_frames",
    "smooth_mask_frames",
]

NORMALISATION_VERSION = 1
IMAGE_SCALE_THRESHOLD = 0.2


def _as_frames(frames: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    out = np.array(frames, dtype=np.float32, copy=True)
    shape = out.shape
    if out.ndim < 2:
        raise ValueError(f"expected frames ...×H×W, got shape {shape}")
    return out.reshape(-1, shape[-2] * shape[-1]), shape


def normalize_image_frames(frames: np.ndarray) -> np.ndarray:
    """Per-frame image normalisation on a float32 copy (``…×H×W``; the input is unchanged).

    Non-finite values become the frame's finite maximum (``+inf``) or minimum (``-inf``,
    ``nan``); then the frame's minimum is subtracted and, when the remaining maximum is above
    0.2, the frame is divided by it (so it spans [0, 1]). A constant frame becomes 0.
    """
    flat, shape = _as_frames(frames)
    bad_rows = ~np.isfinite(flat).all(axis=1)
    for row in np.flatnonzero(bad_rows):
        values = flat[row]
        finite = np.isfinite(values)
        if finite.any():
            low, high = values[finite].min(), values[finite].max()
        else:
            low = high = 0.0
        values[np.isposinf(values)] = high
        values[~np.isfinite(values)] = low
    flat -= flat.min(axis=1, keepdims=True)
    peak = flat.max(axis=1, keepdims=True)
    flat /= np.where(peak > IMAGE_SCALE_THRESHOLD, peak, np.float32(1.0))
    return flat.reshape(shape)


def normalize_mask_frames(frames: np.ndarray) -> np.ndarray:
    """Per-frame mask normalisation on a float32 copy (the input is unchanged).

    Frames whose maximum is above 1 (the original's ground truth, scaled 0–254) are divided by
    255; ``nan`` becomes 0; values are clipped to [0, 1].
    """
    flat, shape = _as_frames(frames)
    np.nan_to_num(flat, copy=False, nan=0.0, posinf=np.float32(255.0), neginf=0.0)
    peak = flat.max(axis=1, keepdims=True)
    flat /= np.where(peak > 1.0, np.float32(255.0), np.float32(1.0))
    np.clip(flat, 0.0, 1.0, out=flat)
    return flat.reshape(shape)


def smooth_mask_frames(masks: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each mask frame (``…×H×W``) with a Gaussian of ``sigma`` pixels, then rescale it to
    its former maximum (a peak of 1 stays 1; an empty frame stays empty). A float32 copy;
    ``sigma`` 0 returns the masks unchanged (as a copy).
    """
    out = np.array(masks, dtype=np.float32, copy=True)
    if sigma <= 0:
        return out
    flat = out.reshape(-1, *out.shape[-2:])
    for frame in flat:
        peak = float(frame.max())
        if peak <= 0:
            continue
        ndimage.gaussian_filter(frame, sigma, output=frame, mode="constant")
        blurred = float(frame.max())
        if blurred > 0:
            frame *= np.float32(peak / blurred)
    return out
