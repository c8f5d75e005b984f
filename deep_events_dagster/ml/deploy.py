"""The deployed model: which model folder decides, per annotation kind, and what models there are.

``deploy:`` in the home's ``deep_events.yaml`` names a model folder per annotation kind (a
relative folder is relative to the home); ``deep-events deploy MODEL_DIR [--kind NAME]`` writes
it (:func:`deploy_model`)::

    deploy:
      points: /data/training_output/runs/cos7_0/model_20240501-120000_1a2b3c4d

A deployment's :func:`model_identity` hashes what the decision depends on — the weights and
the threshold ``evaluation.yaml`` chose — so predictions made by one model are told apart from
those of a retrained or re-evaluated one even when the folder stays the same.

:func:`list_models` finds every model folder under a few roots (the ``folder:`` of each training
settings file, see :func:`training_model_roots`) with its event-level F1, threshold, training set
and date; :func:`models_markdown` shows them as a table.

No dagster, no torch, no tensorflow: the CLI and the assets both use this module.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from deep_events_dagster.core.errors import InputError, MetadataError
from deep_events_dagster.core.fsutil import atomic_write_text
from deep_events_dagster.ml.model_folder import (
    BIOIMAGEIO_DIR,
    EVALUATION_FILE,
    SETTINGS_FILE,
    SUMMARY_FILE,
    TRAINING_SET_FILE,
    ModelFolder,
)
from deep_events_dagster.settings.platform import (
    CONFIG_FILE,
    load_settings,
    read_config,
    resolve_home,
)

__all__ = [
    "DEPLOY_KEY",
    "Deployment",
    "ModelInfo",
    "deploy_model",
    "list_models",
    "model_identity",
    "models_markdown",
    "read_deployments",
    "training_model_roots",
]

DEPLOY_KEY = "deploy"
IDENTITY_LENGTH = 12
# Folders list_models never descends into: bulky trees that hold no model folders.
_SKIPPED_FOLDERS = frozenset({"training_sets", "dagster", "logs", BIOIMAGEIO_DIR, "__pycache__"})
_SKIPPED_PREFIXES = (".", "event_data_")  # "." covers the .tmp- folders of atomic writes


@dataclass(frozen=True)
class Deployment:
    """The model folder deployed for one annotation kind.

    Attributes
    ----------
    kind
        The annotation kind (CSV prefix such as ``points``).
    model_dir
        The model folder, absolute.
    identity
        :func:`model_identity` of the folder: 12 hex digits of its weights and threshold.
    """

    kind: str
    model_dir: Path
    identity: str


@dataclass(frozen=True)
class ModelInfo:
    """One trained model folder, as ``deep-events models`` lists it.

    Attributes
    ----------
    path
        The model folder (absolute).
    backend
        ``torch`` or ``tensorflow``.
    event_f1
        Event-level F1 at the chosen threshold (``f1`` of ``evaluation.yaml``); None before
        the evaluation.
    threshold
        The threshold ``evaluation.yaml`` chose; None before the evaluation.
    training_set
        The training-set folder of ``training_set.yaml`` (its id when it has no path); None
        when the file is missing or unreadable.
    created
        When training finished (``training_summary.yaml``'s modification time, else the
        folder's), local time zone.
    deployed_for
        The kinds this folder is deployed for (sorted; empty when none).
    """

    path: Path
    backend: str
    event_f1: float | None
    threshold: float | None
    training_set: str | None
    created: datetime
    deployed_for: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (``created`` in ISO 8601 with its offset)."""
        return {
            "path": str(self.path),
            "backend": self.backend,
            "event_f1": self.event_f1,
            "threshold": self.threshold,
            "training_set": self.training_set,
            "created": self.created.isoformat(timespec="seconds"),
            "deployed_for": list(self.deployed_for),
        }


# ---------------------------------------------------------------- identity


def _absolute(path: str | Path, base: Path | None = None) -> Path:
    candidate = Path(os.path.expanduser(str(path)))
    if not candidate.is_absolute() and base is not None:
        candidate = base / candidate
    return candidate.resolve()


def _weights(folder: ModelFolder) -> Path:
    """The folder's weights file; an :class:`InputError` naming the folder when it has none."""
    if not folder.path.is_dir():
        raise InputError(folder.path, "no such model folder")
    try:
        weights = folder.weights_path()
    except FileNotFoundError:
        raise InputError(
            folder.path, f"not a model folder (no {SETTINGS_FILE}; train a model first)"
        ) from None
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(folder.path, f"cannot read its {SETTINGS_FILE}: {exc}") from exc
    if not weights.is_file():
        raise InputError(
            folder.path,
            f"no weights ({weights.name} of the {folder.backend()} backend); "
            "was its training interrupted?",
        )
    return weights


def _threshold(folder: ModelFolder) -> float | None:
    """The evaluation's threshold; None before the evaluation; an error naming a damaged file."""
    try:
        return folder.threshold()
    except (KeyError, TypeError, ValueError, OSError, yaml.YAMLError) as exc:
        raise InputError(
            folder.evaluation_path, f"no usable threshold ({type(exc).__name__}: {exc})"
        ) from exc


def model_identity(model_dir: str | Path) -> str:
    """12 hex digits naming what a model decides with: its weights and its threshold.

    The sha256 of the weights file's bytes (``ModelFolder(...).weights_path()``) and of the
    threshold in ``evaluation.yaml`` (``none`` before the evaluation): a retrained or
    re-evaluated model gets a new identity, a copied or moved folder keeps it.

    Raises
    ------
    InputError
        A ``ValueError`` naming the folder: not a folder, not a model folder, no weights, or
        an ``evaluation.yaml`` without a usable threshold.
    """
    folder = ModelFolder(Path(model_dir))
    digest = hashlib.sha256()
    with open(_weights(folder), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    threshold = _threshold(folder)
    digest.update(b"\0threshold=" + (b"none" if threshold is None else repr(threshold).encode()))
    return digest.hexdigest()[:IDENTITY_LENGTH]


# ---------------------------------------------------------------- deep_events.yaml


def _config_path(home: str | Path) -> Path:
    return resolve_home(home) / CONFIG_FILE


def _deploy_section(config: Mapping[str, Any], path: Path) -> dict[Any, Any]:
    section = config.get(DEPLOY_KEY)
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise MetadataError(
            path,
            f"'{DEPLOY_KEY}' must map annotation kinds to model folders "
            f"(e.g. '{DEPLOY_KEY}: {{points: /path/to/model}}'), got {type(section).__name__}",
        )
    return section


def _checked_model(model_dir: Path) -> tuple[str, float]:
    """Identity and threshold of a model folder that can decide; an error naming the folder."""
    identity = model_identity(model_dir)
    threshold = _threshold(ModelFolder(model_dir))
    if threshold is None:
        raise InputError(
            model_dir,
            f"not evaluated (no {EVALUATION_FILE}): a model without a threshold cannot decide; "
            "evaluate it first (the model_evaluation asset, or deep-events train)",
        )
    return identity, threshold


def read_deployments(home: str | Path) -> dict[str, Deployment]:
    """The deployed model folder per annotation kind: ``deploy:`` of ``<home>/deep_events.yaml``.

    Relative folders are relative to the home. Empty when the file or the key is absent.

    Raises
    ------
    MetadataError
        (an ``InputError``, so a ``ValueError``) naming ``deep_events.yaml`` — and the kind,
        for one entry — when ``deploy:`` is not a mapping, a kind is not a string or a folder
        not a path, or the folder is missing, not a model folder, has no weights or no
        threshold (a model without one cannot decide).
    """
    path = _config_path(home)
    section = _deploy_section(read_config(path), path)
    deployments: dict[str, Deployment] = {}
    for kind, folder in section.items():
        if not isinstance(kind, str) or not kind:
            raise MetadataError(
                path, f"'{DEPLOY_KEY}': the kind {kind!r} must be an annotation kind name"
            )
        if not isinstance(folder, str) or not folder:
            raise MetadataError(
                path, f"'{DEPLOY_KEY}: {kind}' must be a model folder path, got {folder!r}"
            )
        model_dir = _absolute(folder, path.parent)
        try:
            identity, _ = _checked_model(model_dir)
        except InputError as exc:
            raise MetadataError(path, f"'{DEPLOY_KEY}: {kind}': {exc}") from exc
        deployments[kind] = Deployment(kind=kind, model_dir=model_dir, identity=identity)
    return deployments


def _check_kind(kind: str) -> None:
    if not kind or not all(c.isascii() and (c.isalnum() or c == "_") for c in kind):
        raise ValueError(f"annotation kind {kind!r} must be ASCII letters, digits or '_'")


def deploy_model(home: str | Path, model_dir: str | Path, kind: str = "points") -> Deployment:
    """Deploy a model folder for a kind: write ``deploy: {kind: <absolute folder>}``.

    The folder must be a model folder with weights and an ``evaluation.yaml`` (a model without
    a threshold cannot decide). ``<home>/deep_events.yaml`` is written atomically
    (``core.fsutil.atomic_write_text``), keeping every other key and the other kinds'
    deployments. When the file has no ``deploy:`` key yet its text — comments included — is
    kept as it is and the ``deploy:`` block appended; otherwise the file is rewritten from its
    parsed YAML, and **its comments are lost**.

    Whether ``kind`` is one of the platform's kinds is the caller's check (the CLI makes it).

    Raises
    ------
    InputError
        Naming the model folder (missing, not a model folder, no weights, not evaluated) or
        ``deep_events.yaml`` (malformed, or a ``deploy:`` that is not a mapping).
    ValueError
        ``kind`` is not a valid annotation kind name.
    """
    _check_kind(kind)
    model_path = _absolute(model_dir)
    identity, _ = _checked_model(model_path)
    path = _config_path(home)
    config = read_config(path)
    section = _deploy_section(config, path)
    if DEPLOY_KEY not in config:
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        block = yaml.safe_dump(
            {DEPLOY_KEY: {kind: str(model_path)}}, sort_keys=False, allow_unicode=True
        )
        appended = (text if not text or text.endswith("\n") else text + "\n") + block
        try:
            same = yaml.safe_load(appended) == {**config, DEPLOY_KEY: {kind: str(model_path)}}
        except yaml.YAMLError:
            same = False
        if same:  # a flow-style mapping or a document end marker cannot take a block
            atomic_write_text(path, appended)
            return Deployment(kind=kind, model_dir=model_path, identity=identity)
    updated = dict(config)
    updated[DEPLOY_KEY] = {**section, kind: str(model_path)}
    atomic_write_text(path, yaml.safe_dump(updated, sort_keys=False, allow_unicode=True))
    return Deployment(kind=kind, model_dir=model_path, identity=identity)


# ---------------------------------------------------------------- listing


def training_model_roots(home: str | Path | None = None) -> list[Path]:
    """Where the home's trainings write models: the output folder of every training settings
    file in its training settings folder (``TrainingRunSpec.output_folder``: its ``folder:``, or
    ``<home>/training_data`` for a file without one), once each, in file order. Unreadable
    settings files are skipped (``deep-events train`` and the Dagster UI report them)."""
    from deep_events_dagster.core.training_settings import load_training_folder

    settings = load_settings(resolve_home(home))
    roots: dict[Path, None] = {}
    for spec in load_training_folder(settings.training_settings_dir).specs:
        roots.setdefault(spec.output_folder(settings.home), None)
    return list(roots)


def _is_model_folder(folder: Path, filenames: Sequence[str]) -> bool:
    if SETTINGS_FILE not in filenames:
        return False
    try:
        return ModelFolder(folder).weights_path().name in filenames
    except (OSError, yaml.YAMLError):
        return False


def _iter_model_folders(root: Path, max_depth: int) -> Iterable[Path]:
    root_depth = len(root.parts)
    for current, dirnames, filenames in os.walk(root):
        folder = Path(current)
        if _is_model_folder(folder, filenames):
            dirnames[:] = []
            yield folder
            continue
        if len(folder.parts) - root_depth >= max_depth:
            dirnames[:] = []
            continue
        dirnames[:] = [
            d for d in dirnames if d not in _SKIPPED_FOLDERS and not d.startswith(_SKIPPED_PREFIXES)
        ]


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _read_yaml_mapping(path: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _model_info(folder: Path, deployed_for: tuple[str, ...]) -> ModelInfo | None:
    model = ModelFolder(folder)
    try:
        backend = model.backend()
    except (OSError, yaml.YAMLError):
        return None
    evaluation = _read_yaml_mapping(model.evaluation_path) or {}
    training = _read_yaml_mapping(folder / TRAINING_SET_FILE) or {}
    training_set = training.get("path") or training.get("id")
    summary = folder / SUMMARY_FILE
    stamp = (summary if summary.is_file() else folder).stat().st_mtime
    return ModelInfo(
        path=folder,
        backend=backend,
        event_f1=_number(evaluation.get("f1")),
        threshold=_number(evaluation.get("threshold")),
        training_set=None if training_set is None else str(training_set),
        created=datetime.fromtimestamp(stamp).astimezone(),
        deployed_for=deployed_for,
    )


def list_models(
    search_roots: Iterable[str | Path],
    home: str | Path | None = None,
    *,
    max_depth: int = 8,
) -> list[ModelInfo]:
    """Every model folder under the roots, newest first; the deployed ones marked.

    A model folder holds ``settings.yaml`` and its backend's weights file
    (``ml.model_folder``). The search goes down the roots (at most ``max_depth`` folders deep)
    but never into a model folder, hidden or temporary folders, ``training_sets``,
    ``event_data_*``, ``logs`` or ``dagster``; symbolic links to folders are not followed. Roots
    that do not exist are skipped. With ``home``, the folders deployed there
    (:func:`read_deployments`) are listed too, wherever they are, with ``deployed_for`` set.

    Raises
    ------
    MetadataError
        The home's ``deploy:`` is malformed (see :func:`read_deployments`).
    """
    deployed: dict[Path, list[str]] = {}
    if home is not None:
        for kind, deployment in sorted(read_deployments(home).items()):
            deployed.setdefault(deployment.model_dir, []).append(kind)
    folders: dict[Path, None] = dict.fromkeys(deployed)
    for root in search_roots:
        root_path = _absolute(root)
        if root_path.is_dir():
            folders.update(dict.fromkeys(_iter_model_folders(root_path, max_depth)))
    models = [
        info
        for folder in folders
        if (info := _model_info(folder, tuple(deployed.get(folder, ())))) is not None
    ]
    models.sort(key=lambda m: (m.created, str(m.path)), reverse=True)
    return models


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _float_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def models_markdown(models: Sequence[ModelInfo]) -> str:
    """A markdown table of models (model, backend, event F1, threshold, training set, date,
    deployed), in the given order, for the Dagster UI."""
    if not models:
        return "_No trained models found._"
    lines = [
        "| model | backend | event F1 | threshold | training set | date | deployed |",
        "|---|---|---:|---:|---|---|---|",
    ]
    for model in models:
        cells = [
            f"`{model.path}`",
            model.backend,
            _float_text(model.event_f1),
            _float_text(model.threshold),
            "–" if model.training_set is None else f"`{model.training_set}`",
            model.created.strftime("%Y-%m-%d %H:%M"),
            ", ".join(model.deployed_for) or "",
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)
