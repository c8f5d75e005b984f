"""Import event folders written by the original deep-events into a catalog collection.

The original kept one folder per event (``ev_<cell_line>_<microscope>_<contrast>_<id>/`` with
``images.tif``, ``ground_truth.tif`` and ``event_db.yaml``) and a MongoDB collection of the same
documents. Its ``event_path`` values point where the folders lived when they were written
(often a Windows share: ``\\\\server\\share\\...\\ev_...``), so a copied collection points
nowhere. :func:`import_legacy_events` rebuilds the collection from the folders themselves:

* every folder below the given one (the folder itself included) that holds an
  ``event_db.yaml`` is an event folder; hidden folders (``.tmp-…`` leftovers of interrupted
  writes) are skipped;
* the document keeps its ``_id`` (the original's 24-hex ObjectId string; a folder without one
  gets a deterministic 24-hex id from its resolved path) and all its fields, whatever its
  ``saving_scheme``;
* ``event_path`` becomes the folder's current absolute POSIX path, ``original_event_path``
  keeps the old value and ``imported_from`` is ``"legacy"``;
* ``label_file`` names the ground-truth file that exists (the original wrote
  ``ground_truth.tiff`` in the document but ``ground_truth.tif`` on disk); a differing old value
  is kept in ``original_label_file``;
* ``fps`` is made frames per second: folders written before the original's June 2023 fix hold
  the frame *interval* in seconds under ``fps`` (``fps: 5.0`` for an OME TimeIncrement of
  5000 ms). When the document's ``ome`` mapping gives the interval (``time_increment`` with
  its ``time_increment_unit``, seconds when absent), ``frame_interval_s`` is set to it and
  ``fps`` to its reciprocal; an ``fps`` that differed is kept in ``fps_as_written`` and the
  document counts as corrected (:attr:`LegacyImportReport.fps_corrected`). Without time
  information the file's ``fps`` is kept as is (it cannot be told which meaning it has); a
  document that already has ``frame_interval_s`` was written after the fix and is left alone;
* documents are upserted by ``_id`` (:meth:`EventCatalog.upsert_documents`): re-importing gives
  the same documents (counted as updated) and nothing else in the collection is touched.

A folder that cannot be imported (malformed YAML, not a mapping, a missing image or ground
truth file, an ``_id`` already given by another folder) is reported as a problem line naming
the folder; the other folders are still imported.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import yaml

from deep_events_dagster.catalog.catalog import EventCatalog
from deep_events_dagster.core.ome import frame_interval_seconds, frames_per_second

__all__ = [
    "IMPORTED_FROM",
    "LegacyImportReport",
    "correct_frame_rate",
    "find_event_folders",
    "import_legacy_events",
    "import_legacy_folders",
    "legacy_document",
    "path_id",
]

IMPORTED_FROM = "legacy"
EVENT_DB = "event_db.yaml"
IMAGES = "images.tif"
GROUND_TRUTH_CANDIDATES = ("ground_truth.tif", "ground_truth.tiff")
FPS = "fps"
FRAME_INTERVAL = "frame_interval_s"
FPS_AS_WRITTEN = "fps_as_written"
_HEX24 = re.compile(r"[0-9a-fA-F]{24}")
# a top-level ``_id:`` line, quoted or not (used when YAML turned an all-digit id into an int)
_RAW_ID = re.compile(r"""^_id:[ \t]*(['"]?)([0-9a-fA-F]{24})\1[ \t]*(?:#.*)?$""", re.MULTILINE)


@dataclass(frozen=True)
class LegacyImportReport:
    """What :func:`import_legacy_events` did.

    Attributes
    ----------
    imported
        Event folders written to the collection (``inserted + updated``).
    inserted
        Documents whose ``_id`` was not in the collection.
    updated
        Documents that replaced one with the same ``_id`` (a re-import).
    problems
        One line per folder that was not imported: ``"<folder>: <problem>"``.
    ids
        The imported documents' ids, in folder order.
    fps_corrected
        Imported documents whose ``fps`` was the frame interval and was replaced by frames
        per second derived from their ``ome.time_increment`` (old value in ``fps_as_written``).
    documents
        The imported documents as written (same order as ``ids``).
    """

    imported: int
    inserted: int
    updated: int
    problems: tuple[str, ...]
    ids: tuple[str, ...]
    fps_corrected: int = 0
    documents: tuple[dict[str, Any], ...] = field(default=(), repr=False)


class _FolderProblem(ValueError):
    """An event folder that cannot be imported; the message says why."""


def path_id(folder: str | Path) -> str:
    """Deterministic 24-hex id of an event folder without ``_id``: hash of its resolved path."""
    text = Path(folder).resolve().as_posix()
    return hashlib.sha1(f"legacy-event:{text}".encode()).hexdigest()[:24]


def find_event_folders(
    folders: Iterable[str | Path],
) -> tuple[list[Path], list[str]]:
    """Event folders (holding an ``event_db.yaml``) at or below each of ``folders``.

    Returns the folders, resolved, sorted within each root and without duplicates (nested or
    repeated roots), and problem lines (a root that is not a folder, a folder that cannot be
    listed, a root without any event folder). Symbolic links to folders are not followed;
    hidden folders are skipped.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    problems: list[str] = []
    for root in folders:
        root_path = Path(root).expanduser()
        if not root_path.is_dir():
            problems.append(f"{root_path}: not a folder")
            continue
        root_path = root_path.resolve()
        errors: list[OSError] = []
        here: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(root_path, onerror=errors.append):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if EVENT_DB in filenames:
                here.append(Path(dirpath))
        for exc in errors:
            problems.append(f"{exc.filename}: cannot list the folder ({exc.strerror or exc})")
        if not here and not errors:
            problems.append(f"{root_path}: no event folders (no {EVENT_DB} at or below it)")
        for path in sorted(here):
            if path not in seen:
                seen.add(path)
                found.append(path)
    return found, problems


def _decode(raw: bytes) -> str:
    """Text of an ``event_db.yaml``: UTF-8 (BOM allowed), UTF-16 with BOM, else Latin-1."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # old Windows files; every byte decodes


def _load_event_db(folder: Path) -> tuple[dict[str, Any], str]:
    path = folder / EVENT_DB
    try:
        text = _decode(path.read_bytes())
    except OSError as exc:
        raise _FolderProblem(f"cannot read {EVENT_DB}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise _FolderProblem(f"malformed {EVENT_DB}: {detail}") from exc
    if data is None:
        raise _FolderProblem(f"{EVENT_DB} is empty")
    if not isinstance(data, dict):
        raise _FolderProblem(f"{EVENT_DB} is not a mapping (got {type(data).__name__})")
    return data, text


def _document_id(data: Mapping[str, Any], text: str, folder: Path) -> str:
    if "_id" not in data or data["_id"] is None or data["_id"] == "":
        return path_id(folder)
    value = data["_id"]
    if isinstance(value, str) and value.strip():
        return value.strip()
    # YAML reads an unquoted all-digit id as an int (octal when it starts with 0): take the
    # id from the file's text instead
    match = _RAW_ID.search(text)
    if match:
        return match.group(2)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _FolderProblem(f"_id {value!r} is not a string")


def _file_name(value: Any) -> str | None:
    """The last component of a file name the original may have written as a Windows path."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    name = PureWindowsPath(text).name if "\\" in text else PurePosixPath(text).name
    return name or None


def _existing_file(folder: Path, names: Iterable[str | None]) -> Path | None:
    for name in dict.fromkeys(n for n in names if n):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _same_rate(written: Any, fps: float) -> bool:
    if isinstance(written, bool) or not isinstance(written, int | float):
        return False
    return math.isclose(float(written), fps, rel_tol=1e-6)


def correct_frame_rate(document: dict[str, Any]) -> bool:
    """Make a legacy document's ``fps`` frames per second, from its ``ome`` time information.

    Sets ``frame_interval_s`` (seconds, from ``ome.time_increment`` and its unit, or the
    planes' DeltaT when present) and ``fps = 1 / frame_interval_s``; an ``fps`` that differed
    is kept in ``fps_as_written`` (an existing ``fps_as_written`` is never overwritten). A
    document without usable time information, or that already has ``frame_interval_s``
    (written after the fix), is not changed.

    Parameters
    ----------
    document
        The event document, modified in place.

    Returns
    -------
    bool
        True when ``fps`` held a different value (the interval) and was corrected.
    """
    if FRAME_INTERVAL in document:
        return False
    ome = document.get("ome")
    interval = frame_interval_seconds(ome) if isinstance(ome, Mapping) else None
    fps = frames_per_second(interval)
    if interval is None or fps is None:
        return False
    written = document.get(FPS)  # absent or null: filled in, not a correction
    corrected = written is not None and not _same_rate(written, fps)
    if corrected:
        document.setdefault(FPS_AS_WRITTEN, written)
    document[FPS] = fps
    document[FRAME_INTERVAL] = interval
    return corrected


def legacy_document(folder: str | Path) -> dict[str, Any]:
    """The catalog document of one original event folder (see the module docstring).

    Raises
    ------
    ValueError
        The folder cannot be imported; the message says why (without the folder's name).
    """
    return _legacy_document(folder)[0]


def _legacy_document(folder: str | Path) -> tuple[dict[str, Any], bool]:
    """The document and whether its ``fps`` was corrected."""
    folder = Path(folder).resolve()
    data, text = _load_event_db(folder)
    images = folder / IMAGES
    if not images.is_file():
        raise _FolderProblem(f"{IMAGES} not found")
    if images.stat().st_size == 0:
        raise _FolderProblem(f"{IMAGES} is empty")
    label_name = _file_name(data.get("label_file"))
    label = _existing_file(folder, [label_name, *GROUND_TRUTH_CANDIDATES])
    if label is None:
        wanted = " or ".join(dict.fromkeys(n for n in (label_name, *GROUND_TRUTH_CANDIDATES) if n))
        raise _FolderProblem(f"ground truth not found ({wanted})")
    document = dict(data)
    document["_id"] = _document_id(data, text, folder)
    if "original_event_path" not in document:
        document["original_event_path"] = data.get("event_path")
    document["event_path"] = folder.as_posix()
    if data.get("label_file") != label.name:
        if "label_file" in data and "original_label_file" not in document:
            document["original_label_file"] = data["label_file"]
        document["label_file"] = label.name
    corrected = correct_frame_rate(document)
    document["imported_from"] = IMPORTED_FROM
    return document, corrected


def import_legacy_folders(
    catalog: EventCatalog, folders: Iterable[str | Path], collection: str
) -> LegacyImportReport:
    """Import the event folders at or below each of ``folders`` into ``collection``.

    Like :func:`import_legacy_events` for several roots at once: an event folder reached from
    two roots is imported once, and two folders with the same ``_id`` are a problem for the
    second one (in walking order) instead of one document overwriting the other.
    """
    event_folders, problems = find_event_folders(folders)
    documents: list[dict[str, Any]] = []
    owner: dict[str, Path] = {}
    corrected = 0
    for folder in event_folders:
        try:
            document, fps_corrected = _legacy_document(folder)
        except _FolderProblem as exc:
            problems.append(f"{folder}: {exc}")
            continue
        first = owner.get(document["_id"])
        if first is not None:
            problems.append(f"{folder}: _id {document['_id']} is also the id of {first}")
            continue
        owner[document["_id"]] = folder
        documents.append(document)
        corrected += fps_corrected
    result = catalog.upsert_documents(collection, documents)
    return LegacyImportReport(
        imported=len(documents),
        inserted=result.inserted,
        updated=result.replaced,
        problems=tuple(problems),
        ids=tuple(d["_id"] for d in documents),
        fps_corrected=corrected,
        documents=tuple(documents),
    )


def import_legacy_events(
    catalog: EventCatalog, folder: str | Path, collection: str
) -> LegacyImportReport:
    """Import original deep-events event folders at or below ``folder`` into ``collection``.

    Parameters
    ----------
    catalog
        The open catalog (the embedded backend's lock is taken by the upsert).
    folder
        An event folder, or any folder with event folders below it.
    collection
        The target collection; documents with other ids in it are never touched.

    Returns
    -------
    LegacyImportReport
        Counts, the imported ids, and one problem line per folder that was not imported
        (also for ``folder`` itself when it is not a folder or holds no event folder).
    """
    return import_legacy_folders(catalog, [folder], collection)
