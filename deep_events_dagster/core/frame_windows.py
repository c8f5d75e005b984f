"""Which frames make a sample: the frame step for a requested frame rate, and the windows.

Shared by the training sets (:mod:`deep_events_dagster.core.training_set`) and the whole-movie
predictions (:mod:`deep_events_dagster.ml.predict`), so a model sees the same frames in both.

**Frame rate.** ``fps`` is frames per second, in documents and in ``settings.fps`` (the
original's meaning since its June 2023 fix). Without ``settings.fps`` every event is used at its
own rate. With it, as the original's ``load_folder``: ``r = event_fps / prompt_fps``; the event is
skipped when ``prompt_fps / event_fps > 1.5`` (recorded too slowly); ``0.5 ≤ r ≤ 2`` uses every
frame; otherwise every ``round(r)``-th frame, unless the fractional part of ``r`` is in
(0.25, 0.75) (no step fits: skipped). Events without a frame rate are skipped when one is
requested. Skips are counted per reason.

**Windows.** From an event of ``T`` frames, step ``k`` and window length ``w``: windows
``images[t − (w−1)k], …, images[t − k], images[t]`` with target ``ground_truth[t]`` for *every*
``t`` from ``(w−1)k`` to ``T − 1`` — never wrapping around (the original's look-ahead index
wrapped to frame 0). With ``w = 1`` every frame of every event is a sample, as in the original;
frames without ground-truth signal are negative samples. ``w`` is ``max_n_timepoints`` when given
(the longest window the set serves: a model with ``n_timepoints ≤ max_n_timepoints`` uses the
last ``n_timepoints`` frames of each window, so such models share one set), else
``n_timepoints``. ``max_n_timepoints`` never caps the number of samples. Events with fewer than
``(w−1)k + 1`` frames are skipped.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "SKIP_NOT_MULTIPLE",
    "SKIP_NO_FPS",
    "SKIP_SLOWER",
    "frame_step",
    "window_ends",
]

# the original's frame-rate rule (load_folder)
SAME_RATE_RANGE = (0.5, 2.0)
MAX_SLOWER_RATIO = 1.5
UNFIT_FRACTION = (0.25, 0.75)

# skip reasons of frame_step (keys of TrainingSetResult.skipped)
SKIP_NO_FPS = "no frame rate (fps) in the document"
SKIP_SLOWER = "recorded more than 1.5x slower than the requested fps"
SKIP_NOT_MULTIPLE = "event fps is not close to a whole multiple of the requested fps"


def frame_step(event_fps: Any, prompt_fps: float | None) -> tuple[int | None, str | None]:
    """Frame step for an event recorded at ``event_fps`` when ``prompt_fps`` is asked for.

    Both are frames per second. The original's rule: ``r = event_fps / prompt_fps``; skip when
    ``prompt_fps / event_fps > 1.5``; every frame when ``0.5 ≤ r ≤ 2``; else every
    ``round(r)``-th frame, skipped when the fractional part of ``r`` is in (0.25, 0.75).

    Returns
    -------
    (step, None)
        The event is usable taking every ``step``-th frame (``1`` without a request).
    (None, reason)
        The event does not fit; ``reason`` is one of the skip reasons.
    """
    if prompt_fps is None:
        return 1, None
    if isinstance(event_fps, bool) or not isinstance(event_fps, int | float):
        return None, SKIP_NO_FPS
    rate = float(event_fps)
    if not math.isfinite(rate) or rate <= 0:
        return None, SKIP_NO_FPS
    if prompt_fps / rate > MAX_SLOWER_RATIO:
        return None, SKIP_SLOWER
    ratio = rate / prompt_fps
    if SAME_RATE_RANGE[0] <= ratio <= SAME_RATE_RANGE[1]:
        return 1, None
    fraction = ratio - math.floor(ratio)
    if UNFIT_FRACTION[0] < fraction < UNFIT_FRACTION[1]:
        return None, SKIP_NOT_MULTIPLE
    return max(1, round(ratio)), None


def window_ends(n_frames: int, window: int, step: int = 1) -> np.ndarray:
    """Indices ``t`` of the frames whose ground truth the windows predict: every frame that has
    ``window − 1`` earlier frames at ``step`` (``t − (window − 1)·step, …, t``), from
    ``(window − 1)·step`` to ``n_frames − 1``. Empty when the event is too short.
    """
    first = (window - 1) * step
    if n_frames <= first:
        return np.zeros(0, dtype=np.int64)
    return np.arange(first, n_frames, dtype=np.int64)
