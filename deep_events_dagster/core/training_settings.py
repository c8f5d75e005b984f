"""Training settings files (the original deep-events "scheduled settings" YAML).

A settings file describes one or more training runs that share a catalog collection::

    folder: ../training_output        # optional; relative to this file
    collection: event_data_points     # catalog collection to query
    backend: torch                    # torch (default) or tensorflow
    db_prompt:                        # one MongoDB-style query, or a list of them
      - {cell_line: cos7, microscope: isim}
      - {cell_line: u2os}
    settings:                         # training settings (a mapping, or one per prompt)
      model: unet
      n_timepoints: 3
      epochs: 20

Every prompt is one training run, a
:class:`~deep_events_dagster.core.training_run.TrainingRunSpec`. Its ``partition_key`` is
``<file stem>/<index>`` (the index is the prompt's position in the list, 0 for a single prompt);
it does not change while the file keeps a prompt at that position. Its ``spec_fingerprint``
hashes everything that defines the run (prompt, settings, collection, backend, folder), so a
changed entry gets a new fingerprint under the same key.

Compatibility with the original files:

* numbered entries ``db_prompt_<n>`` with ``settings_<n>`` (index ``n``) are read as well, next
  to (or instead of) ``db_prompt``; ``settings: default`` (or an empty value) means ``{}``;
* keys the original accepted inside a prompt although they are not query fields
  (``n_timepoints``, ``fps``, ``train_val_split``, ``subset``, ``subset_fraction``,
  ``max_n_timepoints``, ``group_by_acquisition``, ``smooth``) are moved from the prompt into that
  run's settings (``subset`` becomes ``subset_fraction``); a value that disagrees with the
  settings is an error.

The training settings themselves stay a plain mapping here (the fingerprint hashes them as
written): :mod:`deep_events_dagster.ml.training_runs` validates them into
``ml.config.TrainingSettings`` (``load_validated_training_file`` /
``load_validated_training_folder``: the whole file, when it is read). The backend names and
the run-level defaults are declared in :mod:`deep_events_dagster.core.training_run`.
Every message is one line that starts with the file's path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deep_events_dagster.core.errors import InputError
from deep_events_dagster.core.training_run import (
    BACKENDS,
    DEFAULT_BACKEND,
    TrainingRunSpec,
    backend_name,
    canonical_form,
    spec_fingerprint,
)
from deep_events_dagster.core.training_set_parameters import (
    TRAINING_SET_ALIASES,
    TrainingSetParameters,
)

__all__ = [
    "PROMPT_SETTING_KEYS",
    "TrainingFolder",
    "TrainingSettingsError",
    "load_training_file",
    "load_training_folder",
    "parse_training_settings",
]

TOP_LEVEL_KEYS = ("folder", "collection", "backend", "db_prompt", "settings")
# Keys the original popped out of db_prompt before querying (prompt key → settings key): the
# training-set parameters, and their aliases (``subset``, the original's name of
# ``subset_fraction``).
PROMPT_SETTING_KEYS = {
    **{name: name for name in TrainingSetParameters.model_fields},
    **TRAINING_SET_ALIASES,
}
_NUMBERED = re.compile(r"^(db_prompt|settings)_(\d+)$")
_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_.-]+")


class TrainingSettingsError(InputError):
    """A training settings file is malformed; the message starts with the file's path."""


def _safe_stem(path: Path) -> str:
    stem = _UNSAFE_KEY.sub("_", path.stem).strip("._") or "settings"
    while "..." in stem:
        stem = stem.replace("...", "..")
    return stem


def _run_name(prompt: Mapping[str, Any]) -> str:
    parts = []
    for key, value in prompt.items():
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            parts.append(str(value))
        elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            parts.append("-".join(str(v) for v in value))
        else:
            parts.append(str(key))
    text = _UNSAFE_KEY.sub("-", "_".join(parts)).strip("-_.")
    return text[:64] or "all"


def _settings_value(path: Path, key: str, value: Any) -> dict[str, Any]:
    if value is None or value == "default":
        return {}
    if not isinstance(value, Mapping):
        raise TrainingSettingsError(
            path,
            f"'{key}' must be a mapping of training settings (or 'default'), "
            f"got {type(value).__name__}",
        )
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise TrainingSettingsError(path, f"'{key}' has non-text keys {bad!r}")
    return dict(value)


def _prompt_value(path: Path, key: str, value: Any) -> dict[str, Any]:
    if value is None:
        raise TrainingSettingsError(
            path, f"'{key}' is empty; write {{}} to select every document of the collection"
        )
    if not isinstance(value, Mapping):
        raise TrainingSettingsError(
            path, f"'{key}' must be a mapping (a MongoDB-style query), got {type(value).__name__}"
        )
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise TrainingSettingsError(path, f"'{key}' has non-text keys {bad!r}")
    return dict(value)


