"""Keras prediction: probabilities of a stack of samples, and a trained model folder as a
:class:`deep_events_dagster.ml.backend.Predictor`.

:func:`predict` is what the trainer's validation panels and the evaluation use;
:func:`load_predictor` is the tensorflow backend's
:meth:`~deep_events_dagster.ml.backend.Backend.load_predictor`. Frame sides that are not
multiples of :data:`FRAME_MULTIPLE` are padded with zeros and the result cropped back.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np

from deep_events_dagster.ml.tensorflow.checkpoints import load_keras_model
from deep_events_dagster.ml.tensorflow.compat import keras, tf
from deep_events_dagster.ml.tensorflow.devices import KerasDevice, resolve_device

__all__ = ["FRAME_MULTIPLE", "KerasPredictor", "channels_last", "load_predictor", "predict"]

# Keras networks upsample by exactly 2, twice: frame sides must divide by 4.
FRAME_MULTIPLE = 4

_PROBABILITY_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _probability_function(model: keras.Model):
    """A traced ``x → σ(logits)[..., 0]`` for ``model`` (traced once per model)."""
    function = _PROBABILITY_FUNCTIONS.get(model)
    if function is None:
        channels = int(model.input_shape[-1])

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32)])
        def function(x):
            logits = model(x, training=False)
            return tf.sigmoid(tf.cast(logits, tf.float32))[..., 0]

        _PROBABILITY_FUNCTIONS[model] = function
    return function


def channels_last(images: np.ndarray) -> np.ndarray:
    """``N×T×H×W`` (any array-like, e.g. a memory-map slice) → float32 ``N×H×W×T``."""
    return np.ascontiguousarray(np.asarray(images, dtype=np.float32).transpose(0, 2, 3, 1))


def predict(
    model: keras.Model,
    images: np.ndarray,
    batch_size: int = 8,
    device: str | KerasDevice = "cpu",
) -> np.ndarray:
    """Probabilities ``σ(logits)`` for a stack of samples.

    Parameters
    ----------
    model
        A logits network from :func:`load_keras_model` or
        :func:`~deep_events_dagster.ml.tensorflow.models.build_keras_model`.
    images
        ``N×T×H×W`` float32 (a memory map is fine: read batch by batch); a window longer than
        the model's input gives its latest frames. Sides that are not multiples of 4 are padded
        with zeros (bottom, right) and the result cropped back.
    batch_size
        Samples per forward pass.
    device
        Where to compute.

    Returns
    -------
    numpy.ndarray
        ``N×H×W`` float32 in [0, 1].
    """
    device = resolve_device(device)
    wanted = int(model.input_shape[-1])
    if images.shape[1] < wanted:
        raise ValueError(f"samples have {images.shape[1]} frame(s); the model needs {wanted}")
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % FRAME_MULTIPLE, -width % FRAME_MULTIPLE
    function = _probability_function(model)
    out = np.empty((len(images), height, width), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        x = channels_last(images[start : start + batch_size, images.shape[1] - wanted :])
        if pad_h or pad_w:
            x = np.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
        with tf.device(device.tf_name):
            probabilities = function(tf.constant(x)).numpy()
        out[start : start + len(x)] = probabilities[:, :height, :width]
    return out


class KerasPredictor:
    """A Keras model behind :class:`deep_events_dagster.ml.backend.Predictor`."""

    def __init__(self, model: keras.Model, device: str | KerasDevice = "cpu"):
        self.model = model
        self.device = resolve_device(device)
        self.in_channels = int(model.input_shape[-1])

    def predict(self, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """``N×T×H×W`` samples → ``N×H×W`` probabilities (see :func:`predict`)."""
        return predict(self.model, images, batch_size=batch_size, device=self.device)


def load_predictor(
    model_dir: str | Path, device: str | KerasDevice = "cpu", precision: str = "float32"
) -> KerasPredictor:
    """The kept weights of a tensorflow model folder (``keras.weights.h5``) as a predictor.

    ``precision`` is accepted for the backends' common signature; Keras models always predict
    in float32.
    """
    if precision not in ("float32", "auto"):
        raise ValueError(f"precision must be float32 or auto, got {precision!r}")
    device = resolve_device(device)
    return KerasPredictor(load_keras_model(model_dir, device), device)
