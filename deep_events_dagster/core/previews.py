"""The pictures of an ingestion shown in the UI: the movie's max projection with its event
boxes (:func:`movie_thumbnail`) and the ground truth's max projection
(:func:`ground_truth_thumbnail`), as PNG bytes (drawing and encoding: ``core.thumbnails``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deep_events_dagster.core import (
    ground_truth_reader,
    movie_reader,
    thumbnails,
)
from deep_events_dagster.core.event_folders import EventRecord


def _projection(path: Path, max_side: int, n_samples: int = 16) -> tuple[np.ndarray, int]:
    with movie_reader.MovieReader(path) as reader:
        stride = thumbnails.downsample_factor(reader.height, reader.width, max_side)
        indices = np.unique(np.linspace(0, reader.n_frames - 1, min(n_samples, reader.n_frames)))
        projection = None
        for t in indices.astype(int):
            frame = reader.read_frame(int(t), step=stride)
            if frame.ndim == 3:
                frame = frame[0]
            small = np.asarray(frame, dtype=np.float32)
            projection = small if projection is None else np.maximum(projection, small)
    return projection, stride


def movie_thumbnail(
    movie: Path, records: Sequence[EventRecord] = (), *, max_side: int = 384
) -> bytes:
    """PNG of the movie's max projection with event boxes (red) and negatives (blue).

    Parameters
    ----------
    movie
        The movie (16 frames spread over it are projected, downsampled).
    records
        The event folders whose boxes are drawn.
    max_side
        The picture's longest side at most, in pixels.

    Returns
    -------
    bytes
        The PNG.
    """
    projection, stride = _projection(movie, max_side)
    boxes = [
        (r.crop_box, thumbnails.POSITIVE_COLOUR if r.positive else thumbnails.NEGATIVE_COLOUR)
        for r in records
    ]
    rgb = thumbnails.draw_boxes(thumbnails.to_display(projection), boxes, scale=stride)
    return thumbnails.encode_png(rgb)


def ground_truth_thumbnail(gt_path: Path, *, max_side: int = 384) -> bytes:
    """PNG of the ground truth's max projection over time (read where it is non-zero).

    Parameters
    ----------
    gt_path
        The ground truth (``ground_truth_<kind>.tif``).
    max_side
        The picture's longest side at most, in pixels (max-pooled).

    Returns
    -------
    bytes
        The PNG.
    """
    support = ground_truth_reader.read_ground_truth_support(gt_path)
    with ground_truth_reader.GroundTruthReader(gt_path) as gt:
        n_frames, height, width = gt.shape[0], gt.shape[-2], gt.shape[-1]
        canvas = np.zeros((height, width), np.float32)
        if support is None:
            for t in range(n_frames):
                np.maximum(canvas, gt.read_frame(t), out=canvas)
        else:
            for t, windows in support.items():
                for y0, y1, x0, x1 in windows:
                    view = canvas[y0:y1, x0:x1]
                    np.maximum(view, gt.read_window(int(t), y0, y1, x0, x1), out=view)
    stride = thumbnails.downsample_factor(height, width, max_side)
    if stride > 1:  # max-pool so that small Gaussians stay visible
        h, w = height // stride * stride, width // stride * stride
        canvas = canvas[:h, :w].reshape(h // stride, stride, w // stride, stride).max(axis=(1, 3))
    return thumbnails.encode_png((np.clip(canvas, 0, 1) * 255).astype(np.uint8))
