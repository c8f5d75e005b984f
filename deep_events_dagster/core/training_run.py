"""One training run: what defines it (:class:`TrainingRunSpec`), its fingerprint
(:func:`spec_fingerprint`) and the names and defaults of a settings file's run-level keys
(the backends, :data:`DEFAULT_BACKEND`, :data:`DEFAULT_FOLDER`).

:mod:`deep_events_dagster.core.training_settings` reads settings files into runs;
:mod:`deep_events_dagster.ml.training_runs` validates their settings.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

__all__ = [
    "BACKENDS",
    "BACKEND_ALIASES",
    "DEFAULT_BACKEND",
    "DEFAULT_FOLDER",
    "Backend",
    "TrainingRunSpec",
    "backend_name",
    "canonical_form",
    "spec_fingerprint",
]

Backend = Literal["torch", "tensorflow"]
BACKENDS: tuple[str, ...] = get_args(Backend)
DEFAULT_BACKEND: Backend = "torch"
BACKEND_ALIASES = {"pytorch": "torch", "tf": "tensorflow", "keras": "tensorflow"}
# Where the runs of a file without ``folder:`` put training data and models (in the home).
DEFAULT_FOLDER = "training_data"


def backend_name(value: str) -> str:
    """The backend ``value`` names: lower-cased, the original's aliases resolved.

    Parameters
    ----------
    value
        ``torch``, ``tensorflow`` or an alias (``pytorch``, ``tf``, ``keras``), any case.

    Returns
    -------
    str
        The canonical name; an unknown name is returned lower-cased (the caller rejects it).
    """
    return BACKEND_ALIASES.get(value.lower(), value.lower())


@dataclass(frozen=True)
class TrainingRunSpec:
    """One training run: one prompt of one settings file.

    Attributes
    ----------
    file
        The settings file (absolute).
    index
        The prompt's index: its position in a ``db_prompt`` list (0 for a single prompt), or
        ``n`` for an original-style ``db_prompt_<n>``.
    name
        A short readable name from the prompt's values (``isim_cos7``), like the original's
        training folder names; ``all`` for an empty prompt.
    folder
        Where training data and models go (absolute), or None when the file names none
        (:meth:`output_folder` applies the default).
    collection
        Catalog collection the prompt queries.
    backend
        ``"torch"`` or ``"tensorflow"``.
    db_prompt
        The MongoDB-style query (without the training-set keys the original allowed in it).
    settings
        The run's training settings, unvalidated.
    partition_key
        ``<file stem>/<index>``; letters, digits, ``_``, ``-``, ``.`` and one ``/``.
    spec_fingerprint
        16 hex digits hashing prompt, settings, collection, backend and folder.
    """

    file: Path
    index: int
    name: str
    folder: Path | None
    collection: str
    backend: str
    db_prompt: dict[str, Any] = field(hash=False)
    settings: dict[str, Any] = field(hash=False)
    partition_key: str
    spec_fingerprint: str

    def output_folder(self, home: str | Path) -> Path:
        """Where this run's training data and models go.

        Parameters
        ----------
        home
            The platform home.

        Returns
        -------
        Path
            ``folder``, or ``<home>/training_data`` (:data:`DEFAULT_FOLDER`) when the file
            names none.
        """
        return self.folder if self.folder is not None else Path(home) / DEFAULT_FOLDER


def canonical_form(value: Any) -> Any:
    """JSON-ready canonical form of a settings value, as fingerprints compare them.

    Parameters
    ----------
    value
        A value parsed from YAML (mappings, lists, scalars).

    Returns
    -------
    Any
        Mapping keys as strings, tuples as lists, integral floats as ints (``1.0`` → ``1``),
        other objects as their ``str``.
    """
    if isinstance(value, Mapping):
        return {str(k): canonical_form(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical_form(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return float(value)
    return str(value)


def spec_fingerprint(
    *,
    db_prompt: Mapping[str, Any],
    settings: Mapping[str, Any],
    collection: str,
    backend: str,
    folder: str | Path | None = None,
) -> str:
    """Hash (16 hex) of a run's normalised definition.

    Key order and ``1`` vs ``1.0`` do not matter; any changed value does.
    """
    canonical = json.dumps(
        {
            "collection": collection,
            "backend": backend,
            "folder": None if folder is None else str(folder),
            "db_prompt": canonical_form(db_prompt),
            "settings": canonical_form(settings),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=8).hexdigest()
