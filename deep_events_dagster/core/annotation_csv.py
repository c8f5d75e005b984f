"""What napari point and shapes CSVs share: file discovery, units, table and column parsing.

Annotation CSVs of a kind are the ``<kind>*.csv`` files directly in the acquisition folder
(:func:`find_annotation_files`). Coordinates are converted to pixels according to ``scale_csv``
(from ``db.yaml``, per kind with :func:`resolve_scale_csv`):

* ``True`` — the CSV holds physical units (µm); y and x are divided by ``physical_size_x``;
* ``False`` — the CSV holds pixels; used as is;
* ``"inverse"`` — y and x are multiplied by ``physical_size_x``.

Rows are numbered from 0, the first line after the header (napari's own ``index``); messages
also give the 1-based line number in the file (header = line 1). napari writes frames as floats
(``3.0``); they must be integral within ``1e-6``.

The points are read by :mod:`deep_events_dagster.core.annotations`, the shapes (lines) by
:mod:`deep_events_dagster.core.annotation_lines`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from deep_events_dagster.core.errors import AnnotationError, ConfigurationError

__all__ = [
    "FRAME_TOLERANCE",
    "LAYOUT_3",
    "LAYOUT_4",
    "ScaleMode",
    "coordinates",
    "find_annotation_files",
    "integral_values",
    "metadata_pixel_size",
    "normalise_scale_mode",
    "numeric_column",
    "read_table",
    "resolve_scale_csv",
    "row_text",
    "scale_factor",
]

ScaleMode = bool | Literal["inverse"]

FRAME_TOLERANCE = 1e-6

LAYOUT_3 = ("axis-0", "axis-1", "axis-2")
LAYOUT_4 = ("axis-0", "axis-1", "axis-2", "axis-3")
"""The axis columns of 3-axis (frame, y, x) and 4-axis (frame, channel, y, x) files."""


def find_annotation_files(folder: str | Path, kind: str) -> list[Path]:
    """Return the annotation CSVs ``<kind>*.csv`` directly in ``folder``, sorted by name.

    The prefix match is case-sensitive and the search is not recursive. A missing folder
    yields an empty list.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.name.startswith(kind) and p.name.endswith(".csv")
    ]
    return sorted(found, key=lambda p: p.name)


def normalise_scale_mode(value: object) -> ScaleMode:
    """Turn a ``scale_csv`` value (bool, 0/1, "true"/"false"/"inverse", None) into a mode.

    ``None`` means the default, ``True``. Anything else raises :class:`ConfigurationError`.
    """
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "inverse":
            return "inverse"
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
    raise ConfigurationError(
        f"scale_csv must be true, false or 'inverse' (or a mapping kind → one of these), "
        f"got {value!r}"
    )


def resolve_scale_csv(scale_csv: object, kind: str) -> ScaleMode:
    """Return the scale mode for annotation ``kind``.

    Parameters
    ----------
    scale_csv
        The ``scale_csv`` value from ``db.yaml``: a bool (or "inverse") for all kinds, or a
        mapping kind → bool/"inverse". A kind missing from the mapping gets ``True``.
    kind
        Annotation kind (CSV file-name prefix).
    """
    if isinstance(scale_csv, Mapping):
        return normalise_scale_mode(scale_csv.get(kind, True))
    return normalise_scale_mode(scale_csv)


def row_text(row: int) -> str:
    """``"row 3 (line 5)"``: a 0-based data row and its 1-based line in the file."""
    return f"row {row} (line {row + 2})"


def numeric_column(path: Path, df: pd.DataFrame, column: str) -> np.ndarray:
    """A column as finite floats; non-numeric, NaN or infinite values raise, naming the row."""
    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    spelled_nan = raw.str.strip().str.lower().isin(["nan", "-nan", "+nan"]).to_numpy()
    bad_text = np.isnan(values) & raw.notna().to_numpy() & ~spelled_nan
    if bad_text.any():
        row = int(np.flatnonzero(bad_text)[0])
        raise AnnotationError(
            path,
            f"non-numeric value {raw.iloc[row]!r} in column {column}, {row_text(row)}",
        )
    not_finite = ~np.isfinite(values)
    if not_finite.any():
        row = int(np.flatnonzero(not_finite)[0])
        what = "missing value (NaN)" if np.isnan(values[row]) else f"infinite value {values[row]}"
        raise AnnotationError(path, f"{what} in column {column}, {row_text(row)}")
    return values


def integral_values(path: Path, values: np.ndarray, column: str, what: str) -> np.ndarray:
    """Values as integers; one farther than :data:`FRAME_TOLERANCE` from one raises."""
    rounded = np.round(values)
    off = np.abs(values - rounded) > FRAME_TOLERANCE
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise AnnotationError(
            path,
            f"{what} must be a whole number, got {values[row]!r} in column {column}, "
            f"{row_text(row)}",
        )
    return rounded.astype(np.int64)


def scale_factor(path: Path, scale_csv: object, physical_size_x: float | None) -> float:
    """The factor turning CSV coordinates into pixels (see the module docstring)."""
    mode = normalise_scale_mode(scale_csv)
    if mode is False:
        return 1.0
    valid = (
        physical_size_x is not None
        and isinstance(physical_size_x, (int, float, np.number))
        and math.isfinite(float(physical_size_x))
        and float(physical_size_x) > 0
    )
    if not valid:
        raise AnnotationError(
            path,
            f"scale_csv is {mode!r} but the movie's physical_size_x is "
            f"{'missing' if physical_size_x is None else repr(physical_size_x)}; "
            "set scale_csv: false if the CSV is in pixels",
        )
    size = float(physical_size_x)  # type: ignore[arg-type]
    return 1.0 / size if mode is True else size


def read_table(path: Path, noun: str) -> pd.DataFrame:
    """The CSV as strings (empty cells NaN), column names stripped."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise AnnotationError(path, f"file is empty (no header, no {noun})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise AnnotationError(path, f"not a readable CSV: {exc}") from None
    except OSError as exc:
        raise AnnotationError(path, f"cannot read file: {exc}") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def coordinates(
    path: Path, df: pd.DataFrame, layout: tuple[str, ...], factor: float
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """``(frames, channels or None, ys, xs)`` of every row, y and x scaled to pixels."""
    frames = integral_values(path, numeric_column(path, df, "axis-0"), "axis-0", "frame")
    if layout is LAYOUT_4:
        channels = integral_values(path, numeric_column(path, df, "axis-1"), "axis-1", "channel")
        ys = numeric_column(path, df, "axis-2")
        xs = numeric_column(path, df, "axis-3")
    else:
        channels = None
        ys = numeric_column(path, df, "axis-1")
        xs = numeric_column(path, df, "axis-2")
    if factor != 1.0:
        ys = ys * factor
        xs = xs * factor
    return frames, channels, ys, xs


def metadata_pixel_size(metadata: Mapping[str, Any], physical_size_x: float | None) -> float | None:
    """The pixel size of ``db.yaml``'s ``ome`` mapping, else ``physical_size_x``."""
    return (metadata.get("ome") or {}).get("physical_size_x", physical_size_x)
