"""Training settings: the original deep-events "scheduled settings", validated.

A settings file's ``settings:`` mapping (see :mod:`deep_events_dagster.core.training_settings`)
becomes one :class:`TrainingSettings`. Every key of the original is accepted with the original's
meaning and default; an unknown key is an error that lists the known ones (a typo such as
``nb_filter`` must not silently train with the default).

Keys that shape the *training set* (``n_timepoints``, ``fps``, ``train_val_split``,
``subset_fraction``, ``max_n_timepoints``, ``group_by_acquisition``, ``smooth``) are read by
:func:`deep_events_dagster.core.training_set.build_training_set`; they are accepted here so one
mapping describes the whole run, and the trainer only checks ``n_timepoints`` against the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "LossWeight",
    "TrainingSettings",
    "TrainingSettingsInvalid",
    "load_settings_file",
]


class TrainingSettingsInvalid(ValueError):
    """Training settings that cannot be used; the message says which key and why."""


class LossWeight(BaseModel):
    """Parameters of the ``soft_focal`` loss (the original's ``weight`` mapping).

    Attributes
    ----------
    alpha
        Weight of the positive class, in [0, 1]; negatives get ``1 − alpha``.
    gamma
        Focusing exponent ≥ 0; 0 turns the focal loss into an alpha-weighted cross-entropy.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(0.25, ge=0.0, le=1.0)
    gamma: float = Field(2.0, ge=0.0)


class TrainingSettings(BaseModel):
    """One training run's settings, with the original deep-events keys and defaults.

    Attributes
    ----------
    backend
        ``"torch"`` (implemented) or ``"tensorflow"``.
    model
        ``"unet"`` (frames stacked as input channels) or ``"bottleneck_lstm"`` (the same encoder
        per frame, a ConvLSTM over time at the bottleneck; needs ``n_timepoints`` > 1).
    loss
        ``"binary_crossentropy"``, ``"soft_focal"`` or ``"mse"``; all take logits (see
        :mod:`deep_events_dagster.ml.torch.losses`).
    weight
        ``alpha`` and ``gamma`` of the soft focal loss.
    nb_filters
        Filters of the first U-Net level (doubled per level down).
    first_conv_size
        Kernel size of the two first-level convolutions (exact "same" padding, also for even
        sizes).
    epochs
        Passes over the (augmented) training set.
    batch_size
        Samples per optimisation step.
    n_augmentations
        Copies of each training sample per epoch, as in the original: copy 0 unchanged, copies
        1… augmented (flips, 90° rotations, brightness, Poisson noise). 0 or 1: no augmentation.
    brightness_range
        ``[low, high]``: augmented copies are multiplied by a factor drawn uniformly from it.
    poisson
        Shot-noise strength ``s`` ≥ 0 (the original's meaning): an augmented copy ``x`` becomes
        ``Poisson(x · 100/s) / (100/s)`` — larger ``s``, fewer photons, more noise; 0 = none.
    poisson_probability
        Share of augmented copies that get the noise (default 1: all, as the original).
    initial_learning_rate
        Adam's learning rate.
    weight_decay
        Adam's L2 weight decay (the original's 1e-4).
    dropout_rate
        Dropout after every convolution block (0: none).
    n_timepoints
        Frames per sample (checked against the training set's ``T``).
    subset_fraction
        Training-set option (fraction of training events kept); the trainer uses every sample
        the training set holds.
    train_val_split
        Training-set option: fraction of events held out for evaluation (the core's meaning,
        default 0.2).
    seed
        Seeds Python, numpy and torch, the shuffling and the augmentation.
    mixed_precision
        ``"auto"``: float16 autocast with a gradient scaler on CUDA, bfloat16 autocast on a CPU
        with native bfloat16 instructions (avx512_bf16 / AMX), float32 otherwise; ``"off"``:
        float32 everywhere; ``"on"``: like auto, and bfloat16 on any CPU.
    channels_last
        Keep activations channels-last (NHWC) in training: the same numbers, faster convolutions
        (oneDNN on CPU, tensor cores on GPU).
    num_workers
        DataLoader worker processes; 0 (default) augments in the training process on the CPU,
        and means "up to 4" on a GPU, where the model would otherwise wait for data.
    n_log_images
        Eval samples whose input, ground truth and prediction go to TensorBoard each epoch.
    nb_input_channels
        The original wrote this back into its settings; when given it must match the data.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Literal["torch", "tensorflow"] = "torch"
    model: Literal["unet", "bottleneck_lstm"] = "unet"
    loss: Literal["binary_crossentropy", "soft_focal", "mse"] = "binary_crossentropy"
    weight: LossWeight = LossWeight()
    nb_filters: int = Field(16, ge=1)
    first_conv_size: int = Field(12, ge=1)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(8, ge=1)
    n_augmentations: int = Field(4, ge=0)
    brightness_range: tuple[float, float] = (0.6, 1.0)
    poisson: float = Field(0.0, ge=0.0)
    poisson_probability: float = Field(1.0, ge=0.0, le=1.0)
    initial_learning_rate: float = Field(1e-4, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    dropout_rate: float = Field(0.0, ge=0.0, lt=1.0)
    n_timepoints: int = Field(1, ge=1)
    subset_fraction: float = Field(1.0, gt=0.0, le=1.0)
    train_val_split: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = 42
    mixed_precision: Literal["auto", "on", "off"] = "auto"
    channels_last: bool = True
    num_workers: int = Field(0, ge=0)
    n_log_images: int = Field(4, ge=0)
    nb_input_channels: int | None = Field(None, ge=1)
    # Training-set options, passed through (read by core.training_set).
    fps: float | None = Field(None, gt=0.0)
    max_n_timepoints: int | None = Field(None, ge=1)
    group_by_acquisition: bool = False
    smooth: Any = None

    @field_validator("brightness_range", mode="before")
    @classmethod
    def _brightness_pair(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (float(value), float(value))
        return value

    @field_validator("brightness_range")
    @classmethod
    def _brightness_order(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 < low <= high:
            raise ValueError(f"must be [low, high] with 0 < low ≤ high, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainingSettings:
        if self.model == "bottleneck_lstm" and self.n_timepoints < 2:
            raise ValueError("model bottleneck_lstm needs n_timepoints ≥ 2 (a sequence)")
        return self

    @classmethod
    def known_keys(cls) -> list[str]:
        """Every accepted key (``subset``, the original's name, is read as subset_fraction)."""
        return [*cls.model_fields, "subset"]

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any] | None, *, source: str = ""
    ) -> TrainingSettings:
        """Validate a settings mapping (``None``, ``{}`` or ``"default"``: all defaults).

        Parameters
        ----------
        values
            The mapping, e.g. one run's ``settings`` from a scheduled settings file.
        source
            A file name to start error messages with.

        Raises
        ------
        TrainingSettingsInvalid
            An unknown key (the message lists the known ones) or a bad value.
        """
        prefix = f"{source}: " if source else ""
        if values is None or values == "default":
            values = {}
        if not isinstance(values, Mapping):
            raise TrainingSettingsInvalid(
                f"{prefix}training settings must be a mapping, got {type(values).__name__}"
            )
        data = {str(k): v for k, v in values.items()}
        if "subset" in data:
            subset = data.pop("subset")
            if subset is None or subset is False:
                subset = 1.0
            if "subset_fraction" in data and data["subset_fraction"] != subset:
                raise TrainingSettingsInvalid(
                    f"{prefix}subset ({subset}) and subset_fraction "
                    f"({data['subset_fraction']}) disagree"
                )
            data["subset_fraction"] = subset
        if data.get("backend") in ("pytorch",):
            data["backend"] = "torch"
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise TrainingSettingsInvalid(
                f"{prefix}unknown training setting(s) {', '.join(unknown)}; known settings: "
                f"{', '.join(sorted(cls.known_keys()))}"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
                for err in exc.errors()
            )
            raise TrainingSettingsInvalid(f"{prefix}invalid training settings: {problems}") from exc

    def as_dict(self) -> dict[str, Any]:
        """Plain YAML-ready values (tuples as lists)."""
        data = self.model_dump(mode="json")
        data["brightness_range"] = list(self.brightness_range)
        return data


def load_settings_file(path: str | Path) -> TrainingSettings:
    """Read a YAML file holding one settings mapping (e.g. ``settings.yaml`` of a model).

    Raises
    ------
    TrainingSettingsInvalid
        Unreadable YAML, unknown keys or bad values; the message starts with the path.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TrainingSettingsInvalid(f"{path}: cannot read training settings: {exc}") from exc
    return TrainingSettings.from_mapping(data, source=str(path))
