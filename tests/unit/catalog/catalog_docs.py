"""Event documents for the catalog tests (shared by the protocol and per-backend tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deep_events_dagster.core.event_ids import event_id

MONGO_ENV = "DEEP_EVENTS_TEST_MONGO_URI"


def make_doc(key: str, n: int, *, extraction: str = "automatic", **extra) -> dict:
    """An event document of partition ``key`` with numpy values, a tuple and a path inside."""
    box = (n, n + 1, n + 256, n + 257)
    return {
        "_id": event_id(key, "points", (n, n + 10), box, extraction),
        "acquisition_key": key,
        "extraction_type": extraction,
        "frames": (np.int64(n), np.int64(n + 10)),
        "crop_box": np.array(box),
        "event_path": Path("/data/event_data_points") / f"ev_{n}",
        "fps": np.float32(2.5),
        "type": "event",
        **extra,
    }
