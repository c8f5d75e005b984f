"""The training settings model: one run's settings of the original deep-events "scheduled
settings", validated (:class:`TrainingSettings`, read from a mapping or a ``settings.yaml``).

A settings file's ``settings:`` mapping (see :mod:`deep_events_dagster.core.training_settings`)
becomes one :class:`TrainingSettings`. Every key of the original is accepted with the original's
meaning and default; an unknown key is an error that lists the known ones (a typo such as
``nb_filter`` must not silently train with the default).

Keys that shape the *training set* (``n_timepoints``, ``fps``, ``train_val_split``,
``subset_fraction``, ``max_n_timepoints``, ``group_by_acquisition``, ``smooth``) are accepted
here so one mapping describes the whole run (:attr:`TrainingSettings.training_set` gives them to
:func:`deep_events_dagster.core.training_set.build_training_set`); the trainer only checks
``n_timepoints`` against the data. Their defaults, rules and messages are declared once, in
:class:`~deep_events_dagster.core.training_set_parameters.TrainingSetParameters` (with the
original's ``subset``); the backends and their aliases in
:mod:`deep_events_dagster.core.training_run` (read by its ``backend_name``).

A whole settings file is validated when it is read: :mod:`deep_events_dagster.ml.training_runs`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deep_events_dagster.core.errors import ConfigurationError
from deep_events_dagster.core.training_run import BACKENDS, DEFAULT_BACKEND, Backend, backend_name
from deep_events_dagster.core.training_set_parameters import (
    TRAINING_SET_ALIASES,
    TrainingSetParameters,
)

__all__ = [
    "SETTING_ALIASES",
    "LossWeight",
    "TrainingSettings",
    "TrainingSettingsInvalid",
    "load_settings_file",
]

# The original's other names of a setting (alias → field): the training set's (``subset``) and
# the trainer's. Giving both with different values is an error.
SETTING_ALIASES = {
    **TRAINING_SET_ALIASES,
    "logdir": "log_dir",
    "dataloader_workers": "num_workers",
}
# The training-set parameters and their defaults (declared in core, where the training set
# reads them).
_TRAINING_SET_KEYS = tuple(TrainingSetParameters.model_fields)
_SET = TrainingSetParameters()
# Keys accepted for compatibility that change nothing: field → why (``{training_sets}`` is
# filled in by :meth:`TrainingSettings.effect_notes`).
_WITHOUT_EFFECT = {
    "data_folder": "training sets are built from the catalog into {training_sets}",
    "data_dir": "training sets are built from the catalog into {training_sets}",
}


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
        ``"torch"`` (PyTorch) or ``"tensorflow"`` (Keras through ``tf_keras``): the same networks,
        recipe and model-folder files (:mod:`deep_events_dagster.ml.backend`). The original's
        aliases (``pytorch``, ``tf``, ``keras``) and any case are accepted.
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
        Adam's (initial) learning rate.
    weight_decay
        Adam's L2 weight decay (the original's 1e-4).
    dropout_rate
        Dropout after every convolution block (0: none).
    lr_schedule
        ``"plateau"``: the learning rate drops when the validation loss stops improving
        (ReduceLROnPlateau, as the original's TensorFlow code); ``"onecycle"``: one-cycle
        schedule (as the original's torch code); ``"constant"``: no schedule.
    gradient_clip_norm
        Gradients are clipped to this global L2 norm; 0 = no clipping.
    output_bias_prior
        Initialise the last layer's bias from the training set's share of positive pixels
        (``log(p / (1 − p))``), so training starts at the prior instead of 0.5.
    positive_fraction
        Minimum share in [0, 1] of positive samples per epoch, reached by oversampling the
        positives; None: the trainer's default.
    patch_size
        Side (px) of the random window each training sample is cut to before augmentation (a
        positive's window keeps its event); evaluation and prediction use whole frames.
        Default 128 (the original's crop size): a 256² crop costs four times as much per
        step. None: train on whole crops.
    monitor
        Which epoch's weights are kept: ``"event_f1"`` (default) the one deciding the eval
        events best at the threshold the evaluation chooses (event-level F1; ties: lower
        validation loss); ``"val_loss"`` the lowest validation loss (the original's choice).
        See :mod:`deep_events_dagster.ml.epochs`.
    patience
        Early stopping: training stops after this many epochs without improvement of the
        monitored score and the best weights are restored; None: never stop early.
    val_frequency
        Validate every n epochs (the last epoch is always validated).
    save_frequency
        Write the last-epoch checkpoint (``model_last.pt`` / ``keras_last.weights.h5``) every n
        epochs (and after the last one).
    log_batch_frequency
        Log the training loss to TensorBoard every n batches; 0: per epoch only.
    log_dir
        TensorBoard folder inside the model folder (a relative path without ``..``); the
        original's ``logdir`` is read as this.
    n_timepoints
        Frames per sample (checked against the training set's ``T``).
    subset_fraction
        Training-set option (fraction (0, 1] of training events kept; the original's ``subset``,
        where false/null mean 1); the trainer uses every sample the training set holds.
    train_val_split
        Training-set option: fraction of events held out for evaluation (the core's meaning,
        default 0.2).
    seed
        Seeds Python, numpy and the backend, the shuffling and the augmentation.
    mixed_precision
        ``"auto"``: float16 autocast with a gradient scaler on CUDA, bfloat16 autocast on a CPU
        with native bfloat16 instructions (avx512_bf16 / AMX), float32 otherwise; ``"off"``:
        float32 everywhere; ``"on"``: like auto, and bfloat16 on any CPU.
    channels_last
        Keep activations channels-last (NHWC) in training: the same numbers, faster convolutions
        (oneDNN on CPU, tensor cores on GPU).
    num_workers
        DataLoader worker processes (the original's ``dataloader_workers``); 0 (default)
        augments in the training process on the CPU, and means "up to 4" on a GPU, where the
        model would otherwise wait for data.
    n_log_images
        Eval samples whose input, ground truth and prediction go to TensorBoard each epoch.
    nb_input_channels
        The original wrote this back into its settings; when given it must match the data.
    fps
        Training-set option: the frame rate (frames per second, like ``db.yaml``'s ``fps``)
        the samples are taken at; None: every event at its own rate.
    max_n_timepoints
        Training-set option: the longest window the training set serves.
    group_by_acquisition
        Training-set option: keep each acquisition's events on one side of the split.
    smooth
        Training-set option: σ (pixels) of a Gaussian blur of the ground truth; 0 (or
        false/null) = off.
    data_folder, data_dir
        Accepted and **without effect**: the original used them to find its training data; the
        platform builds training sets from the catalog itself (see :meth:`effect_notes`).

    The training-set options (``n_timepoints``, ``fps``, ``train_val_split``,
    ``group_by_acquisition``, ``subset_fraction``, ``max_n_timepoints``, ``smooth``) are checked
    by the training set's rules, :meth:`TrainingSetParameters.from_settings`, with its messages.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Backend = DEFAULT_BACKEND
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
    initial_learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    dropout_rate: float = Field(0.0, ge=0.0, lt=1.0)
    lr_schedule: Literal["plateau", "onecycle", "constant"] = "plateau"
    gradient_clip_norm: float = Field(1.0, ge=0.0)
    output_bias_prior: bool = True
    positive_fraction: float | None = Field(None, ge=0.0, le=1.0)
    patch_size: int | None = Field(128, ge=8)
    monitor: Literal["event_f1", "val_loss"] = "event_f1"
    patience: int | None = Field(15, ge=1)
    val_frequency: int = Field(1, ge=1)
    save_frequency: int = Field(1, ge=1)
    log_batch_frequency: int = Field(0, ge=0)
    log_dir: str = "logs"
    # Training-set options (checked by TrainingSetParameters' rules, see _training_set_rules).
    n_timepoints: int = _SET.n_timepoints
    subset_fraction: float = _SET.subset_fraction
    train_val_split: float = _SET.train_val_split
    seed: int = 42
    mixed_precision: Literal["auto", "on", "off"] = "auto"
    channels_last: bool = True
    num_workers: int = Field(0, ge=0)
    n_log_images: int = Field(4, ge=0)
    nb_input_channels: int | None = Field(None, ge=1)
    # Training-set options, passed through (read by core.training_set).
    fps: float | None = _SET.fps
    max_n_timepoints: int | None = _SET.max_n_timepoints
    group_by_acquisition: bool = _SET.group_by_acquisition
    smooth: float = _SET.smooth
    # Accepted for the original's files, without effect.
    data_folder: str | None = None
    data_dir: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _training_set_rules(cls, values: Any) -> Any:
        """The training-set keys given, checked and normalised by the training set's own rules
        (``3.0`` → ``3``, ``subset_fraction: null`` → 1, ``smooth: false`` → 0); a bad value
        raises their :class:`ConfigurationError`."""
        if not isinstance(values, Mapping):
            return values
        given = [name for name in _TRAINING_SET_KEYS if name in values]
        if not given:
            return values
        params = TrainingSetParameters.from_settings({name: values[name] for name in given})
        return {**values, **{name: getattr(params, name) for name in given}}

    @field_validator("backend", mode="before")
    @classmethod
    def _backend_alias(cls, value: Any) -> Any:
        if isinstance(value, str) and backend_name(value) in BACKENDS:
            return backend_name(value)
        return value

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

    @field_validator("log_dir", "data_folder", "data_dir", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("log_dir")
    @classmethod
    def _relative_log_dir(cls, value: str) -> str:
        text = value.strip()
        if (
            PurePosixPath(text).is_absolute()
            or PureWindowsPath(text).is_absolute()
            or PureWindowsPath(text).drive
            or text.startswith(("\\", "~"))
        ):
            raise ValueError(
                f"must be a folder inside the model folder (a relative path), got {value!r}"
            )
        parts = [p for p in re.split(r"[\\/]+", text) if p not in ("", ".")]
        if ".." in parts:
            raise ValueError(f"must stay inside the model folder (no '..'), got {value!r}")
        if not parts:
            raise ValueError(f"must name a folder inside the model folder, got {value!r}")
        return "/".join(parts)

    @model_validator(mode="after")
    def _consistent(self) -> TrainingSettings:
        if self.model == "bottleneck_lstm" and self.n_timepoints < 2:
            raise ValueError("model bottleneck_lstm needs n_timepoints ≥ 2 (a sequence)")
        return self

    @classmethod
    def known_keys(cls) -> list[str]:
        """Every accepted key: the fields and the original's aliases (``subset``, ``logdir``,
        ``dataloader_workers``)."""
        return [*cls.model_fields, *SETTING_ALIASES]

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

        Returns
        -------
        TrainingSettings
            Its ``model_fields_set`` names the keys the mapping gave (aliases by their field).

        Raises
        ------
        TrainingSettingsInvalid
            An unknown key (the message lists the known ones), a bad value (the message names
            the key and what is allowed; a bad training-set option: the training set's message,
            :meth:`TrainingSetParameters.from_settings`), or an alias disagreeing with its
            field; one line.
        """
        prefix = f"{source}: " if source else ""
        if values is None or values == "default":
            values = {}
        if not isinstance(values, Mapping):
            raise TrainingSettingsInvalid(
                f"{prefix}training settings must be a mapping, got {type(values).__name__}"
            )
        data = {str(k): v for k, v in values.items()}
        unknown = sorted(set(data) - set(cls.known_keys()))
        if unknown:
            described = []
            for key in unknown:
                close = difflib.get_close_matches(key, cls.known_keys(), n=1, cutoff=0.75)
                described.append(f"{key} (did you mean {close[0]}?)" if close else key)
            raise TrainingSettingsInvalid(
                f"{prefix}unknown training setting{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(described)}; allowed settings: {', '.join(sorted(cls.known_keys()))}"
            )
        for alias, name in SETTING_ALIASES.items():
            if alias not in data:
                continue
            value = data.pop(alias)
            if name in data and not _same_setting(name, value, data[name]):
                raise TrainingSettingsInvalid(
                    f"{prefix}training settings {alias} ({value!r}) and {name} "
                    f"({data[name]!r}) disagree; "
                    f"give one of them ({alias} is the original's name of {name})"
                )
            data[name] = value
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                cause = (err.get("ctx") or {}).get("error")
                if isinstance(cause, ConfigurationError):  # the training set's rules
                    raise TrainingSettingsInvalid(f"{prefix}{cause}") from exc
            problems = "; ".join(_describe_error(err) for err in exc.errors())
            raise TrainingSettingsInvalid(f"{prefix}invalid training settings: {problems}") from exc

    @property
    def training_set(self) -> TrainingSetParameters:
        """The settings that shape this run's training set (what ``build_training_set`` takes)."""
        return TrainingSetParameters(**{name: getattr(self, name) for name in _TRAINING_SET_KEYS})

    def as_dict(self) -> dict[str, Any]:
        """Plain YAML-ready values (tuples as lists)."""
        data = self.model_dump(mode="json")
        data["brightness_range"] = list(self.brightness_range)
        return data

    def effect_notes(self, training_sets: str | Path | None = None) -> list[str]:
        """One line per key that was given but changes nothing (accepted for the original's
        files), e.g. ``data_folder``.

        Parameters
        ----------
        training_sets
            Where this run's training sets go, named in the notes (default
            ``<folder>/training_sets``).

        Returns
        -------
        list of str
            Empty when every given key has an effect.
        """
        where = str(training_sets) if training_sets is not None else "<folder>/training_sets"
        notes = []
        for name, why in _WITHOUT_EFFECT.items():
            value = getattr(self, name)
            if name in self.model_fields_set and value is not None:
                notes.append(
                    f"{name}: {value} is without effect — {why.format(training_sets=where)}"
                )
        return notes

    def tensorboard_dir(self, model_dir: str | Path) -> Path:
        """The TensorBoard folder of a model folder (``<model_dir>/<log_dir>``)."""
        return Path(model_dir) / self.log_dir


