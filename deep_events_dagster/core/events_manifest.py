"""An acquisition's events manifest (``events_<kind>.yaml``) and the catalog documents of its
events: reading it (:func:`load_events_manifest_data`, :func:`read_events_manifest`,
:func:`event_documents`), one event's document (:func:`event_document`) and replacing the
manifest once the folders are written (:func:`replace_events_manifest`)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from deep_events_dagster.core import crops, detections, regions
from deep_events_dagster.core.acquisition_ref import AcquisitionRef
from deep_events_dagster.core.errors import InputError
from deep_events_dagster.core.event_folders import EventRecord
from deep_events_dagster.core.fsutil import atomic_write_text
from deep_events_dagster.core.movie_sources import MovieSource

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
NEGATIVE_CONTENT = "none"


def load_events_manifest_data(path: Path) -> dict[str, Any]:
    """Parse an events manifest (JSON text, which is also valid YAML; older ones are YAML).

    Parameters
    ----------
    path
        The manifest (``events_<kind>.yaml``).

    Returns
    -------
    dict
        ``acquisition_key``, ``kind``, ``event_data`` and the ``events`` entries.

    Raises
    ------
    InputError
        The manifest is corrupt or not a mapping.
    """
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        data = yaml.load(text, Loader=_YAML_LOADER) or {}
    except yaml.YAMLError as exc:
        raise InputError(path, f"events manifest is corrupt ({exc}); delete it to rebuild") from exc
    if not isinstance(data, dict):
        raise InputError(path, "events manifest is not a mapping; delete it to rebuild")
    return data


def read_events_manifest(path: Path) -> list[dict[str, Any]]:
    """The entries of an acquisition's events manifest (``events_<kind>.yaml``): the events
    last written for that kind (empty when none or unreadable: the caller is about to replace
    it, and stale folders are then left for a later run). A training set's ``manifest.yaml``
    is read by :func:`~deep_events_dagster.core.training_set_folder.read_training_set_manifest`."""
    if not path.is_file():
        return []
    try:
        return list(load_events_manifest_data(path).get("events", []))
    except InputError:
        return []


def event_document(
    metadata: dict[str, Any],
    *,
    ref: AcquisitionRef,
    kind: str,
    event_id: str,
    folder: Path,
    frames: tuple[int, int],
    box: regions.Box,
    positive: bool,
    detections: Sequence[detections.Detection],
    channel: int | None,
    source: MovieSource | None = None,
) -> dict[str, Any]:
    """The catalog document of one event folder (also its ``event_db.yaml``).

    Parameters
    ----------
    metadata
        The acquisition's ``db.yaml``, copied into the document (but its ``_id`` and ``type``).
    ref, kind
        The acquisition and the annotation kind.
    event_id, folder, frames, box
        The event's id, folder, frames ``[start, stop)`` and crop box.
    positive
        An event (else a negative: ``label`` ``negative``, ``event_content`` ``none``).
    detections
        The detections linked into the event (none for a negative).
    channel
        The annotated channel (``channel_contrast``), or None.
    source
        The variant the crops come from, recorded in the document (see :class:`MovieSource`).

    Returns
    -------
    dict
        The document (not yet converted to plain values).
    """
    document = {k: v for k, v in metadata.items() if k not in ("_id", "type")}
    document.update(
        {
            "_id": event_id,
            "event_path": folder.as_posix(),
            "frames": [int(frames[0]), int(frames[1])],
            "crop_box": [int(v) for v in box],
            "original_file": metadata.get("original_file"),
            "label_file": "ground_truth.tif",
            "type": "event",
            "extraction_type": "automatic",
            "event_content": metadata.get("event_content", kind) if positive else NEGATIVE_CONTENT,
            "label": kind if positive else "negative",
            "channel_contrast": channel,
            "dataset_split": metadata.get("dataset_split"),
            "kind": kind,
            "acquisition_key": ref.key,
            "detections": [[int(d.frame), float(d.y), float(d.x)] for d in detections],
        }
    )
    if source is not None:
        source.annotate(document, positive=positive)
    return document


def replace_events_manifest(
    path: Path,
    *,
    ref: AcquisitionRef,
    kind: str,
    event_root: Path,
    records: Sequence[EventRecord],
    documents: Mapping[str, dict[str, Any]],
    entry_extras: Mapping[str, dict[str, Any]],
) -> int:
    """Replace the kind's events manifest by one listing ``records``, then remove the folders
    of the previous manifest that are no longer listed.

    Parameters
    ----------
    path
        The manifest (``events_<kind>.yaml``; JSON text, which YAML readers also read).
    ref, kind
        The acquisition and the kind whose events these are.
    event_root
        The folder holding the event folders (``event_data_<kind>``).
    records
        The event folders written, in manifest order.
    documents, entry_extras
        Per event id: its catalog document, and more fields of its manifest entry.

    Returns
    -------
    int
        The number of stale event folders removed.
    """
    previous = read_events_manifest(path)
    manifest = {
        "acquisition_key": ref.key,
        "kind": kind,
        "event_data": event_root.as_posix(),
        "events": [
            {
                "_id": r.event_id,
                "folder": r.folder.name,
                "positive": r.positive,
                "frames": list(r.frames),
                "crop_box": list(r.crop_box),
                **entry_extras[r.event_id],
                "document": documents[r.event_id],
            }
            for r in records
        ],
    }
    # JSON (a subset of YAML, so YAML readers still work): 20× faster than PyYAML here
    atomic_write_text(path, json.dumps(manifest, indent=1))
    kept = {r.folder.name for r in records}
    removed = 0
    for entry in previous:
        name = entry.get("folder")
        if name and name not in kept and (event_root / name).is_dir():
            shutil.rmtree(event_root / name, ignore_errors=True)
            removed += 1
    return removed


def event_documents(manifest_path: Path) -> list[dict[str, Any]]:
    """The catalog documents of the events a manifest lists (as written to their event_db.yaml).

    Raises
    ------
    FileNotFoundError
        The manifest is missing (event crops were never materialised).
    """
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: no events manifest; materialise event_crops")
    data = load_events_manifest_data(manifest_path)
    event_root = Path(data["event_data"])
    return [
        e["document"] if "document" in e else crops.read_event_folder(event_root / e["folder"])
        for e in data.get("events", [])
    ]
