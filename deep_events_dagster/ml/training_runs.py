"""Training settings files with validated settings: each run of a file with its
:class:`~deep_events_dagster.ml.config.TrainingSettings` and its training-set parameters
(:class:`~deep_events_dagster.core.training_set_parameters.TrainingSetParameters`).

:mod:`deep_events_dagster.core.training_settings` turns a settings file into runs
(:class:`~deep_events_dagster.core.training_run.TrainingRunSpec`, settings as written);
this module validates the whole file when it is read (:func:`load_validated_training_file`,
:func:`load_validated_training_folder`): a wrong key or value is one line naming the file, the
key and what is allowed, before any training set is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deep_events_dagster.core.training_run import TrainingRunSpec, backend_name
from deep_events_dagster.core.training_set_parameters import TrainingSetParameters
from deep_events_dagster.core.training_settings import (
    TrainingSettingsError,
    load_training_file,
    load_training_folder,
)
from deep_events_dagster.ml.config import TrainingSettings, TrainingSettingsInvalid

__all__ = [
    "ValidatedRun",
    "ValidatedTrainingFolder",
    "load_validated_training_file",
    "load_validated_training_folder",
    "validate_training_runs",
]


@dataclass(frozen=True)
class ValidatedRun:
    """One training run of a settings file with its validated settings.

    Attributes
    ----------
    spec
        The run as the file defines it (``spec.settings`` is the mapping as written, which
        the run's fingerprint hashes).
    settings
        ``spec.settings`` with the file's ``backend``, validated.
    training_set
        The settings that shape the run's training set (``settings.training_set``: checked by
        :meth:`TrainingSetParameters.from_settings`, the rules the training set is built with).
    """

    spec: TrainingRunSpec
    settings: TrainingSettings
    training_set: TrainingSetParameters

    @property
    def partition_key(self) -> str:
        """The run's partition key (``<file stem>/<index>``)."""
        return self.spec.partition_key


def validate_training_runs(specs: Sequence[TrainingRunSpec]) -> list[ValidatedRun]:
    """Validate every run's settings (merged with its file's ``backend``), its training-set
    parameters included.

    Parameters
    ----------
    specs
        The runs of one settings file (:func:`core.training_settings.load_training_file`).

    Returns
    -------
    list of ValidatedRun
        In the order of ``specs``.

    Raises
    ------
    TrainingSettingsError
        One line naming the file, the key and what is allowed; a problem shared by several
        runs (one ``settings:`` for a list of prompts) is said once.
    """
    runs: list[ValidatedRun] = []
    problems: dict[str, list[int]] = {}
    file = specs[0].file if specs else Path()
    for spec in specs:
        settings = dict(spec.settings)
        given = settings.get("backend")
        named = backend_name(given) if isinstance(given, str) else given
        try:
            if given is not None and named != spec.backend:
                raise TrainingSettingsInvalid(
                    f"training setting backend {given!r} disagrees with the file's backend "
                    f"{spec.backend!r}; give it once, at the top of the file"
                )
            settings["backend"] = spec.backend
            validated = TrainingSettings.from_mapping(settings)
        except TrainingSettingsInvalid as exc:
            problems.setdefault(str(exc), []).append(spec.index)
            continue
        runs.append(ValidatedRun(spec, validated, validated.training_set))
    if problems:
        parts = []
        for message, indexes in problems.items():
            if len(indexes) == len(specs):
                parts.append(message)
            else:
                which = ", ".join(str(i) for i in indexes)
                parts.append(f"run{'s' if len(indexes) > 1 else ''} {which}: {message}")
        raise TrainingSettingsError(file, "; ".join(parts))
    return runs


def load_validated_training_file(path: str | Path) -> list[ValidatedRun]:
    """Read a training settings file and validate the whole of it.

    Parameters
    ----------
    path
        The settings file (see :mod:`deep_events_dagster.core.training_settings`).

    Returns
    -------
    list of ValidatedRun
        One per prompt, sorted by index.

    Raises
    ------
    TrainingSettingsError
        Unreadable or malformed file, unknown keys, bad values: one line that starts with the
        file's path.
    """
    return validate_training_runs(load_training_file(path))


@dataclass(frozen=True)
class ValidatedTrainingFolder:
    """The valid training runs of a settings folder, and what is wrong with the other files.

    Attributes
    ----------
    runs
        The runs of every valid file, files in name order.
    problems
        One line per file left out (unreadable, malformed or invalid settings; the other
        files' runs are not affected) and per partition-key collision.
    """

    runs: tuple[ValidatedRun, ...]
    problems: tuple[str, ...]

    @property
    def specs(self) -> tuple[TrainingRunSpec, ...]:
        """The runs' specs (as :class:`core.training_settings.TrainingFolder`)."""
        return tuple(run.spec for run in self.runs)

    def run(self, partition_key: str) -> ValidatedRun | None:
        """The run with this partition key, or None."""
        return next((r for r in self.runs if r.partition_key == partition_key), None)

    def spec(self, partition_key: str) -> TrainingRunSpec | None:
        """The spec of the run with this partition key, or None."""
        run = self.run(partition_key)
        return None if run is None else run.spec


def load_validated_training_folder(folder: str | Path) -> ValidatedTrainingFolder:
    """Read and validate every settings file of ``folder`` (a missing folder defines no runs).

    A file whose settings are invalid is left out with one line in ``problems``, like an
    unreadable one (:func:`core.training_settings.load_training_folder`); it does not hold
    partition keys, so ``x.yml`` keeps its runs when ``x.yaml`` is invalid.
    """
    validated: dict[tuple[Path, int], ValidatedRun] = {}

    def check(specs: list[TrainingRunSpec]) -> None:
        for run in validate_training_runs(specs):
            validated[(run.spec.file, run.spec.index)] = run

    loaded = load_training_folder(folder, check=check)
    runs = tuple(validated[(s.file, s.index)] for s in loaded.specs)
    return ValidatedTrainingFolder(runs=runs, problems=loaded.problems)
