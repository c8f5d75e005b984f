"""The training-set settings: which keys of a run's settings shape a training set, and how.

:meth:`TrainingSetParameters.from_settings` reads and checks them (other keys are ignored);
:meth:`~TrainingSetParameters.address_dict` is what enters a training set's content address
(:mod:`deep_events_dagster.core.training_set`): ``n_timepoints`` and ``max_n_timepoints`` enter
it only through the window length, so models that need fewer frames share a set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deep_events_dagster.core.errors import ConfigurationError

__all__ = ["TrainingSetParameters"]


@dataclass(frozen=True)
class TrainingSetParameters:
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
        Fraction (0, 1] of training events kept.
    max_n_timepoints
        Frames per stored window (≥ ``n_timepoints``), or None for ``n_timepoints``.
    smooth
        σ in pixels of the Gaussian blur of the ground truth (0: none).
    """

    n_timepoints: int = 1
    fps: float | None = None
    train_val_split: float = 0.2
    group_by_acquisition: bool = False
    subset_fraction: float = 1.0
    max_n_timepoints: int | None = None
    smooth: float = 0.0

    @property
    def window(self) -> int:
        """Frames per stored sample: ``max_n_timepoints`` when given, else ``n_timepoints``."""
        return max(self.n_timepoints, self.max_n_timepoints or 0)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> TrainingSetParameters:
        """Read the training-set parameters out of a run's settings (other keys are ignored).

        ``subset`` (the original's name) is read as ``subset_fraction``; ``false``/``null``
        mean 1.

        Raises
        ------
        ConfigurationError
            A value has the wrong type or range.
        """
        settings = dict(settings or {})

        def number(key: str, value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(f"training setting {key} must be a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise ConfigurationError(f"training setting {key} must be finite, got {value!r}")
            return float(value)

        def integer(key: str, value: Any) -> int:
            number_value = number(key, value)
            if not number_value.is_integer() or number_value < 1:
                raise ConfigurationError(
                    f"training setting {key} must be a whole number ≥ 1, got {value!r}"
                )
            return int(number_value)

        n_timepoints = integer("n_timepoints", settings.get("n_timepoints", 1))
        fps_raw = settings.get("fps")
        fps = None if fps_raw is None else number("fps", fps_raw)
        if fps is not None and fps <= 0:
            raise ConfigurationError(f"training setting fps must be > 0, got {fps_raw!r}")
        split = number("train_val_split", settings.get("train_val_split", 0.2))
        if not 0.0 <= split < 1.0:
            raise ConfigurationError(
                f"training setting train_val_split (fraction of events held out) must be in "
                f"[0, 1), got {split!r}"
            )
        group = settings.get("group_by_acquisition", False)
        if not isinstance(group, bool):
            raise ConfigurationError(
                f"training setting group_by_acquisition must be true or false, got {group!r}"
            )
        subset_raw = settings.get("subset_fraction", settings.get("subset", 1.0))
        if subset_raw is None or subset_raw is False:
            subset_raw = 1.0
        subset = number("subset_fraction", subset_raw)
        if not 0.0 < subset <= 1.0:
            raise ConfigurationError(
                f"training setting subset_fraction must be in (0, 1], got {subset_raw!r}"
            )
        cap_raw = settings.get("max_n_timepoints")
        cap = None if cap_raw is None else integer("max_n_timepoints", cap_raw)
        if cap is not None and cap < n_timepoints:
            raise ConfigurationError(
                f"training setting max_n_timepoints ({cap}) is the longest window the training "
                f"set serves; it must be ≥ n_timepoints ({n_timepoints})"
            )
        smooth_raw = settings.get("smooth")
        if smooth_raw is None or smooth_raw is False:
            smooth_raw = 0.0
        smooth = number("smooth", smooth_raw)
        if smooth < 0:
            raise ConfigurationError(
                f"training setting smooth (σ in pixels, 0 = off) must be ≥ 0, got {smooth_raw!r}"
            )
        return cls(
            n_timepoints=n_timepoints,
            fps=fps,
            train_val_split=split,
            group_by_acquisition=group,
            subset_fraction=subset,
            max_n_timepoints=cap,
            smooth=smooth,
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for YAML."""
        return {
            "n_timepoints": self.n_timepoints,
            "fps": self.fps,
            "train_val_split": self.train_val_split,
            "group_by_acquisition": self.group_by_acquisition,
            "subset_fraction": self.subset_fraction,
            "max_n_timepoints": self.max_n_timepoints,
            "smooth": self.smooth,
            "window": self.window,
        }

    def address_dict(self) -> dict[str, Any]:
        """The values that shape the stored data (``n_timepoints`` only through the window)."""
        data = self.as_dict()
        del data["n_timepoints"], data["max_n_timepoints"]
        return data
