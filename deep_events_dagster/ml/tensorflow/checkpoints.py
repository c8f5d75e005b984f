"""Keras weight files: ``keras.weights.h5`` (and ``keras_best``/``keras_last``) written by the
trainer, and the logits network loaded back from one.

The files are Keras HDF5 weight files (``model.save_weights``) whose root attributes also say
what they hold (``deep_events_format`` = :data:`WEIGHTS_FORMAT`, ``settings`` as JSON,
``in_channels``, ``epoch``, ``val_loss``, ``training_set_id``), so one file rebuilds its
network, like torch's ``model.pt``.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from deep_events_dagster.core.fsutil import atomic_path
from deep_events_dagster.ml.config import TrainingSettings
from deep_events_dagster.ml.model_folder import KERAS_WEIGHTS_FILE, SETTINGS_FILE
from deep_events_dagster.ml.tensorflow.compat import keras, tf
from deep_events_dagster.ml.tensorflow.devices import KerasDevice, global_policy, resolve_device
from deep_events_dagster.ml.tensorflow.models import build_keras_model

__all__ = ["WEIGHTS_FORMAT", "WEIGHTS_VERSION", "load_keras_model", "save_weights"]

WEIGHTS_FORMAT = "deep-events-keras-weights"
WEIGHTS_VERSION = 1


def save_weights(
    path: Path,
    model: keras.Model,
    settings: TrainingSettings,
    in_channels: int,
    epoch: int,
    val_loss: float,
    training_set_id: str,
) -> None:
    """Write ``model``'s weights and what rebuilds it to ``path`` (atomically; see
    :func:`load_keras_model`)."""
    import h5py  # a TensorFlow dependency

    with atomic_path(path) as tmp:  # the temporary name ends in .h5: Keras writes HDF5
        model.save_weights(str(tmp))
        with h5py.File(tmp, "r+") as h5:
            h5.attrs["deep_events_format"] = WEIGHTS_FORMAT
            h5.attrs["deep_events_version"] = WEIGHTS_VERSION
            h5.attrs["settings"] = json.dumps(settings.as_dict())
            h5.attrs["in_channels"] = int(in_channels)
            h5.attrs["epoch"] = int(epoch)
            h5.attrs["val_loss"] = float(val_loss)
            h5.attrs["training_set_id"] = training_set_id


def _weights_description(path: Path) -> tuple[TrainingSettings, int]:
    """Settings and ``in_channels`` recorded in a weights file, else the folder's
    ``settings.yaml`` (``in_channels`` = ``n_timepoints``: the trainer checks they agree)."""
    import h5py

    with h5py.File(path, "r") as h5:
        attrs = dict(h5.attrs)
    if attrs.get("deep_events_format") == WEIGHTS_FORMAT:
        settings = TrainingSettings.from_mapping(json.loads(attrs["settings"]), source=str(path))
        return settings, int(attrs["in_channels"])
    settings_file = path.parent / SETTINGS_FILE
    if not settings_file.is_file():
        raise ValueError(f"{path}: not a {WEIGHTS_FORMAT} file and no {SETTINGS_FILE} beside it")
    settings = TrainingSettings.from_mapping(
        yaml.safe_load(settings_file.read_text(encoding="utf-8")), source=str(settings_file)
    )
    return settings, settings.n_timepoints


def load_keras_model(path: str | Path, device: str | KerasDevice = "cpu") -> keras.Model:
    """The logits network (float32) of a model folder's ``keras.weights.h5``, or of any weights
    file the trainer wrote (``keras_best.weights.h5``, ``keras_last.weights.h5``).

    Parameters
    ----------
    path
        A model folder, or one of its weight files.
    device
        Where the weights live (``"cpu"``, ``"cuda:N"``, ``"auto"``).

    Returns
    -------
    keras.Model
        ``N×H×W×T`` → ``N×H×W×1`` logits.

    Raises
    ------
    FileNotFoundError
        No weights file.
    ValueError
        The file does not match the network its settings describe.
    """
    path = Path(path)
    if path.is_dir():
        path = path / KERAS_WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no Keras weights (train a tensorflow model first)")
    device = resolve_device(device)
    settings, in_channels = _weights_description(path)
    with tf.device(device.tf_name), global_policy("float32"):
        model = build_keras_model(settings, in_channels)
        try:
            model.load_weights(str(path))
        except ValueError as exc:
            raise ValueError(f"{path}: weights do not fit the {settings.model}: {exc}") from exc
    return model
