"""Event identity and naming: :func:`event_id`, the deterministic 24-hex id of an event
window, and :func:`event_folder_name`, the ``ev_<cell_line>_<microscope>_<contrast>_<id>``
folder name of the original deep-events layout.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from deep_events_dagster.core.plain_values import to_plain

if TYPE_CHECKING:
    from deep_events_dagster.core.regions import Box

__all__ = ["event_folder_name", "event_id"]

_UNSAFE = re.compile(r"[^a-z0-9._-]+")


def _name_field(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, list | tuple | set | frozenset):
        items = [str(to_plain(v)) for v in value if v is not None and str(v) != ""]
        text = "-".join(items)
    else:
        text = str(to_plain(value))
    text = _UNSAFE.sub("-", text.strip().lower()).strip("-")
    return text if text and text not in (".", "..") else "unknown"


def event_folder_name(metadata: Mapping[str, Any], event_id: str) -> str:
    """Folder name ``ev_<cell_line>_<microscope>_<contrast>_<id>`` as in the original layout.

    Each field may be a list (items joined with ``-``), a string, or missing (``unknown``). The
    name is lower case and keeps only letters, digits, ``-``, ``_`` and ``.``; every other run
    of characters becomes ``-``.

    Parameters
    ----------
    metadata
        The acquisition's metadata; ``cell_line``, ``microscope`` and ``contrast`` are used.
    event_id
        The event's id (see :func:`event_id`), the last field of the name.

    Returns
    -------
    str
        The folder name, e.g. ``ev_cos7_zeiss_sim_0123456789abcdef01234567``.
    """
    fields = [_name_field(metadata.get(key)) for key in ("cell_line", "microscope", "contrast")]
    return "_".join(["ev", *fields, _name_field(event_id)])


def event_id(
    acquisition_key: str,
    kind: str,
    frames: tuple[int, int],
    box: Box,
    extraction: str = "automatic",
) -> str:
    """Deterministic 24-hex event id (a valid MongoDB ObjectId string).

    The id is the 12-byte BLAKE2b digest of a canonical JSON string of the acquisition key, the
    annotation kind, the frame range ``[start, stop)``, the box ``(x0, y0, x1, y1)`` and the
    extraction type, so re-running an extraction gives the same ids and any change of window
    gives a new one.

    Parameters
    ----------
    acquisition_key
        The acquisition's key (its partition key, see
        :func:`~deep_events_dagster.core.acquisitions.acquisition_key`).
    kind
        The annotation kind; ingestion appends the ground truth's variant (``kind|variant``)
        when there is one.
    frames
        The frame range ``[start, stop)``.
    box
        The crop box ``(x0, y0, x1, y1)``, half-open.
    extraction
        The extraction type (``"automatic"`` unless stated).

    Returns
    -------
    str
        24 lower-case hex digits.
    """
    start, stop = (int(v) for v in frames)
    x0, y0, x1, y1 = (int(v) for v in box)
    canonical = json.dumps(
        [str(acquisition_key), str(kind), [start, stop], [x0, y0, x1, y1], str(extraction)],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=12).hexdigest()