def _split_prompt(
    path: Path, key: str, prompt: dict[str, Any], settings: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Move training-set keys the original allowed inside a prompt into the settings."""
    query = {}
    settings = dict(settings)
    for name, value in prompt.items():
        target = PROMPT_SETTING_KEYS.get(name)
        if target is None:
            query[name] = value
            continue
        if target in settings and canonical_form(settings[target]) != canonical_form(value):
            raise TrainingSettingsError(
                path,
                f"'{key}' sets {name}: {value!r} but its settings say "
                f"{target}: {settings[target]!r}",
            )
        settings[target] = value
    return query, settings


def parse_training_settings(data: Any, path: str | Path) -> list[TrainingRunSpec]:
    """Turn the parsed YAML ``data`` of settings file ``path`` into training runs.

    Raises
    ------
    TrainingSettingsError
        Missing or mistyped keys, unknown keys, clashing indexes; the message names the file.
    """
    path = Path(os.path.abspath(Path(path).expanduser()))
    if not isinstance(data, Mapping):
        what = "empty" if data is None else f"a {type(data).__name__}"
        raise TrainingSettingsError(path, f"expected a mapping of settings, the file is {what}")
    unknown = sorted(
        str(k) for k in data if k not in TOP_LEVEL_KEYS and not _NUMBERED.match(str(k))
    )
    if unknown:
        raise TrainingSettingsError(
            path,
            f"unknown key(s) {', '.join(unknown)}; expected {', '.join(TOP_LEVEL_KEYS)} "
            f"(or db_prompt_<n>/settings_<n>)",
        )

    collection = data.get("collection")
    if not isinstance(collection, str) or not collection.strip():
        raise TrainingSettingsError(
            path,
            "'collection' (the catalog collection to query, e.g. event_data_points) "
            "is missing or not text",
        )
    collection = collection.strip()

    backend_raw = data.get("backend", DEFAULT_BACKEND)
    backend = backend_name(str(backend_raw))
    if not isinstance(backend_raw, str) or backend not in BACKENDS:
        raise TrainingSettingsError(
            path, f"'backend' must be one of {', '.join(BACKENDS)}, got {backend_raw!r}"
        )

    folder_raw = data.get("folder")
    folder: Path | None
    if folder_raw is None or folder_raw == "":
        folder = None
    elif isinstance(folder_raw, str):
        candidate = Path(folder_raw).expanduser()
        if not candidate.is_absolute():
            candidate = path.parent / candidate
        folder = Path(os.path.normpath(candidate))
    else:
        raise TrainingSettingsError(
            path, f"'folder' must be a path, got {type(folder_raw).__name__}"
        )

    # (index, key, prompt, settings)
    entries: dict[int, tuple[str, dict[str, Any], dict[str, Any]]] = {}

    def add(index: int, key: str, prompt: dict[str, Any], settings: dict[str, Any]) -> None:
        if index in entries:
            raise TrainingSettingsError(
                path, f"'{key}' and '{entries[index][0]}' both define training run {index}"
            )
        entries[index] = (key, prompt, settings)

    shared_raw = data.get("settings")
    if "db_prompt" in data:
        prompts_raw = data["db_prompt"]
        if isinstance(prompts_raw, list):
            if not prompts_raw:
                raise TrainingSettingsError(path, "'db_prompt' is an empty list")
            if isinstance(shared_raw, list):
                if len(shared_raw) != len(prompts_raw):
                    raise TrainingSettingsError(
                        path,
                        f"'settings' lists {len(shared_raw)} entries for "
                        f"{len(prompts_raw)} prompts",
                    )
                per_run = [
                    _settings_value(path, f"settings[{i}]", s) for i, s in enumerate(shared_raw)
                ]
            else:
                shared = _settings_value(path, "settings", shared_raw)
                per_run = [shared] * len(prompts_raw)
            for i, prompt in enumerate(prompts_raw):
                key = f"db_prompt[{i}]"
                add(i, key, _prompt_value(path, key, prompt), per_run[i])
        else:
            if isinstance(shared_raw, list):
                raise TrainingSettingsError(
                    path, "'settings' is a list but 'db_prompt' is a single query"
                )
            add(
                0,
                "db_prompt",
                _prompt_value(path, "db_prompt", prompts_raw),
                _settings_value(path, "settings", shared_raw),
            )
    elif isinstance(shared_raw, list):
        raise TrainingSettingsError(path, "'settings' is a list but there is no 'db_prompt' list")

    numbered_settings = {}
    for key in data:
        match = _NUMBERED.match(str(key))
        if match and match.group(1) == "settings":
            numbered_settings[int(match.group(2))] = key
    for key in data:
        match = _NUMBERED.match(str(key))
        if not match or match.group(1) != "db_prompt":
            continue
        index = int(match.group(2))
        settings_key = numbered_settings.pop(index, None)
        if settings_key is not None:
            settings = _settings_value(path, settings_key, data[settings_key])
        elif isinstance(shared_raw, Mapping) or shared_raw in (None, "default"):
            settings = _settings_value(path, "settings", shared_raw)
        else:  # pragma: no cover - a list was rejected above
            settings = {}
        add(index, str(key), _prompt_value(path, str(key), data[key]), settings)
    if numbered_settings:
        orphans = ", ".join(str(numbered_settings[i]) for i in sorted(numbered_settings))
        raise TrainingSettingsError(path, f"{orphans} without a matching db_prompt_<n>")
    if not entries:
        raise TrainingSettingsError(
            path, "'db_prompt' is missing (one query, or a list of queries, one per run)"
        )

    stem = _safe_stem(path)
    specs = []
    for index in sorted(entries):
        key, prompt, settings = entries[index]
        query, run_settings = _split_prompt(path, key, prompt, settings)
        specs.append(
            TrainingRunSpec(
                file=path,
                index=index,
                name=_run_name(query),
                folder=folder,
                collection=collection,
                backend=backend,
                db_prompt=query,
                settings=run_settings,
                partition_key=f"{stem}/{index}",
                spec_fingerprint=spec_fingerprint(
                    db_prompt=query,
                    settings=run_settings,
                    collection=collection,
                    backend=backend,
                    folder=folder,
                ),
            )
        )
    return specs


def load_training_file(path: str | Path) -> list[TrainingRunSpec]:
    """Read a training settings YAML file: one :class:`TrainingRunSpec` per prompt.

    Parameters
    ----------
    path
        The settings file. A relative ``folder`` inside it is taken relative to the file.

    Returns
    -------
    list of TrainingRunSpec
        Sorted by index.

    Raises
    ------
    TrainingSettingsError
        The file is missing, unreadable, not valid YAML, or its content is malformed; the
        message starts with the file's path.
    """
    path = Path(os.path.abspath(Path(path).expanduser()))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise TrainingSettingsError(path, "training settings file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingSettingsError(path, f"cannot read: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TrainingSettingsError(path, f"malformed YAML: {_yaml_problem(exc)}") from exc
    return parse_training_settings(data, path)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: where (1-based line and column) and what."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if mark is None or problem is None:
        return " ".join(str(exc).split())
    what = f"{context}, {problem}" if context else problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {' '.join(what.split())}"


@dataclass(frozen=True)
class TrainingFolder:
    """Every training run defined by the settings files of a folder.

    Attributes
    ----------
    specs
        The runs of every readable file, files in name order (``*.yaml`` and ``*.yml``).
    problems
        One message per file that could not be read (its runs are left out; the other
        files' runs are not affected) and per run whose partition key another file already
        uses (``x.yaml`` and ``x.yml`` both give ``x/0``: the first file in name order
        keeps it).
    """

    specs: tuple[TrainingRunSpec, ...]
    problems: tuple[str, ...]

    def spec(self, partition_key: str) -> TrainingRunSpec | None:
        """The run with this partition key, or None."""
        return next((s for s in self.specs if s.partition_key == partition_key), None)


def load_training_folder(
    folder: str | Path, *, check: Callable[[list[TrainingRunSpec]], object] | None = None
) -> TrainingFolder:
    """Read every settings file of ``folder`` (a missing folder defines no runs).

    One malformed file never hides the runs of the others: see :class:`TrainingFolder`.

    Parameters
    ----------
    folder
        The settings folder.
    check
        Called with each readable file's runs before they are kept; an :class:`InputError`
        it raises leaves the file out like a malformed one (its message becomes a problem and
        the file holds no partition keys). ``ml.training_runs`` validates the settings with it.
    """
    folder = Path(folder)
    paths = (
        sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if folder.is_dir()
        else []
    )
    specs: list[TrainingRunSpec] = []
    problems: list[str] = []
    owner: dict[str, Path] = {}
    for path in paths:
        try:
            file_specs = load_training_file(path)
            if check is not None:
                check(file_specs)
        except InputError as exc:
            problems.append(str(exc))
            continue
        for spec in file_specs:
            first = owner.setdefault(spec.partition_key, path)
            if first != path:
                problems.append(
                    f"{path}: its run {spec.partition_key!r} has the partition key of a run "
                    f"in {first.name}; rename one of the two files"
                )
                continue
            specs.append(spec)
    return TrainingFolder(specs=tuple(specs), problems=tuple(problems))
