"""An event folder as a training-set input: its files, shapes, channel, content hash and frames.

:func:`~deep_events_dagster.core.training_set.build_training_set` checks every catalog document
with these (a problem raises :class:`EventSkipped` with the skip reason) and describes each usable
event as a :class:`TrainingEvent`.

**Files.** The folder is the document's ``event_path`` (a Windows path is tried as POSIX too);
the images are ``images.tif`` (or ``.tiff``), the ground truth the document's ``label_file``,
else ``ground_truth.tif`` (or ``.tiff``). Images are ``T×H×W`` or ``T×C×H×W``, the ground truth
``T×H×W`` (a single frame may lack ``T``); both must agree in ``T``, ``H`` and ``W``.

**Channels.** ``T×C×H×W`` crops use channel ``channel_contrast`` (an integer index) when the
document gives one, else channel 0.

**Content hash.** Each event's content hash is BLAKE2b over ``images.tif``,
``ground_truth.tif`` and the document fields that shape its samples (frames, crop box, fps,
channel, labels, acquisition); it enters the training set's content address.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np
import tifffile

from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.plain_values import to_plain

__all__ = [
    "GROUND_TRUTH_CANDIDATES",
    "IMAGE_CANDIDATES",
    "SKIP_CHANNEL",
    "SKIP_NO_FILES",
    "SKIP_NO_FOLDER",
    "SKIP_SHAPES",
    "SKIP_UNREADABLE",
    "EventSkipped",
    "TrainingEvent",
    "content_hash",
    "event_channel",
    "event_folder",
    "event_label",
    "first_existing",
    "normalise_shapes",
    "read_event",
    "series_shape",
]

IMAGE_CANDIDATES = ("images.tif", "images.tiff")
GROUND_TRUTH_CANDIDATES = ("ground_truth.tif", "ground_truth.tiff")
_HASH_CHUNK = 1 << 20
# document fields that shape an event's samples (part of its content hash)
_CONTENT_FIELDS = (
    "frames",
    "crop_box",
    "fps",
    "channel_contrast",
    "label",
    "event_content",
    "acquisition_key",
)

# skip reasons of these checks (keys of TrainingSetResult.skipped)
SKIP_NO_FOLDER = "event folder not found"
SKIP_NO_FILES = "images or ground truth file missing"
SKIP_UNREADABLE = "unreadable TIFF"
SKIP_SHAPES = "images and ground truth disagree in shape"
SKIP_CHANNEL = "channel_contrast is not a channel of the crop"


@dataclass(frozen=True)
class TrainingEvent:
    """A usable event of a training set: its files, shape, channel, frame step, split and the
    frames whose ground truth its windows predict (``ends``)."""

    id: str
    document: Mapping[str, Any]
    images_path: Path
    ground_truth_path: Path
    n_frames: int
    height: int
    width: int
    channel: int | None
    step: int
    split: str
    ends: tuple[int, ...]


class EventSkipped(Exception):
    """A document this training set cannot use; ``reason`` is the skip reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def event_folder(document: Mapping[str, Any]) -> Path:
    """The existing folder of ``event_path`` (a Windows path also tried as POSIX)."""
    raw = document.get("event_path")
    if not raw:
        raise EventSkipped(SKIP_NO_FOLDER)
    folder = Path(str(raw))
    if not folder.is_dir() and "\\" in str(raw):
        folder = Path(PureWindowsPath(str(raw)).as_posix())
    if not folder.is_dir():
        raise EventSkipped(SKIP_NO_FOLDER)
    return folder


def first_existing(folder: Path, names: Iterable[str]) -> Path:
    """The first of ``names`` that is a file in ``folder``."""
    for name in names:
        if name and (folder / name).is_file():
            return folder / name
    raise EventSkipped(SKIP_NO_FILES)


def series_shape(path: Path) -> tuple[int, ...]:
    """Shape of a TIFF's first series, read from its header."""
    try:
        with tifffile.TiffFile(path) as tif:
            return tuple(int(n) for n in tif.series[0].shape)
    except Exception as exc:
        raise EventSkipped(SKIP_UNREADABLE) from exc


def normalise_shapes(
    images_shape: tuple[int, ...], gt_shape: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, int, int]]:
    """Images as ``(T, H, W)`` or ``(T, C, H, W)``, ground truth as ``(T, H, W)``."""
    gt = tuple(gt_shape)
    if len(gt) == 2:
        gt = (1, *gt)
    elif len(gt) == 4 and gt[1] == 1:
        gt = (gt[0], gt[2], gt[3])
    if len(gt) != 3:
        raise EventSkipped(SKIP_SHAPES)
    images = tuple(images_shape)
    if len(images) == 2:
        images = (1, *images)
    elif len(images) == 3 and images[0] != gt[0] and gt[0] == 1:
        images = (1, *images)  # one frame of C channels
    if len(images) not in (3, 4) or images[0] != gt[0] or images[-2:] != gt[-2:]:
        raise EventSkipped(SKIP_SHAPES)
    return images, gt  # type: ignore[return-value]


def event_channel(document: Mapping[str, Any], images_shape: tuple[int, ...]) -> int | None:
    """The channel of a ``T×C×H×W`` crop to use (None for ``T×H×W``)."""
    if len(images_shape) == 3:
        return None
    raw = document.get("channel_contrast")
    if raw is None or raw == "":
        return 0
    if isinstance(raw, bool):
        raise EventSkipped(SKIP_CHANNEL)
    try:
        channel = int(raw)
    except (TypeError, ValueError) as exc:
        raise EventSkipped(SKIP_CHANNEL) from exc
    if isinstance(raw, float) and not raw.is_integer():
        raise EventSkipped(SKIP_CHANNEL)
    if not 0 <= channel < images_shape[1]:
        raise EventSkipped(SKIP_CHANNEL)
    return channel


def content_hash(event: TrainingEvent) -> str:
    """BLAKE2b (32 hex digits) of the event's two files and the fields that shape it."""
    digest = hashlib.blake2b(digest_size=16)
    for tag, path in ((b"images", event.images_path), (b"ground_truth", event.ground_truth_path)):
        digest.update(tag + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    fields = {name: to_plain(event.document.get(name)) for name in _CONTENT_FIELDS}
    digest.update(json.dumps(fields, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()


def read_event(event: TrainingEvent) -> tuple[np.ndarray, np.ndarray]:
    """Raw images ``T×H×W`` (selected channel) and ground truth ``T×H×W`` of an event."""
    images = np.asarray(tifffile.imread(event.images_path))
    ground_truth = np.asarray(tifffile.imread(event.ground_truth_path))
    images_shape, gt_shape = normalise_shapes(images.shape, ground_truth.shape)
    images = images.reshape(images_shape)
    ground_truth = ground_truth.reshape(gt_shape)
    if event.channel is not None:
        images = images[:, event.channel]
    if images.shape != (event.n_frames, event.height, event.width):
        raise ConfigurationError(
            f"{event.images_path}: changed while the training set was built "
            f"(shape {images.shape}, expected {(event.n_frames, event.height, event.width)})"
        )
    return images, ground_truth


def event_label(document: Mapping[str, Any]) -> str:
    """``label``, else ``event_content``, else ``unknown``."""
    for name in ("label", "event_content"):
        value = document.get(name)
        if value not in (None, ""):
            return str(value)
    return "unknown"
