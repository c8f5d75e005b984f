"""Writing an acquisition's ``ev_*`` event folders: what one folder is (:class:`EventRecord`),
the threads that crop the movie and the ground truth into them (:func:`write_event_folders`),
and the removal of interrupted writes (:func:`remove_old_temporaries`)."""

from __future__ import annotations

import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deep_events_dagster.core import (
    crops,
    ground_truth_reader,
    movie_reader,
    regions,
)
from deep_events_dagster.core.fsutil import TEMP_PREFIX

STALE_TEMPORARY_AGE_S = 600.0


@dataclass(frozen=True)
class EventRecord:
    """One event folder written for an acquisition."""

    event_id: str
    folder: Path
    frames: tuple[int, int]
    crop_box: regions.Box
    positive: bool
    n_detections: int


def remove_old_temporaries(folder: Path, own_names: set[str]) -> None:
    """Remove interrupted writes: ours now, anybody's once older than a few minutes.

    Parameters
    ----------
    folder
        The folder of event folders (nothing happens when it does not exist).
    own_names
        Names of the folders about to be written: their temporaries are removed whatever
        their age; others once older than :data:`STALE_TEMPORARY_AGE_S`.
    """
    if not folder.is_dir():
        return
    now = time.time()
    for entry in folder.iterdir():
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        mine = any(name in entry.name for name in own_names)
        try:
            old = now - entry.stat().st_mtime > STALE_TEMPORARY_AGE_S
        except OSError:
            continue
        if mine or old:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(
                missing_ok=True
            )


def default_write_workers() -> int:
    """Threads writing event folders: most of that time is system calls and copies, which
    run in parallel; more than four gains nothing measurable."""
    return max(1, min(4, os.cpu_count() or 1))


def write_event_folders(
    records: Sequence[EventRecord],
    documents: dict[str, dict[str, Any]],
    *,
    movie_path: Path,
    gt: ground_truth_reader.GroundTruthReader,
    support: dict[int, list[regions.Window]] | None,
    workers: int,
    say: Callable[[str], None],
    channel: int | None = None,
) -> None:
    """Write every record's folder on ``workers`` threads; the first failure is raised once
    the running writes are done, and folders not started by then are not written.

    Parameters
    ----------
    records
        The folders to write, with their frames and crop boxes.
    documents
        Each record's ``event_db.yaml`` document, by event id.
    movie_path
        The movie the images are cropped from.
    gt, support
        The ground truth, and where it can hold signal (``None``: read whole windows);
        positives get its crop, negatives (checked signal-free) none.
    workers
        Writer threads.
    say
        Progress messages.
    channel
        Crop only this channel of a multi-channel movie (``None``: all channels).
    """

    def crop(record: EventRecord) -> np.ndarray:
        images = movie.read_window(record.frames, record.crop_box)
        if channel is not None and images.ndim == 4:
            images = np.ascontiguousarray(images[:, channel])
        return images

    def write(record: EventRecord, images: np.ndarray | None, gt_crop: np.ndarray | None) -> Path:
        return crops.write_event_folder(
            record.folder,
            images=crop(record) if images is None else images,
            ground_truth=gt_crop,
            event_db=documents[record.event_id],
            durable=False,
        )

    in_flight: deque[Future[Path]] = deque()
    with (
        movie_reader.MovieReader(movie_path) as movie,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="event-folders") as pool,
    ):
        try:
            for index, record in enumerate(records, 1):
                # negatives were checked signal-free: their ground truth is all zeros, unread
                gt_crop = (
                    _gt_window(gt, support, record.frames, record.crop_box)
                    if record.positive
                    else None
                )
                # a memory-mapped movie is read on the writer threads; page by page it is not
                images = None if movie.uses_memmap else crop(record)
                in_flight.append(pool.submit(write, record, images, gt_crop))
                while len(in_flight) > 2 * workers or (in_flight and in_flight[0].done()):
                    in_flight.popleft().result()  # bounds memory; a failure stops the loop
                if index % 25 == 0:
                    say(f"wrote {index}/{len(records)} event folders")
            for future in in_flight:
                future.result()
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise


def _gt_window(
    gt: ground_truth_reader.GroundTruthReader,
    support: dict[int, list[regions.Window]] | None,
    frames: tuple[int, int],
    box: regions.Box,
) -> np.ndarray:
    """The ground truth of ``frames`` in ``box``; with the writer's ``support`` only the
    parts that can hold signal are read."""
    x0, y0, x1, y1 = box
    if support is None:
        return np.stack([gt.read_window(t, y0, y1, x0, x1) for t in range(*frames)])
    out = np.zeros((frames[1] - frames[0], y1 - y0, x1 - x0), dtype=gt.dtype)
    for t in range(*frames):
        for wy0, wy1, wx0, wx1 in support.get(t, ()):
            iy0, iy1, ix0, ix1 = max(y0, wy0), min(y1, wy1), max(x0, wx0), min(x1, wx1)
            if iy0 < iy1 and ix0 < ix1:
                out[t - frames[0], iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = gt.read_window(
                    t, iy0, iy1, ix0, ix1
                )
    return out
