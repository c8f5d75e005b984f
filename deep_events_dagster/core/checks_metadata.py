"""Check of an acquisition's ``db.yaml``: what training-set queries select on is there.

:func:`metadata_complete` looks for the required keys (:data:`REQUIRED_KEYS`), a stain or labels
(:data:`STAIN_KEYS`, unless the contrast is brightfield) and the platform's defaults
(:data:`DEFAULT_KEYS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deep_events_dagster.core.metadata import DEFAULTS

__all__ = [
    "BRIGHTFIELD_NAMES",
    "DEFAULT_KEYS",
    "REQUIRED_KEYS",
    "STAIN_KEYS",
    "STAIN_OR_LABELS",
    "MetadataCompleteness",
    "metadata_complete",
]

REQUIRED_KEYS: tuple[str, ...] = ("cell_line", "microscope", "contrast")
"""``db.yaml`` keys every acquisition needs (training sets are selected on them)."""
STAIN_KEYS: tuple[str, ...] = ("stain", "labels")
"""At least one of these is needed, unless the contrast is brightfield (nothing stained)."""
DEFAULT_KEYS: tuple[str, ...] = tuple(DEFAULTS)
"""Keys the platform fills with defaults (``typically_use``, ``augmented``, ``scale_csv``,
``type``); missing means ``db.yaml`` was not written by this platform or was edited."""
BRIGHTFIELD_NAMES = frozenset({"brightfield", "bf", "bright_field", "bright-field", "bright field"})
"""Contrast names (lower case) that need no stain or labels."""
STAIN_OR_LABELS = "stain or labels"


@dataclass(frozen=True)
class MetadataCompleteness:
    """Result of :func:`metadata_complete`.

    Attributes
    ----------
    passed
        Nothing is missing.
    missing
        Missing or empty keys, in the order checked; ``"stain or labels"`` when both are.
    checked
        Every key (or key group) looked at.
    brightfield
        The contrast is brightfield, so stain / labels were not required.
    message
        One sentence.
    """

    passed: bool
    missing: tuple[str, ...]
    checked: tuple[str, ...]
    brightfield: bool
    message: str


def _empty(value: Any) -> bool:
    """None, blank text and containers holding only empty values are empty; ``False`` and
    ``0`` are values."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return all(_empty(v) for v in value)
    return False


def _is_brightfield(contrast: Any) -> bool:
    values = contrast if isinstance(contrast, list | tuple | set | frozenset) else [contrast]
    return any(isinstance(v, str) and v.strip().lower() in BRIGHTFIELD_NAMES for v in values)


def metadata_complete(metadata: Mapping[str, Any]) -> MetadataCompleteness:
    """Check that ``db.yaml`` holds what training-set queries select on.

    Required and non-empty: :data:`REQUIRED_KEYS` (``cell_line``, ``microscope``,
    ``contrast``); ``stain`` or ``labels`` (at least one; not required when the contrast is
    brightfield); and the platform's defaults :data:`DEFAULT_KEYS` (``typically_use``,
    ``augmented``, ``scale_csv``, ``type``). ``False`` and ``0`` count as values; ``None``,
    blank text and empty lists do not.

    Parameters
    ----------
    metadata
        The contents of ``db.yaml``.

    Returns
    -------
    MetadataCompleteness
    """
    missing: list[str] = [key for key in REQUIRED_KEYS if _empty(metadata.get(key))]
    brightfield = _is_brightfield(metadata.get("contrast"))
    if not brightfield and all(_empty(metadata.get(key)) for key in STAIN_KEYS):
        missing.append(STAIN_OR_LABELS)
    missing.extend(key for key in DEFAULT_KEYS if _empty(metadata.get(key)))
    checked = (*REQUIRED_KEYS, STAIN_OR_LABELS, *DEFAULT_KEYS)
    if missing:
        message = (
            f"db.yaml lacks {', '.join(missing)}: name the folders with the keys.yaml "
            "vocabulary or add them to a db_manual.yaml"
        )
    else:
        message = (
            "db.yaml has cell line, microscope, contrast, "
            + ("brightfield (no stain needed)" if brightfield else "stain/labels")
            + " and the defaults"
        )
    return MetadataCompleteness(
        passed=not missing,
        missing=tuple(missing),
        checked=checked,
        brightfield=brightfield,
        message=message,
    )
