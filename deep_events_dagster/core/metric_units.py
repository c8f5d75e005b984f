"""From stacks of samples to evaluation units, before any threshold: the maximum of each sample,
the maximum of each unit (a sample, or the samples of one event), and which samples of a split's
stack form each event (from a training set manifest's rows).

The event and frame sweeps of :mod:`deep_events_dagster.core.metrics` (``max_sweep``,
``event_counts``) score units by these maxima.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["event_groups", "sample_max", "unit_scores"]

# samples' elements read per block from a (memory-mapped) stack
_CHUNK = 1 << 22


def sample_max(values: Any) -> np.ndarray:
    """The maximum of each sample of a stack (``N×…`` → ``N``, float64).

    A 1-D array is taken as already reduced (returned as float64). A memory map is read one
    block of samples at a time.

    Raises
    ------
    ValueError
        A value is NaN, or a sample has no elements.
    """
    values = np.asarray(values) if not isinstance(values, np.ndarray) else values
    if values.ndim == 0:
        raise ValueError("expected one value per sample, got a scalar")
    if values.ndim == 1:
        out = values.astype(np.float64)
    else:
        n = len(values)
        per_sample = int(np.prod(values.shape[1:]))
        if per_sample == 0:
            raise ValueError(f"samples of shape {values.shape[1:]} have no elements")
        out = np.empty(n, dtype=np.float64)
        step = max(1, _CHUNK // per_sample)
        for start in range(0, n, step):
            block = np.asarray(values[start : start + step]).reshape(-1, per_sample)
            out[start : start + step] = block.max(axis=1)
    if np.isnan(out).any():
        raise ValueError("values contain NaN")
    return out


def unit_scores(values: Any, groups: Any = None) -> np.ndarray:
    """The maximum of each unit: of each sample, or of each group of samples (event).

    Parameters
    ----------
    values
        Per-sample maxima (``N``), or whole samples (``N×…``, reduced by :func:`sample_max`).
    groups
        None: one unit per sample, in order. Else ``N`` labels (event ids, or group indices
        such as :func:`event_groups` returns): one unit per distinct label, in sorted label
        order (``np.unique``), its score the maximum over its samples.

    Returns
    -------
    numpy.ndarray
        float64 scores, one per unit.

    Raises
    ------
    ValueError
        ``groups`` is not one label per sample, or a value is NaN.
    """
    maxima = sample_max(values)
    if groups is None:
        return maxima
    labels = np.asarray(groups)
    if labels.ndim != 1 or len(labels) != len(maxima):
        raise ValueError(
            f"{len(maxima)} samples but groups of shape {labels.shape}; one label per sample"
        )
    _, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(-1)
    out = np.full(int(inverse.max()) + 1 if len(inverse) else 0, -np.inf)
    np.maximum.at(out, inverse, maxima)
    return out


def event_groups(
    events: Sequence[Mapping[str, Any]] | None, n_samples: int, *, split: str = "eval"
) -> np.ndarray | None:
    """Group index of every sample of a split's stack, from a training set manifest's events.

    Parameters
    ----------
    events
        The manifest's ``events`` rows (``_id``, ``split``, ``first_sample``, ``n_samples``).
    n_samples
        Number of samples in the split's stack.
    split
        Which split's rows to use.

    Returns
    -------
    numpy.ndarray or None
        int64 of length ``n_samples``: sample ``i`` belongs to the ``k``-th row of ``split``
        (rows with no samples are left out). None when ``events`` has no rows at all (e.g.
        synthetic training sets): the caller falls back to one unit per sample.

    Raises
    ------
    ValueError
        A row lacks ``first_sample``/``n_samples``, rows overlap or leave the stack, or a sample
        belongs to no event.
    """
    if not events:
        return None
    groups = np.full(int(n_samples), -1, dtype=np.int64)
    k = 0
    for row in events:
        if row.get("split") != split:
            continue
        try:
            first, count = int(row["first_sample"]), int(row["n_samples"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"event {row.get('_id')!r}: no valid first_sample/n_samples ({error})"
            ) from error
        if count <= 0:
            continue
        if first < 0 or first + count > n_samples:
            raise ValueError(
                f"event {row.get('_id')!r}: samples {first}…{first + count - 1} outside the "
                f"{split} stack of {n_samples}"
            )
        if (groups[first : first + count] >= 0).any():
            raise ValueError(f"event {row.get('_id')!r}: its samples overlap another event's")
        groups[first : first + count] = k
        k += 1
    missing = np.flatnonzero(groups < 0)
    if len(missing):
        raise ValueError(
            f"{len(missing)} of {n_samples} {split} samples belong to no {split} event "
            f"(first: {int(missing[0])})"
        )
    return groups
