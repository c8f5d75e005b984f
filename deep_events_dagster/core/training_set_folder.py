"""A training set folder on disk: its files, how they are written, and how they are read back.

:func:`write_folder` fills a (temporary) folder that
:func:`~deep_events_dagster.core.training_set.build_training_set` then renames to
``<out_root>/ts_<16 hex>/``:

=====================  ==========================================================================
``train_images.npy``   float32 ``N×n×H×W``: windows of ``n = n_timepoints`` frames, oldest first
``train_masks.npy``    float32 ``N×H×W``: the ground truth of each window's last frame
``eval_images.npy``    same for the held-out events
``eval_masks.npy``
``manifest.yaml``      id, parameters, counts, every event (split, samples, content hash…)
``db_prompt.yaml``     the prompt and collection that selected the events
``COMPLETE``           the id, written last: a folder without it is never used
=====================  ==========================================================================

Each event's samples are contiguous in its split's stacks (``first_sample``, ``n_samples`` in
the manifest), in the order the events are given. :data:`LAYOUT_VERSION` is part of the
folder's content address: change it with the layout.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.normalisation import (
    NORMALISATION_VERSION,
    normalize_image_frames,
    normalize_mask_frames,
    smooth_mask_frames,
)
from deep_events_dagster.core.plain_values import to_plain
from deep_events_dagster.core.splits import SPLITS, group_key
from deep_events_dagster.core.training_events import TrainingEvent, event_label, read_event
from deep_events_dagster.core.training_set_parameters import TrainingSetParameters

__all__ = [
    "COMPLETE_NAME",
    "DB_PROMPT_NAME",
    "FOLDER_PREFIX",
    "FORMAT_NAME",
    "LAYOUT_VERSION",
    "MANIFEST_NAME",
    "is_complete",
    "read_training_set_manifest",
    "write_folder",
]

LAYOUT_VERSION = 2  # 2: fps in frames per second, max_n_timepoints is the window length
FORMAT_NAME = "deep-events-training-set"
MANIFEST_NAME = "manifest.yaml"
DB_PROMPT_NAME = "db_prompt.yaml"
COMPLETE_NAME = "COMPLETE"
FOLDER_PREFIX = "ts_"


def is_complete(folder: str | Path, expected_id: str | None = None) -> bool:
    """Whether ``folder`` is a finished training set (its ``COMPLETE`` marker was written last).

    With ``expected_id``, the marker must also name that id.
    """
    folder = Path(folder)
    marker = folder / COMPLETE_NAME
    if not marker.is_file():
        return False
    if expected_id is not None:
        try:
            if marker.read_text(encoding="utf-8").strip() != expected_id:
                return False
        except OSError:
            return False
    names = [MANIFEST_NAME] + [f"{s}_{kind}.npy" for s in SPLITS for kind in ("images", "masks")]
    return all((folder / name).is_file() for name in names)


def read_training_set_manifest(folder: str | Path) -> dict[str, Any]:
    """The ``manifest.yaml`` of a training set folder (an acquisition's events manifest is
    read by :func:`~deep_events_dagster.core.events_manifest.read_events_manifest`)."""
    path = Path(folder) / MANIFEST_NAME
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: not a training set manifest")
    return data


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_folder(
    tmp: Path,
    events: Sequence[TrainingEvent],
    hashes: Mapping[str, str],
    *,
    set_id: str,
    params: TrainingSetParameters,
    height: int,
    width: int,
    skipped_events: Sequence[tuple[str, str]],
    db_prompt: Mapping[str, Any],
    collection: str,
) -> dict[str, Any]:
    """Write the stacks, ``manifest.yaml``, ``db_prompt.yaml`` and, last, ``COMPLETE`` into
    ``tmp`` (each file fsynced); returns the manifest."""
    n = params.window
    totals = {s: sum(len(e.ends) for e in events if e.split == s) for s in SPLITS}
    stacks: dict[str, tuple[np.memmap, np.memmap]] = {}
    for split in SPLITS:
        stacks[split] = (
            np.lib.format.open_memmap(
                tmp / f"{split}_images.npy",
                mode="w+",
                dtype=np.float32,
                shape=(totals[split], n, height, width),
            ),
            np.lib.format.open_memmap(
                tmp / f"{split}_masks.npy",
                mode="w+",
                dtype=np.float32,
                shape=(totals[split], height, width),
            ),
        )
    cursor = dict.fromkeys(SPLITS, 0)
    records = []
    positives = dict.fromkeys(SPLITS, 0)
    offsets = np.arange(n - 1, -1, -1, dtype=np.int64)
    for event in events:
        raw_images, raw_gt = read_event(event)
        images = normalize_image_frames(raw_images)
        masks = smooth_mask_frames(normalize_mask_frames(raw_gt), params.smooth)
        del raw_images, raw_gt
        ends = np.asarray(event.ends, dtype=np.int64)
        frames = ends[:, None] - offsets[None, :] * event.step
        start = cursor[event.split]
        stop = start + len(ends)
        out_images, out_masks = stacks[event.split]
        out_images[start:stop] = images[frames]
        out_masks[start:stop] = masks[ends]
        event_positives = int((masks[ends].reshape(len(ends), -1).max(axis=1) > 0).sum())
        positives[event.split] += event_positives
        cursor[event.split] = stop
        document = event.document
        records.append(
            {
                "_id": event.id,
                "content_hash": hashes[event.id],
                "split": event.split,
                "first_sample": start,
                "n_samples": len(ends),
                "positive_samples": event_positives,
                "frame_step": event.step,
                "n_frames": event.n_frames,
                "channel": event.channel,
                "acquisition_key": group_key(document),
                "label": event_label(document),
                "event_content": to_plain(document.get("event_content")),
                "event_path": str(document.get("event_path")),
            }
        )
    for split in SPLITS:
        for array in stacks[split]:
            array.flush()
    del stacks
    for split in SPLITS:
        for kind in ("images", "masks"):
            _fsync(tmp / f"{split}_{kind}.npy")

    n_samples = totals["train"] + totals["eval"]
    counts = {
        "train_samples": totals["train"],
        "eval_samples": totals["eval"],
        "train_events": sum(1 for e in events if e.split == "train"),
        "eval_events": sum(1 for e in events if e.split == "eval"),
        "positives": positives["train"] + positives["eval"],
        "negatives": n_samples - positives["train"] - positives["eval"],
        "train_positives": positives["train"],
        "eval_positives": positives["eval"],
        "by_acquisition": dict(sorted(Counter(group_key(e.document) for e in events).items())),
        "by_label": dict(sorted(Counter(event_label(e.document) for e in events).items())),
        "skipped": dict(sorted(Counter(reason for _, reason in skipped_events).items())),
    }
    manifest = {
        "format": FORMAT_NAME,
        "version": LAYOUT_VERSION,
        "id": set_id,
        "parameters": params.as_dict(),
        "normalisation": {
            "version": NORMALISATION_VERSION,
            "images": "per frame: non-finite clipped, min subtracted, divided by max when > 0.2",
            "masks": "per frame: divided by 255 when max > 1, clipped to [0, 1]",
        },
        "shape": {"n_timepoints": params.window, "height": height, "width": width},
        "files": {f"{s}_{kind}": f"{s}_{kind}.npy" for s in SPLITS for kind in ("images", "masks")},
        "counts": counts,
        "collection": collection,
        "events": records,
        "skipped_events": [{"_id": i, "reason": r} for i, r in skipped_events],
    }
    (tmp / MANIFEST_NAME).write_text(
        yaml.safe_dump(to_plain(manifest), sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    prompt = {
        "collection": collection,
        "db_prompt": to_plain(dict(db_prompt)),
        **params.as_dict(),
        "n_event": len(events),
    }
    (tmp / DB_PROMPT_NAME).write_text(
        yaml.safe_dump(prompt, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    for name in (MANIFEST_NAME, DB_PROMPT_NAME):
        _fsync(tmp / name)
    (tmp / COMPLETE_NAME).write_text(set_id + "\n", encoding="utf-8")
    _fsync(tmp / COMPLETE_NAME)
    return manifest
