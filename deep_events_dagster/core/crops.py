"""Event folders (``ev_*``) in the original deep-events layout: writing and reading them.

An event folder holds ``images.tif`` (the movie crop, movie dtype), ``ground_truth.tif``
(float32 GT crop) and ``event_db.yaml`` (the event document). It is written into a temporary
folder and swapped into place, so a crash never leaves a half-written ``ev_*`` folder.
Uncompressed stacks are written as tifffile's bytes without going through tifffile for each
file (see :class:`_StackLayout`).

Movie windows are read by :mod:`~deep_events_dagster.core.movie_reader`, event ids and folder
names come from :mod:`~deep_events_dagster.core.event_ids`, plain values from
:mod:`~deep_events_dagster.core.plain_values`.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import yaml

from deep_events_dagster.core.errors import InputError
from deep_events_dagster.core.fsutil import atomic_directory
from deep_events_dagster.core.plain_values import to_plain
from deep_events_dagster.core.yaml_text import dump_yaml

__all__ = [
    "EVENT_DB_NAME",
    "GROUND_TRUTH_NAME",
    "IMAGES_NAME",
    "read_event_folder",
    "write_event_folder",
]

IMAGES_NAME = "images.tif"
GROUND_TRUTH_NAME = "ground_truth.tif"
EVENT_DB_NAME = "event_db.yaml"

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class _StackLayout:
    """The bytes tifffile writes around the pixels of an uncompressed stack of one shape.

    For an uncompressed image tifffile puts every pixel in one contiguous block; the header,
    the tags and the page directories before and after it depend only on the shape, dtype
    and axes. Writing ``before + pixels + after`` gives byte for byte the file
    ``tifffile.imwrite`` gives, without its ~0.5 ms of Python per file.
    """

    before: bytes
    after: bytes


def _imwrite_bytes(array: np.ndarray, axes: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, photometric="minisblack", metadata={"axes": axes}, **options)
    return buffer.getvalue()


@functools.lru_cache(maxsize=64)
def _stack_layout(shape: tuple[int, ...], dtype: str, axes: str) -> _StackLayout | None:
    """The layout of ``shape``/``dtype`` stacks, or None when tifffile does not write the
    pixels as one block there (then the caller writes through tifffile)."""
    zeros = np.zeros(shape, dtype=np.dtype(dtype))
    # every byte 0xFF, whatever the item size (a view of a shape-sized uint8 array would
    # shrink the last axis, and fail on odd widths of wider types)
    ones = np.full(zeros.nbytes, 0xFF, dtype=np.uint8).view(np.dtype(dtype)).reshape(shape)
    first, second = _imwrite_bytes(zeros, axes), _imwrite_bytes(ones, axes)
    if len(first) != len(second):
        return None
    with tifffile.TiffFile(io.BytesIO(first)) as tif:
        offset = tif.series[0].dataoffset
    differing = np.flatnonzero(np.frombuffer(first, np.uint8) != np.frombuffer(second, np.uint8))
    end = None if offset is None else offset + zeros.nbytes
    if end is None or differing.size != zeros.nbytes:
        return None
    if differing[0] != offset or differing[-1] != end - 1:
        return None
    return _StackLayout(before=first[:offset], after=first[end:])


@functools.lru_cache(maxsize=64)
def _zero_ground_truth(shape: tuple[int, int, int]) -> bytes:
    """``ground_truth.tif`` of an all-zero crop (every negative has one of a few shapes)."""
    return _ground_truth_bytes(np.zeros(shape, np.float32))


def _ground_truth_bytes(ground_truth: np.ndarray) -> bytes:
    # mostly zeros (all zeros for negatives): zstd makes it ~400× smaller and is faster than
    # writing it raw; tifffile (with imagecodecs) and Bio-Formats read it
    return _imwrite_bytes(
        np.ascontiguousarray(ground_truth, dtype=np.float32),
        "TYX",
        compression="zstd",
        compressionargs={"level": 1},
    )


def _write_file(path: Path, *parts: bytes | memoryview) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        views = [memoryview(part).cast("B") for part in parts]
        total = sum(v.nbytes for v in views)
        written = os.writev(fd, views)
        while written < total:  # short write (rare): finish part by part
            done, remaining = 0, []
            for view in views:
                if done + view.nbytes > written:
                    remaining.append(view[max(0, written - done) :])
                done += view.nbytes
            views, total = remaining, sum(v.nbytes for v in remaining)
            written = os.writev(fd, views)
    finally:
        os.close(fd)


def _write_stack(path: Path, array: np.ndarray, axes: str) -> None:
    """``tifffile.imwrite(path, array, photometric="minisblack", metadata={"axes": axes})``,
    faster (see :class:`_StackLayout`)."""
    array = np.ascontiguousarray(array)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    layout = _stack_layout(array.shape, array.dtype.str, axes) if array.size else None
    if layout is None:
        tifffile.imwrite(path, array, photometric="minisblack", metadata={"axes": axes})
        return
    _write_file(path, layout.before, array, layout.after)


def write_event_folder(
    event_dir: str | Path,
    *,
    images: np.ndarray,
    ground_truth: np.ndarray | None,
    event_db: Mapping[str, Any],
    durable: bool = True,
) -> Path:
    """Write one event folder atomically and return its path.

    Parameters
    ----------
    event_dir
        Target folder (``…/event_data_<kind>/ev_…``). An existing folder is replaced as a whole.
    images
        Movie crop, ``T×Y×X`` or ``T×C×Y×X``, written bit-exactly in its own dtype.
    ground_truth
        GT crop ``T×Y×X``, written as float32 (zstd-compressed); None for an all-zero crop
        of the images' frames and size (a negative).
    event_db
        The event document, written to ``event_db.yaml`` (plain values, keys in given order).
    durable
        fsync each file before the folder is renamed into place. A caller writing many
        folders can pass False and call ``os.sync()`` once when done (before it records them).

    Raises
    ------
    ValueError
        The arrays have the wrong rank or disagree in frames or size.

    Notes
    -----
    Safe to call from several threads for different folders: the work is mostly system calls
    and copies that release the GIL.
    """
    event_dir = Path(event_dir)
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be T×Y×X or T×C×Y×X, got shape {images.shape}")
    gt_shape = (images.shape[0], *images.shape[-2:])
    if ground_truth is not None:
        ground_truth = np.asarray(ground_truth)
        if ground_truth.ndim != 3:
            raise ValueError(f"ground_truth must be T×Y×X, got shape {ground_truth.shape}")
        if ground_truth.shape != gt_shape:
            raise ValueError(
                f"images {images.shape} and ground_truth {ground_truth.shape} disagree in "
                f"frames or size"
            )
    text = dump_yaml(to_plain(dict(event_db)))
    gt_bytes = (
        _zero_ground_truth(gt_shape) if ground_truth is None else _ground_truth_bytes(ground_truth)
    )
    with atomic_directory(event_dir, durable=durable) as tmp:
        _write_stack(tmp / IMAGES_NAME, images, "TYX" if images.ndim == 3 else "TCYX")
        _write_file(tmp / GROUND_TRUTH_NAME, gt_bytes)
        _write_file(tmp / EVENT_DB_NAME, text.encode("utf-8"))
        if durable:
            for name in (IMAGES_NAME, GROUND_TRUTH_NAME, EVENT_DB_NAME):
                fd = os.open(tmp / name, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
    return event_dir


def read_event_folder(event_dir: str | Path) -> dict[str, Any]:
    """Load ``event_db.yaml`` of an event folder.

    Parameters
    ----------
    event_dir
        The event folder (``…/event_data_<kind>/ev_…``).

    Returns
    -------
    dict
        The event document as ``yaml`` loads it.

    Raises
    ------
    InputError
        The file is missing, not valid YAML, or not a mapping (the message names the file).
    """
    path = Path(event_dir) / EVENT_DB_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(path, "event_db.yaml not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise InputError(path, f"malformed YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(path, f"expected a mapping, got {type(data).__name__}")
    return data
