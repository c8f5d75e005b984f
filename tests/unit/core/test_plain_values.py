"""Tests for core.plain_values: to_plain."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import yaml

from deep_events_dagster.core.plain_values import to_plain


def test_to_plain_converts_numpy_and_paths():
    value = {
        1: np.uint16(5),
        "a": (np.float32(0.5), [np.int64(2), Path("x/y")]),
        "arr": np.arange(3),
        "flag": np.bool_(False),
        "when": datetime.date(2024, 2, 29),
        "stamp": datetime.datetime(2024, 2, 29, 12, 0),
    }
    plain = to_plain(value)
    assert plain == {
        "1": 5,
        "a": [0.5, [2, "x/y"]],
        "arr": [0, 1, 2],
        "flag": False,
        "when": "2024-02-29",
        "stamp": datetime.datetime(2024, 2, 29, 12, 0),
    }
    assert type(plain["1"]) is int and type(plain["a"][0]) is float
    assert type(plain["flag"]) is bool
    yaml.safe_dump(plain)  # no numpy or Path left