def _same_setting(name: str, first: Any, second: Any) -> bool:
    """Whether two values of setting ``name`` mean the same (a training-set option's by the
    training set's rules: ``subset: false`` and ``subset_fraction: 1`` agree)."""
    if first == second:
        return True
    if name not in _TRAINING_SET_KEYS:
        return False
    try:
        read = [TrainingSetParameters.from_settings({name: v}) for v in (first, second)]
    except ConfigurationError:
        return False
    return getattr(read[0], name) == getattr(read[1], name)


def _describe_error(err: Mapping[str, Any]) -> str:
    """One pydantic error as ``key: what is wrong (got value)``."""
    loc = ".".join(str(p) for p in err.get("loc", ())) or "settings"
    message = str(err.get("msg", "invalid")).replace("\n", " ")
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if err.get("type") == "extra_forbidden":
        parent = err["loc"][0] if len(err.get("loc", ())) > 1 else None
        if parent == "weight":
            return f"{loc}: unknown key; allowed keys of weight: alpha, gamma"
        return f"{loc}: unknown key"
    if loc == "weight" and err.get("type") == "model_type":
        return f"weight: must be a mapping with alpha and gamma (got {err.get('input')!r})"
    if loc == "settings":
        return message
    got = err.get("input")
    if "got" in message or isinstance(got, Mapping):
        return f"{loc}: {message}"
    return f"{loc}: {message} (got {got!r})"


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
