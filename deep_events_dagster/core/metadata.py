"""Acquisition metadata (``db.yaml``): OME fields, folder-name inference, ``db_manual.yaml``."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from deep_events_dagster.core.errors import MetadataError
from deep_events_dagster.core.fsutil import atomic_write_text
from deep_events_dagster.core.ome import MovieInfo, frames_per_second, ome_for_db

DB_FILE = "db.yaml"
MANUAL_FILE = "db_manual.yaml"
INFERRED_CATEGORIES = ("cell_line", "microscope", "contrast", "stain", "labels")
DEFAULTS: dict[str, Any] = {
    "typically_use": True,
    "augmented": False,
    "scale_csv": True,
    "type": "original",
}
FPS = "fps"
"""Frame rate in frames per second (the original's key since its June 2023 fix)."""
FRAME_INTERVAL = "frame_interval_s"
"""Frame interval in seconds, ``1 / fps``."""
_TOKEN_SPLIT = re.compile(r"[_\-.\s]+")
_DATE = re.compile(r"^(?:19|20)?\d{6}$")


@dataclass(frozen=True)
class Vocabulary:
    """Folder-name tokens per category; ``aliases`` maps a lower-case alias to its name."""

    aliases: Mapping[str, Mapping[str, str]]

    def names(self, category: str) -> list[str]:
        """Canonical names of a category, in file order."""
        return list(dict.fromkeys(self.aliases.get(category, {}).values()))


def _load_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MetadataError(path, f"cannot read ({exc})") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = str(exc).replace("\n", " ")
        raise MetadataError(path, f"malformed YAML ({detail})") from exc


def load_vocabulary(extra: str | Path | None = None) -> Vocabulary:
    """The packaged ``keys.yaml``, extended by a user copy when given and present.

    Raises
    ------
    MetadataError
        When a keys file is not a mapping of category → list of alias lists.
    """
    packaged = resources.files("deep_events_dagster.core").joinpath("keys.yaml").read_text("utf-8")
    sources: list[tuple[str, Any]] = [("keys.yaml (packaged)", yaml.safe_load(packaged))]
    if extra is not None and Path(extra).is_file():
        sources.append((str(extra), _load_yaml(Path(extra))))
    aliases: dict[str, dict[str, str]] = {}
    for source, data in sources:
        if not isinstance(data, dict):
            raise MetadataError(source, "must be a mapping of category to lists of aliases")
        for category, entries in data.items():
            if not isinstance(entries, list):
                raise MetadataError(source, f"category {category!r} must be a list")
            table = aliases.setdefault(str(category), {})
            for entry in entries:
                names = [entry] if isinstance(entry, str) else entry
                if not isinstance(names, list) or not names:
                    raise MetadataError(source, f"bad entry {entry!r} under {category!r}")
                canonical = str(names[0]).lower()
                canonical = table.get(canonical, canonical)
                for alias in names:
                    table[str(alias).lower()] = canonical
    return Vocabulary(aliases=aliases)


def folder_tokens(name: str) -> list[str]:
    """Lower-case tokens of a folder name, split on ``_ - .`` and whitespace."""
    return [t for t in _TOKEN_SPLIT.split(name.lower()) if t]


def infer_from_folders(folders: Iterable[str], vocabulary: Vocabulary) -> dict[str, Any]:
    """Infer date and categories from folder names, listed from the root down.

    A multi-token alias (``spinning_disk``) matches consecutive tokens. The date is the
    nearest 6- or 8-digit token. Categories are lists of canonical names in order of
    first appearance; categories with no match are absent.
    """
    inferred: dict[str, Any] = {}
    for name in folders:
        tokens = folder_tokens(name)
        joined = "_".join(tokens)
        for token in tokens:
            if _DATE.match(token):
                inferred["date"] = token
        for category, table in vocabulary.aliases.items():
            for alias, canonical in table.items():
                alias_tokens = folder_tokens(alias)
                if len(alias_tokens) == 1:
                    hit = alias_tokens[0] in tokens
                else:
                    hit = re.search(rf"(^|_){re.escape('_'.join(alias_tokens))}(_|$)", joined)
                if hit:
                    values = inferred.setdefault(category, [])
                    if canonical not in values:
                        values.append(canonical)
    return inferred


def manual_files(folder: Path, root: Path) -> list[Path]:
    """``db_manual.yaml`` files that apply to ``folder``, from ``root`` down to it."""
    folder, root = Path(os.path.abspath(folder)), Path(os.path.abspath(root))
    chain = [folder, *folder.parents]
    if root in chain:
        chain = chain[: chain.index(root) + 1]
    else:
        chain = [folder]
    return [p / MANUAL_FILE for p in reversed(chain) if (p / MANUAL_FILE).is_file()]


def load_manual(path: Path) -> dict[str, Any]:
    """Read one ``db_manual.yaml``; an empty file is an empty mapping.

    Raises
    ------
    MetadataError
        Malformed YAML or a top level that is not a mapping.
    """
    data = _load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MetadataError(path, f"must be a mapping of field: value, not {type(data).__name__}")
    return data


def build_metadata(
    movie: MovieInfo,
    *,
    folder: str | Path,
    root: str | Path,
    vocabulary: Vocabulary,
) -> dict[str, Any]:
    """Assemble an acquisition's ``db.yaml`` contents.

    Order of precedence (later wins): OME fields, ``fps`` (frames per second) and
    ``frame_interval_s`` (seconds); folder-name inference over the root and every folder
    below it down to the acquisition; ``db_manual.yaml`` files from the root down (nearer
    wins); then defaults fill what is still missing; then the provenance fields
    ``original_path``, ``original_folder`` and ``original_file``.

    ``fps`` and ``frame_interval_s`` stay each other's reciprocal: when a ``db_manual.yaml``
    sets only one of them (or sets it nearer than the other), the other is derived from it;
    a file setting both is taken as written. Without time information in the OME-XML nor
    in a ``db_manual.yaml`` neither key is written.

    Parameters
    ----------
    movie
        The movie's header, from :func:`deep_events_dagster.core.ome.read_movie_info`.
    folder
        The acquisition folder.
    root
        The data root the acquisition was found under (inference and db_manual stop there).
    vocabulary
        Folder-name vocabulary from :func:`load_vocabulary`.
    """
    folder, root = Path(os.path.abspath(folder)), Path(os.path.abspath(root))
    meta: dict[str, Any] = {"ome": ome_for_db(movie.ome)}
    if movie.frame_interval_s is not None:
        meta[FPS] = movie.fps
        meta[FRAME_INTERVAL] = movie.frame_interval_s
    relative = folder.relative_to(root).parts if root in (folder, *folder.parents) else ()
    meta.update(infer_from_folders([root.name, *relative], vocabulary))
    set_at: dict[str, int] = {}
    for depth, manual in enumerate(manual_files(folder, root)):
        layer = load_manual(manual)
        meta.update(layer)
        set_at.update({key: depth for key in (FPS, FRAME_INTERVAL) if key in layer})
    _reconcile_rate(meta, set_at)
    for key, value in DEFAULTS.items():
        meta.setdefault(key, value)
    meta["original_path"] = folder.as_posix()
    meta["original_folder"] = folder.name
    meta["original_file"] = movie.path.name
    return meta


def _reconcile_rate(meta: dict[str, Any], set_at: Mapping[str, int]) -> None:
    """Derive ``fps``/``frame_interval_s`` from the one a ``db_manual.yaml`` set last."""
    fps_at, interval_at = set_at.get(FPS, -1), set_at.get(FRAME_INTERVAL, -1)
    if fps_at == interval_at:  # neither set manually, or both by the same file
        return
    source, target = (FPS, FRAME_INTERVAL) if fps_at > interval_at else (FRAME_INTERVAL, FPS)
    derived = frames_per_second(meta.get(source))  # x ↦ 1/x, both ways
    if derived is None:
        meta.pop(target, None)
    else:
        meta[target] = derived


def write_db_yaml(folder: str | Path, metadata: Mapping[str, Any]) -> Path:
    """Write ``db.yaml`` atomically into ``folder`` and return its path."""
    text = yaml.safe_dump(dict(metadata), sort_keys=False, allow_unicode=True)
    return atomic_write_text(Path(folder) / DB_FILE, text)


def read_db_yaml(path: str | Path) -> dict[str, Any]:
    """Read a ``db.yaml`` written by :func:`write_db_yaml`."""
    data = _load_yaml(Path(path))
    if not isinstance(data, dict):
        raise MetadataError(path, "db.yaml must be a mapping")
    return data
