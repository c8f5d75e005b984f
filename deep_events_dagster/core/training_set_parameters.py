"""The training-set settings: which keys of a run's settings shape a training set, and how.

:meth:`TrainingSetParameters.from_settings` reads and checks them (other keys are ignored);
:meth:`~TrainingSetParameters.address_dict` is what enters a training set's content address
(:mod:`deep_events_dagster.core.training_set`): ``n_timepoints`` and ``max_n_timepoints`` enter
it only through the window length, so models that need fewer frames share a set.

These are the only rules for these keys: ``ml.config.TrainingSettings`` checks its training-set
keys with :meth:`TrainingSetParameters.from_settings`, and the original's other names of them
(:data:`TRAINING_SET_ALIASES`) are declared here once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from deep_events_dagster.core.errors import ConfigurationError

__all__ = ["TRAINING_SET_ALIASES", "TrainingSetParameters"]

# The original's other names of training-set parameters (alias → field): ``subset``.
TRAINING_SET_ALIASES = {"subset": "subset_fraction"}


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"training setting {key} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ConfigurationError(f"training setting {key} must be finite, got {value!r}")
    return float(value)


def _whole(key: str, value: Any) -> int:
    number = _number(key, value)
    if not number.is_integer() or number < 1:
        raise ConfigurationError(
            f"training setting {key} must be a whole number ≥ 1, got {value!r}"
        )
    return int(number)


class TrainingSetParameters(BaseModel):
    """The settings that shape a training set's data (all part of its content address).

    Attributes
    ----------
    n_timepoints
        Frames per sample of the model that asked (≥ 1).
    fps
        Requested frame rate in frames per second, or None for no filter.
    train_val_split
        Fraction of events held out for evaluation, in [0, 1).
    group_by_acquisition
        Keep each acquisition's events on one side of the split.
    subset_fraction
        Fraction (0, 1] of training events kept (``null``/``false``: 1).
    max_n_timepoints
        Frames per stored window (≥ ``n_timepoints``), or None for ``n_timepoints``.
    smooth
        σ in pixels of the Gaussian blur of the ground truth (0: none; ``null``/``false``: 0).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_timepoints: int = 1
    fps: float | None = None
    train_val_split: float = 0.2
    group_by_acquisition: bool = False
    subset_fraction: float = 1.0
    max_n_timepoints: int | None = None
    smooth: float = 0.0

    @field_validator("n_timepoints", mode="before")
    @classmethod
    def _frames(cls, value: Any) -> int:
        return _whole("n_timepoints", value)

    @field_validator("fps", mode="before")
    @classmethod
    def _fps(cls, value: Any) -> float | None:
        if value is None:
            return None
        fps = _number("fps", value)
        if fps <= 0:
            raise ConfigurationError(f"training setting fps must be > 0, got {value!r}")
        return fps

    @field_validator("train_val_split", mode="before")
    @classmethod
    def _split(cls, value: Any) -> float:
        split = _number("train_val_split", value)
        if not 0.0 <= split < 1.0:
            raise ConfigurationError(
                f"training setting train_val_split (fraction of events held out) must be in "
                f"[0, 1), got {split!r}"
            )
        return split

    @field_validator("group_by_acquisition", mode="before")
    @classmethod
    def _group(cls, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ConfigurationError(
                f"training setting group_by_acquisition must be true or false, got {value!r}"
            )
        return value

    @field_validator("subset_fraction", mode="before")
    @classmethod
    def _subset(cls, value: Any) -> float:
        if value is None or value is False:
            value = 1.0
        subset = _number("subset_fraction", value)
        if not 0.0 < subset <= 1.0:
            raise ConfigurationError(
                f"training setting subset_fraction must be in (0, 1], got {value!r}"
            )
        return subset

    @field_validator("max_n_timepoints", mode="before")
    @classmethod
    def _cap(cls, value: Any, info: ValidationInfo) -> int | None:
        if value is None:
            return None
        cap = _whole("max_n_timepoints", value)
        n_timepoints = info.data.get("n_timepoints")
        if n_timepoints is not None and cap < n_timepoints:
            raise ConfigurationError(
                f"training setting max_n_timepoints ({cap}) is the longest window the training "
                f"set serves; it must be ≥ n_timepoints ({n_timepoints})"
            )
        return cap

    @field_validator("smooth", mode="before")
    @classmethod
    def _smooth(cls, value: Any) -> float:
        if value is None or value is False:
            value = 0.0
        if value is True:
            raise ConfigurationError(
                "training setting smooth must be a σ in pixels ≥ 0 (false, null or 0: off), "
                "got true"
            )
        smooth = _number("smooth", value)
        if smooth < 0:
            raise ConfigurationError(
                f"training setting smooth (σ in pixels, 0 = off) must be ≥ 0, got {value!r}"
            )
        return smooth

    @property
    def window(self) -> int:
        """Frames per stored sample: ``max_n_timepoints`` when given, else ``n_timepoints``."""
        return max(self.n_timepoints, self.max_n_timepoints or 0)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> TrainingSetParameters:
        """Read the training-set parameters out of a run's settings (other keys are ignored).

        ``subset`` (the original's name, :data:`TRAINING_SET_ALIASES`) is read as
        ``subset_fraction`` when that is not given.

        Parameters
        ----------
        settings
            A run's settings (``None``: all defaults).

        Returns
        -------
        TrainingSetParameters

        Raises
        ------
        ConfigurationError
            A value has the wrong type or range (the first one, in field order).
        """
        settings = dict(settings or {})
        values = {key: settings[key] for key in cls.model_fields if key in settings}
        for alias, name in TRAINING_SET_ALIASES.items():
            if name not in values and alias in settings:
                values[name] = settings[alias]
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            error = exc.errors()[0]
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, ConfigurationError):
                raise cause from None
            key = ".".join(str(p) for p in error["loc"])
            raise ConfigurationError(f"training setting {key}: {error['msg']}") from None

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for YAML."""
        return {**self.model_dump(), "window": self.window}

    def address_dict(self) -> dict[str, Any]:
        """The values that shape the stored data (``n_timepoints`` only through the window)."""
        data = self.as_dict()
        del data["n_timepoints"], data["max_n_timepoints"]
        return data
