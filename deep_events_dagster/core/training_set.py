"""Training sets: catalog event documents → normalised, windowed train/eval stacks on disk.

:func:`build_training_set` takes the documents a ``db_prompt`` selected (the caller queries the
catalog) and the run's settings, and writes a content-addressed folder
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

Rules (DESIGN.md, "Training sets"):

**Split.** Each event keeps the ``dataset_split`` (``train``/``eval``) its document already has.
Otherwise :func:`assign_split` hashes the event id (BLAKE2b, salted): the event goes to ``eval``
when the hash, as a number in [0, 1), is below ``train_val_split`` (the fraction of events held
out, default 0.2, as in the original), else to ``train`` — the same id always lands on the same
side, in any order and on any machine, and the eval share converges to ``train_val_split``.
With ``group_by_acquisition`` the hash key is the document's group key (``acquisition_key``,
else ``original_path``, else its id), so all events of one acquisition share a side: a group
whose members already carry splits takes their majority (ties: the hash), and members stored
with the other split are moved (they appear in ``new_splits``). When the hashes leave one side
empty (a handful of events or acquisitions), the event or group without a stored split whose hash
is nearest to that side is moved there, so small sets still get held-out data. Splits the caller
should write
back to the catalog are returned as ``new_splits`` (``{_id: split}``). A document whose
``dataset_split`` is some other value (e.g. ``test``) is left out and never overwritten.

**Subset.** ``subset_fraction`` (≤ 1) keeps a deterministic, nested subset of the *training*
events (an independent salted hash of the id below the fraction); eval events are all kept, so
models trained on different fractions are compared on the same held-out data (as the original's
``subset``).

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

**Normalisation** (version :data:`NORMALISATION_VERSION`), per frame, on float32 copies (inputs
are never modified): images — non-finite values clipped to the frame's finite range (float16
crops of the original overflow to ``inf``), minimum subtracted, divided by the maximum when that
is above 0.2; masks — divided by 255 when the frame's maximum is above 1 (the original's GT was
scaled 0–254), clipped to [0, 1]; with ``smooth = σ > 0`` (the original's option) each mask
frame is then blurred with a Gaussian of σ pixels and rescaled to its former maximum, so a peak
of 1 stays 1 and a sample stays positive exactly when it was.

**Channels.** ``T×C×H×W`` crops use channel ``channel_contrast`` (an integer index) when the
document gives one, else channel 0.

**Sizes.** Every crop of a training set has the same ``H×W``: the most common size among the
usable events (ties: the larger area); crops of another size are skipped, never resized.

**Content address.** Each event's content hash is BLAKE2b over ``images.tif``,
``ground_truth.tif`` and the document fields that shape its samples (frames, crop box, fps,
channel, labels, acquisition). The folder id hashes the sorted ``(id, content hash, split,
frame step)`` of the events used plus the parameters that shape the data (window length, ``fps``,
``train_val_split``, ``group_by_acquisition``, ``subset_fraction``, ``smooth``; not
``n_timepoints`` itself, so models that need fewer frames share the set) and the normalisation and
layout versions. Skipped documents do not enter it, so a document without
usable data does not invalidate a training set. An existing complete folder is reused as is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np
import tifffile
import yaml
from scipy import ndimage

from deep_events_dagster.core.crops import to_plain
from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.fsutil import TEMP_PREFIX

__all__ = [
    "COMPLETE_NAME",
    "DB_PROMPT_NAME",
    "MANIFEST_NAME",
    "NORMALISATION_VERSION",
    "SPLITS",
    "TrainingSetParameters",
    "TrainingSetResult",
    "assign_split",
    "assign_splits",
    "build_training_set",
    "frame_step",
    "group_key",
    "in_subset",
    "is_complete",
    "montage",
    "normalize_image_frames",
    "normalize_mask_frames",
    "read_manifest",
    "smooth_mask_frames",
    "window_ends",
]

NORMALISATION_VERSION = 1
LAYOUT_VERSION = 2  # 2: fps in frames per second, max_n_timepoints is the window length
FORMAT_NAME = "deep-events-training-set"
SPLITS = ("train", "eval")
# the original's frame-rate rule (load_folder)
SAME_RATE_RANGE = (0.5, 2.0)
MAX_SLOWER_RATIO = 1.5
UNFIT_FRACTION = (0.25, 0.75)
IMAGE_SCALE_THRESHOLD = 0.2
MANIFEST_NAME = "manifest.yaml"
DB_PROMPT_NAME = "db_prompt.yaml"
COMPLETE_NAME = "COMPLETE"
FOLDER_PREFIX = "ts_"
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

# skip reasons (keys of TrainingSetResult.skipped)
SKIP_NO_ID = "no _id"
SKIP_DUPLICATE = "duplicate _id"
SKIP_OTHER_SPLIT = "dataset_split is neither train nor eval"
SKIP_SUBSET = "outside subset_fraction"
SKIP_NO_FPS = "no frame rate (fps) in the document"
SKIP_SLOWER = "recorded more than 1.5x slower than the requested fps"
SKIP_NOT_MULTIPLE = "event fps is not close to a whole multiple of the requested fps"
SKIP_NO_FOLDER = "event folder not found"
SKIP_NO_FILES = "images or ground truth file missing"
SKIP_UNREADABLE = "unreadable TIFF"
SKIP_SHAPES = "images and ground truth disagree in shape"
SKIP_CHANNEL = "channel_contrast is not a channel of the crop"
SKIP_TOO_SHORT = "fewer frames than one window needs"
SKIP_SIZE = "crop size differs from the training set's"


# -- parameters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingSetParameters:
    """The settings that shape a training set's data (all part of its content address).

    Attributes
    ----------
    n_timepoints
        Frames per sample of the model that asked (≥ 1).
    fps
        Requested frame rate in frames per second, or None for no filter.
    train_val_split
        Fraction of events held out for evaluation, in [0, 1).
    group_by_acquisition
        Keep each acquisition's events on one side of the split.
    subset_fraction
        Fraction (0, 1] of training events kept.
    max_n_timepoints
        Frames per stored window (≥ ``n_timepoints``), or None for ``n_timepoints``.
    smooth
        σ in pixels of the Gaussian blur of the ground truth (0: none).
    """

    n_timepoints: int = 1
    fps: float | None = None
    train_val_split: float = 0.2
    group_by_acquisition: bool = False
    subset_fraction: float = 1.0
    max_n_timepoints: int | None = None
    smooth: float = 0.0

    @property
    def window(self) -> int:
        """Frames per stored sample: ``max_n_timepoints`` when given, else ``n_timepoints``."""
        return max(self.n_timepoints, self.max_n_timepoints or 0)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> TrainingSetParameters:
        """Read the training-set parameters out of a run's settings (other keys are ignored).

        ``subset`` (the original's name) is read as ``subset_fraction``; ``false``/``null``
        mean 1.

        Raises
        ------
        ConfigurationError
            A value has the wrong type or range.
        """
        settings = dict(settings or {})

        def number(key: str, value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(f"training setting {key} must be a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise ConfigurationError(f"training setting {key} must be finite, got {value!r}")
            return float(value)

        def integer(key: str, value: Any) -> int:
            number_value = number(key, value)
            if not number_value.is_integer() or number_value < 1:
                raise ConfigurationError(
                    f"training setting {key} must be a whole number ≥ 1, got {value!r}"
                )
            return int(number_value)

        n_timepoints = integer("n_timepoints", settings.get("n_timepoints", 1))
        fps_raw = settings.get("fps")
        fps = None if fps_raw is None else number("fps", fps_raw)
        if fps is not None and fps <= 0:
            raise ConfigurationError(f"training setting fps must be > 0, got {fps_raw!r}")
        split = number("train_val_split", settings.get("train_val_split", 0.2))
        if not 0.0 <= split < 1.0:
            raise ConfigurationError(
                f"training setting train_val_split (fraction of events held out) must be in "
                f"[0, 1), got {split!r}"
            )
        group = settings.get("group_by_acquisition", False)
        if not isinstance(group, bool):
            raise ConfigurationError(
                f"training setting group_by_acquisition must be true or false, got {group!r}"
            )
        subset_raw = settings.get("subset_fraction", settings.get("subset", 1.0))
        if subset_raw is None or subset_raw is False:
            subset_raw = 1.0
        subset = number("subset_fraction", subset_raw)
        if not 0.0 < subset <= 1.0:
            raise ConfigurationError(
                f"training setting subset_fraction must be in (0, 1], got {subset_raw!r}"
            )
        cap_raw = settings.get("max_n_timepoints")
        cap = None if cap_raw is None else integer("max_n_timepoints", cap_raw)
        if cap is not None and cap < n_timepoints:
            raise ConfigurationError(
                f"training setting max_n_timepoints ({cap}) is the longest window the training "
                f"set serves; it must be ≥ n_timepoints ({n_timepoints})"
            )
        smooth_raw = settings.get("smooth")
        if smooth_raw is None or smooth_raw is False:
            smooth_raw = 0.0
        smooth = number("smooth", smooth_raw)
        if smooth < 0:
            raise ConfigurationError(
                f"training setting smooth (σ in pixels, 0 = off) must be ≥ 0, got {smooth_raw!r}"
            )
        return cls(
            n_timepoints=n_timepoints,
            fps=fps,
            train_val_split=split,
            group_by_acquisition=group,
            subset_fraction=subset,
            max_n_timepoints=cap,
            smooth=smooth,
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for YAML."""
        return {
            "n_timepoints": self.n_timepoints,
            "fps": self.fps,
            "train_val_split": self.train_val_split,
            "group_by_acquisition": self.group_by_acquisition,
            "subset_fraction": self.subset_fraction,
            "max_n_timepoints": self.max_n_timepoints,
            "smooth": self.smooth,
            "window": self.window,
        }

    def address_dict(self) -> dict[str, Any]:
        """The values that shape the stored data (``n_timepoints`` only through the window)."""
        data = self.as_dict()
        del data["n_timepoints"], data["max_n_timepoints"]
        return data


# -- deterministic choices -------------------------------------------------------------------


def _unit_hash(salt: str, key: str) -> float:
    """BLAKE2b of ``salt:key`` as a number in [0, 1)."""
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign_split(key: Any, train_val_split: float) -> str:
    """``"eval"`` when the salted hash of ``key`` falls below ``train_val_split``, else ``"train"``.

    Deterministic: depends only on ``str(key)`` and the fraction. Raising the fraction only
    moves events from train to eval.
    """
    return "eval" if _unit_hash("deep-events-split-v1", str(key)) < train_val_split else "train"


def in_subset(key: Any, fraction: float) -> bool:
    """Whether ``key`` belongs to the deterministic ``fraction`` subset (nested in fraction)."""
    return fraction >= 1.0 or _unit_hash("deep-events-subset-v1", str(key)) < fraction


def group_key(document: Mapping[str, Any]) -> str:
    """The acquisition an event belongs to: ``acquisition_key``, else ``original_path``, else
    ``event:<_id>`` (its own group)."""
    for name in ("acquisition_key", "original_path"):
        value = document.get(name)
        if value not in (None, ""):
            return str(value)
    return f"event:{document.get('_id')}"


def assign_splits(
    documents: Sequence[Mapping[str, Any]],
    *,
    train_val_split: float,
    group_by_acquisition: bool = False,
) -> tuple[dict[str, str], dict[Any, str]]:
    """Split for every document with an ``_id`` and a stored split that is train, eval or none.

    A *unit* is one event, or with ``group_by_acquisition`` one group (:func:`group_key`). A
    unit with stored splits keeps them (a group: their majority; ties: the hash); the others
    get :func:`assign_split` of their key. When that leaves one side empty although there are
    at least two units and ``train_val_split > 0`` (few events or acquisitions), the unit
    without a stored split whose hash is nearest to the empty side moves there — still
    deterministic, and kept afterwards once the caller stores the splits.

    Returns
    -------
    splits
        ``str(_id)`` → ``"train"``/``"eval"``.
    new_splits
        ``_id`` (as given) → split, for documents whose stored ``dataset_split`` is missing or
        (with grouping) moved; what the caller writes back to the catalog.
    """
    eligible = [
        d
        for d in documents
        if d.get("_id") is not None and d.get("dataset_split") in (None, "", *SPLITS)
    ]
    units: dict[str, list[Mapping[str, Any]]] = {}
    for doc in eligible:
        key = group_key(doc) if group_by_acquisition else str(doc["_id"])
        units.setdefault(key, []).append(doc)
    unit_split: dict[str, str] = {}
    hashed: list[str] = []
    for key, members in units.items():
        stored = Counter(d.get("dataset_split") for d in members if d.get("dataset_split"))
        if stored and stored["train"] != stored["eval"]:
            unit_split[key] = "train" if stored["train"] > stored["eval"] else "eval"
        else:
            unit_split[key] = assign_split(key, train_val_split)
            if not stored:
                hashed.append(key)
    if len(units) >= 2 and train_val_split > 0 and hashed:
        order = sorted(hashed, key=lambda k: (_unit_hash("deep-events-split-v1", k), k))
        sides = set(unit_split.values())
        if "eval" not in sides:
            unit_split[order[0]] = "eval"
        elif "train" not in sides:
            unit_split[order[-1]] = "train"
    splits: dict[str, str] = {}
    new_splits: dict[Any, str] = {}
    for key, members in units.items():
        for doc in members:
            splits[str(doc["_id"])] = unit_split[key]
            if doc.get("dataset_split") != unit_split[key]:
                new_splits[doc["_id"]] = unit_split[key]
    return splits, new_splits


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


# -- normalisation ---------------------------------------------------------------------------


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


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingSetResult:
    """What :func:`build_training_set` made (or found).

    Attributes
    ----------
    path
        The training set folder ``<out_root>/ts_<id>``.
    id
        16 hex digits: the content address (also a good Dagster data version).
    reused
        True when a complete folder with this id existed and nothing was written.
    n_train, n_eval
        Samples (windows) in the train and eval stacks.
    counts_by_acquisition, counts_by_label
        Events used, per acquisition (``group_key``) and per ``label`` (else
        ``event_content``, else ``unknown``).
    positives, negatives
        Samples whose target mask has any non-zero pixel / is all zero (frames of an event
        without ground-truth signal are negatives).
    train_positives, eval_positives
        Positive samples per split.
    skipped
        Reason → number of documents not used (this call's documents).
    new_splits
        ``_id`` → split to store in the catalog as ``dataset_split``.
    """

    path: Path
    id: str
    reused: bool
    n_train: int
    n_eval: int
    counts_by_acquisition: dict[str, int] = field(hash=False)
    counts_by_label: dict[str, int] = field(hash=False)
    positives: int
    negatives: int
    train_positives: int
    eval_positives: int
    skipped: dict[str, int] = field(hash=False)
    new_splits: dict[Any, str] = field(hash=False)


@dataclass(frozen=True)
class _Event:
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


class _Skip(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# -- reading events --------------------------------------------------------------------------


def _event_folder(document: Mapping[str, Any]) -> Path:
    raw = document.get("event_path")
    if not raw:
        raise _Skip(SKIP_NO_FOLDER)
    folder = Path(str(raw))
    if not folder.is_dir() and "\\" in str(raw):
        folder = Path(PureWindowsPath(str(raw)).as_posix())
    if not folder.is_dir():
        raise _Skip(SKIP_NO_FOLDER)
    return folder


def _first_existing(folder: Path, names: Iterable[str]) -> Path:
    for name in names:
        if name and (folder / name).is_file():
            return folder / name
    raise _Skip(SKIP_NO_FILES)


def _series_shape(path: Path) -> tuple[int, ...]:
    try:
        with tifffile.TiffFile(path) as tif:
            return tuple(int(n) for n in tif.series[0].shape)
    except Exception as exc:
        raise _Skip(SKIP_UNREADABLE) from exc


def _normalise_shapes(
    images_shape: tuple[int, ...], gt_shape: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, int, int]]:
    """Images as ``(T, H, W)`` or ``(T, C, H, W)``, ground truth as ``(T, H, W)``."""
    gt = tuple(gt_shape)
    if len(gt) == 2:
        gt = (1, *gt)
    elif len(gt) == 4 and gt[1] == 1:
        gt = (gt[0], gt[2], gt[3])
    if len(gt) != 3:
        raise _Skip(SKIP_SHAPES)
    images = tuple(images_shape)
    if len(images) == 2:
        images = (1, *images)
    elif len(images) == 3 and images[0] != gt[0] and gt[0] == 1:
        images = (1, *images)  # one frame of C channels
    if len(images) not in (3, 4) or images[0] != gt[0] or images[-2:] != gt[-2:]:
        raise _Skip(SKIP_SHAPES)
    return images, gt  # type: ignore[return-value]


def _channel(document: Mapping[str, Any], images_shape: tuple[int, ...]) -> int | None:
    if len(images_shape) == 3:
        return None
    raw = document.get("channel_contrast")
    if raw is None or raw == "":
        return 0
    if isinstance(raw, bool):
        raise _Skip(SKIP_CHANNEL)
    try:
        channel = int(raw)
    except (TypeError, ValueError) as exc:
        raise _Skip(SKIP_CHANNEL) from exc
    if isinstance(raw, float) and not raw.is_integer():
        raise _Skip(SKIP_CHANNEL)
    if not 0 <= channel < images_shape[1]:
        raise _Skip(SKIP_CHANNEL)
    return channel


def _content_hash(event: _Event) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for tag, path in ((b"images", event.images_path), (b"ground_truth", event.ground_truth_path)):
        digest.update(tag + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    fields = {name: to_plain(event.document.get(name)) for name in _CONTENT_FIELDS}
    digest.update(json.dumps(fields, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()


def _read_event(event: _Event) -> tuple[np.ndarray, np.ndarray]:
    """Raw images ``T×H×W`` (selected channel) and ground truth ``T×H×W`` of an event."""
    images = np.asarray(tifffile.imread(event.images_path))
    ground_truth = np.asarray(tifffile.imread(event.ground_truth_path))
    images_shape, gt_shape = _normalise_shapes(images.shape, ground_truth.shape)
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


def _label(document: Mapping[str, Any]) -> str:
    for name in ("label", "event_content"):
        value = document.get(name)
        if value not in (None, ""):
            return str(value)
    return "unknown"


# -- manifest and folder ---------------------------------------------------------------------


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


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The ``manifest.yaml`` of a training set folder."""
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


def _result(
    folder: Path,
    manifest: Mapping[str, Any],
    *,
    reused: bool,
    skipped: Mapping[str, int],
    new_splits: Mapping[Any, str],
) -> TrainingSetResult:
    counts = manifest.get("counts", {})
    return TrainingSetResult(
        path=folder,
        id=str(manifest["id"]),
        reused=reused,
        n_train=int(counts.get("train_samples", 0)),
        n_eval=int(counts.get("eval_samples", 0)),
        counts_by_acquisition={str(k): int(v) for k, v in counts.get("by_acquisition", {}).items()},
        counts_by_label={str(k): int(v) for k, v in counts.get("by_label", {}).items()},
        positives=int(counts.get("positives", 0)),
        negatives=int(counts.get("negatives", 0)),
        train_positives=int(counts.get("train_positives", 0)),
        eval_positives=int(counts.get("eval_positives", 0)),
        skipped=dict(skipped),
        new_splits=dict(new_splits),
    )


def _write_folder(
    tmp: Path,
    events: Sequence[_Event],
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
        raw_images, raw_gt = _read_event(event)
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
                "label": _label(document),
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
        "by_label": dict(sorted(Counter(_label(e.document) for e in events).items())),
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


def _assign_unused(
    documents: Sequence[Mapping[str, Any]],
    splits: Mapping[str, str],
    new_splits: dict[Any, str],
    params: TrainingSetParameters,
) -> None:
    """Give documents this set cannot use (and that have no split yet) a split too, so that
    every selected event keeps one in the catalog: their acquisition's side when grouping and a
    used event of it has one, else the hash of their key."""
    group_split: dict[str, str] = {}
    if params.group_by_acquisition:
        for document in documents:
            split = splits.get(str(document.get("_id")))
            if split is not None:
                group_split.setdefault(group_key(document), split)
    for document in documents:
        raw_id = document.get("_id")
        if raw_id is None or str(raw_id) in splits or document.get("dataset_split"):
            continue
        if params.group_by_acquisition:
            key = group_key(document)
            split = group_split.get(key) or assign_split(key, params.train_val_split)
        else:
            split = assign_split(str(raw_id), params.train_val_split)
        new_splits.setdefault(raw_id, split)


# -- building --------------------------------------------------------------------------------


def build_training_set(
    documents: Sequence[Mapping[str, Any]],
    *,
    settings: Mapping[str, Any],
    out_root: str | Path,
    db_prompt: Mapping[str, Any],
    collection: str,
) -> TrainingSetResult:
    """Build (or reuse) the content-addressed training set of ``documents``.

    Parameters
    ----------
    documents
        Catalog event documents (``_id``, ``event_path`` and optionally ``dataset_split``,
        ``fps``, ``channel_contrast``, ``label_file``, ``acquisition_key``…). Not modified.
    settings
        The run's training settings; see :class:`TrainingSetParameters` for the keys used.
    out_root
        Folder that holds training sets (``ts_<id>`` folders are created in it).
    db_prompt, collection
        What selected the documents; recorded in ``db_prompt.yaml``.

    Returns
    -------
    TrainingSetResult

    Raises
    ------
    ConfigurationError
        Bad settings, or no document gave any sample (the message lists the skip reasons).
    """
    params = TrainingSetParameters.from_settings(settings)
    out_root = Path(out_root)
    skipped_events: list[tuple[str, str]] = []
    usable: list[tuple[Mapping[str, Any], dict[str, Any]]] = []
    seen: set[str] = set()
    ordered = sorted(documents, key=lambda d: str(d.get("_id")))
    for document in ordered:
        raw_id = document.get("_id")
        event_id = str(raw_id)
        try:
            if raw_id is None:
                raise _Skip(SKIP_NO_ID)
            if event_id in seen:
                raise _Skip(SKIP_DUPLICATE)
            seen.add(event_id)
            if document.get("dataset_split") not in (None, "", *SPLITS):
                raise _Skip(SKIP_OTHER_SPLIT)
            step, reason = frame_step(document.get("fps"), params.fps)
            if step is None:
                raise _Skip(reason or SKIP_NO_FPS)
            folder = _event_folder(document)
            label_file = document.get("label_file")
            images_path = _first_existing(folder, IMAGE_CANDIDATES)
            gt_names = [str(label_file)] if isinstance(label_file, str) else []
            gt_path = _first_existing(folder, [*gt_names, *GROUND_TRUTH_CANDIDATES])
            images_shape, gt_shape = _normalise_shapes(
                _series_shape(images_path), _series_shape(gt_path)
            )
            channel = _channel(document, images_shape)
            ends = window_ends(gt_shape[0], params.window, step)
            if len(ends) == 0:
                raise _Skip(SKIP_TOO_SHORT)
        except _Skip as skip:
            skipped_events.append((event_id, skip.reason))
            continue
        usable.append(
            (
                document,
                {
                    "id": event_id,
                    "document": document,
                    "images_path": images_path,
                    "ground_truth_path": gt_path,
                    "n_frames": gt_shape[0],
                    "height": gt_shape[1],
                    "width": gt_shape[2],
                    "channel": channel,
                    "step": step,
                    "ends": tuple(int(t) for t in ends),
                },
            )
        )

    if usable:
        sizes = Counter((f["height"], f["width"]) for _, f in usable)
        height, width = max(sizes, key=lambda hw: (sizes[hw], hw[0] * hw[1], hw))
    else:
        height = width = 0
    same_size = []
    for document, fields in usable:
        if (fields["height"], fields["width"]) == (height, width):
            same_size.append((document, fields))
        else:
            skipped_events.append((fields["id"], SKIP_SIZE))
    # splits among the events this set can use, so that a side is never left empty by events
    # that are skipped anyway (e.g. the only held-out event recorded at another frame rate)
    splits, new_splits = assign_splits(
        [document for document, _ in same_size],
        train_val_split=params.train_val_split,
        group_by_acquisition=params.group_by_acquisition,
    )
    _assign_unused(documents, splits, new_splits, params)
    events = []
    for _, fields in same_size:
        split = splits[fields["id"]]
        if split == "train" and not in_subset(fields["id"], params.subset_fraction):
            skipped_events.append((fields["id"], SKIP_SUBSET))
            continue
        events.append(_Event(split=split, **fields))
    skipped_events.sort()
    skipped = dict(sorted(Counter(reason for _, reason in skipped_events).items()))
    if not events:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in skipped.items()) or "no documents"
        raise ConfigurationError(
            f"no usable event among {len(documents)} document(s) of {collection} ({reasons})"
        )

    hashes = {event.id: _content_hash(event) for event in events}
    address = json.dumps(
        {
            "format": FORMAT_NAME,
            "version": LAYOUT_VERSION,
            "normalisation": NORMALISATION_VERSION,
            "parameters": params.address_dict(),
            "events": sorted([e.id, hashes[e.id], e.split, e.step] for e in events),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    set_id = hashlib.blake2b(address.encode("utf-8"), digest_size=8).hexdigest()
    target = out_root / f"{FOLDER_PREFIX}{set_id}"
    if is_complete(target, set_id):
        return _result(
            target, read_manifest(target), reused=True, skipped=skipped, new_splits=new_splits
        )

    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{target.name}-", dir=out_root))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the folder is shared data
        manifest = _write_folder(
            tmp,
            events,
            hashes,
            set_id=set_id,
            params=params,
            height=height,
            width=width,
            skipped_events=skipped_events,
            db_prompt=db_prompt,
            collection=collection,
        )
        reused = False
        if target.exists():
            if is_complete(target, set_id):  # another process finished first
                reused = True
                manifest = read_manifest(target)
            else:  # a broken folder under our name: swap it out
                old = out_root / f"{TEMP_PREFIX}old-{target.name}-{os.getpid()}"
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(tmp, target)
            except OSError:
                if not is_complete(target, set_id):
                    raise
                reused = True
                manifest = read_manifest(target)
        with contextlib.suppress(OSError):
            fd = os.open(out_root, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _result(target, manifest, reused=reused, skipped=skipped, new_splits=new_splits)


# -- montage ---------------------------------------------------------------------------------

_OVERLAY = np.array((255, 64, 64), dtype=np.float32)


def _tile(frame: np.ndarray, mask: np.ndarray, stride: int) -> np.ndarray:
    frame = np.asarray(frame, dtype=np.float32)[::stride, ::stride]
    inside = np.asarray(mask)[::stride, ::stride] > 0.5
    low, high = (float(frame.min()), float(frame.max())) if frame.size else (0.0, 1.0)
    grey = np.clip((frame - low) / (high - low if high > low else 1.0), 0, 1) * 255
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgb[inside] = 0.6 * rgb[inside] + 0.4 * _OVERLAY
    outline = inside & ~ndimage.binary_erosion(inside)
    rgb[outline] = _OVERLAY
    return rgb.astype(np.uint8)


def montage(path: str | Path, n: int = 16, *, tile_size: int = 96, gap: int = 2) -> np.ndarray:
    """``Y×X×3`` uint8 grid of ``n`` samples of a training set, for a UI thumbnail.

    Samples are evenly spaced over the train then eval stacks; each tile is the last frame of
    the window (contrast-stretched), the mask (> 0.5) tinted red with a red outline. Tiles are
    subsampled to at most ``tile_size`` pixels a side.
    """
    path = Path(path)
    stacks = []
    for split in SPLITS:
        images = np.load(path / f"{split}_images.npy", mmap_mode="r")
        masks = np.load(path / f"{split}_masks.npy", mmap_mode="r")
        stacks.append((images, masks))
    total = sum(len(images) for images, _ in stacks)
    if total == 0 or n < 1:
        return np.zeros((tile_size, tile_size, 3), dtype=np.uint8)
    picks = np.unique(np.round(np.linspace(0, total - 1, min(n, total))).astype(np.int64))
    height, width = stacks[0][0].shape[-2:] if len(stacks[0][0]) else stacks[1][0].shape[-2:]
    stride = max(1, math.ceil(max(height, width) / tile_size))
    tiles = []
    n_train = len(stacks[0][0])
    for index in picks:
        images, masks = stacks[0] if index < n_train else stacks[1]
        local = int(index if index < n_train else index - n_train)
        tiles.append(_tile(images[local, -1], masks[local], stride))
    th, tw = tiles[0].shape[:2]
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    grid = np.full(
        (rows * th + (rows - 1) * gap, cols * tw + (cols - 1) * gap, 3), 32, dtype=np.uint8
    )
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[r * (th + gap) : r * (th + gap) + th, c * (tw + gap) : c * (tw + gap) + tw] = tile
    return grid
