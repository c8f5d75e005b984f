"""Plain values: :func:`to_plain` turns numpy scalars and arrays, paths, dates, tuples and sets
into the plain Python values that YAML documents (event folders, training sets) and the
catalog's BSON documents hold.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np

__all__ = ["to_plain"]


def to_plain(value: Any) -> Any:
    """Convert ``value`` into plain YAML/BSON-friendly Python values, recursively.

    numpy scalars become ``int``/``float``/``bool``, arrays and tuples/sets become lists,
    paths become strings, ``datetime.date`` (not datetime) becomes an ISO string, mapping keys
    become strings. Other values (str, int, float, bool, None, datetime, bson ObjectId) pass.

    Parameters
    ----------
    value
        Any value; mappings, lists, tuples and sets are converted item by item.

    Returns
    -------
    Any
        The plain value (a new container for mappings, sequences and sets).
    """
    if value is None or type(value) in (str, bool, int, float):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):  # IntEnum and friends
        return int(value)
    if isinstance(value, float):  # numpy.float64 is a float subclass
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, np.generic):
        return to_plain(value.item())
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((to_plain(v) for v in value), key=repr)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        return value.isoformat()
    return value
