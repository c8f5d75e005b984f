"""Tests for core.event_ids: event folder names and deterministic event ids."""

from __future__ import annotations

import re

import numpy as np
import pytest

from deep_events_dagster.core.event_ids import event_folder_name, event_id


def test_event_folder_name_fields():
    eid = "0123456789abcdef01234567"
    assert (
        event_folder_name({"cell_line": "COS7", "microscope": "zeiss", "contrast": "sim"}, eid)
        == f"ev_cos7_zeiss_sim_{eid}"
    )
    assert (
        event_folder_name({"cell_line": ["cos7", "U2OS"], "microscope": ["isim"]}, eid)
        == f"ev_cos7-u2os_isim_unknown_{eid}"
    )
    assert event_folder_name({}, eid) == f"ev_unknown_unknown_unknown_{eid}"
    assert event_folder_name({"cell_line": None, "microscope": [], "contrast": ""}, eid) == (
        f"ev_unknown_unknown_unknown_{eid}"
    )
    name = event_folder_name(
        {"cell_line": "HeLa wt/ko", "microscope": "Nikon:Ti2 (60x)", "contrast": "..Ph é"},
        eid,
    )
    assert name == f"ev_hela-wt-ko_nikon-ti2-60x_..ph_{eid}"
    assert re.fullmatch(r"[a-z0-9._-]+", name)


def test_event_id_deterministic_and_distinct():
    base = event_id("cos7/acq1", "points", (3, 13), (10, 20, 266, 276))
    assert re.fullmatch(r"[0-9a-f]{24}", base)
    assert base == event_id("cos7/acq1", "points", (3, 13), (10, 20, 266, 276))
    assert base == event_id(
        "cos7/acq1", "points", (np.int64(3), np.int64(13)), tuple(np.array([10, 20, 266, 276]))
    )
    assert base == event_id("cos7/acq1", "points", (3, 13), (10, 20, 266, 276), "automatic")
    others = {
        event_id("cos7/acq2", "points", (3, 13), (10, 20, 266, 276)),
        event_id("cos7/acq1", "spots", (3, 13), (10, 20, 266, 276)),
        event_id("cos7/acq1", "points", (3, 14), (10, 20, 266, 276)),
        event_id("cos7/acq1", "points", (4, 13), (10, 20, 266, 276)),
        event_id("cos7/acq1", "points", (3, 13), (11, 20, 267, 276)),
        event_id("cos7/acq1", "points", (3, 13), (10, 21, 266, 277)),
        event_id("cos7/acq1", "points", (3, 13), (10, 20, 266, 276), "manual"),
    }
    assert base not in others and len(others) == 7
    bson = pytest.importorskip("bson")
    assert str(bson.ObjectId(base)) == base
