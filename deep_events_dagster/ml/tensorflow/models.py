"""The Keras twin of :mod:`deep_events_dagster.ml.torch.models` (Keras 2 API, see :mod:`.compat`).

Same networks, same layers, same parameter counts; only the layout differs: Keras models take
``N×H×W×T`` (channels last, frame ``t`` in channel ``t``, oldest first) and return ``N×H×W×1``
logits, or probabilities when built with ``probabilities=True`` (a final sigmoid
``Activation`` named ``probabilities``: the form the microscope loads from ``model.h5``).

Layer by layer against torch:

* ``Conv2D(padding="same")`` pads even kernels like torch's ``SameConv2d``: TensorFlow puts
  ``(k−1)//2`` zeros before and the rest after (5 and 6 for ``k = 12``);
* ``BatchNormalization(epsilon=1e-5, momentum=0.9)`` is ``BatchNorm2d(eps=1e-5, momentum=0.1)``
  (Keras' momentum weighs the old running value, torch's the new batch);
* ``UpSampling2D(2, interpolation="bilinear")`` samples at half-pixel centres, which is torch's
  ``F.interpolate(bilinear, align_corners=False)`` to twice the size. Torch upsamples to the
  skip connection's size, so any ``H×W`` works there; here ``H`` and ``W`` must be divisible
  by 4 (else the concatenation with the skip connection fails);
* kernels start Kaiming-normal (fan-out, untruncated ``VarianceScaling(2, "fan_out")``) as in
  torch, also ``ConvLSTM2D``'s recurrent kernel (torch initialises its cell's one convolution
  so); biases start at zero, the forget gate's too (no ``unit_forget_bias``, as torch).

Layers are named deterministically (``enc0_conv1``, ``enc0_bn1``, ``enc0_relu1``,
``enc0_drop1``, ``enc0_conv2``, …, ``enc0_pool``, ``enc1_…``, ``centre_…``, ``dec1_up``,
``dec1_concat``, ``dec1_conv1``, …, ``dec0_…``, ``output``) so that weights can be matched by
name (:mod:`.convert`). Only standard Keras layer classes are used, never ``Lambda`` (it would
store Python bytecode that another Python version cannot read).

Bottleneck ConvLSTM (``T ≥ 1``), for any ``H×W`` and without ``Lambda``:

* the input ``N×H×W×T`` becomes a sequence ``N×T×H×W×1`` through
  ``TimeDistributed(Reshape((-1, T, 1)))`` (``TimeDistributed`` folds ``H`` into the batch, so
  the reshape has a single unknown size, ``W``) and ``Permute``;
* the encoder runs on all frames with shared weights: its convolutions and poolings are
  ``TimeDistributed`` (named like the U-Net's, e.g. ``enc0_conv1``); batch norm, ReLU and
  dropout act on the sequence directly, so batch norm normalises over all ``N·T`` frames, as
  torch's encoder does on its ``(B·T)×C×H×W`` batch;
* ``ConvLSTM2D(4nb, 3, padding="same", recurrent_activation="sigmoid")`` (``lstm``) runs over
  the pooled features, then ``centre_bn``, ``centre_relu`` (and ``centre_drop``);
* the decoder takes the last frame's skip connections, cut out of the sequences with
  ``Cropping3D`` and made 2-D again with ``Permute`` + ``TimeDistributed(Reshape)``.

(A ``TimeDistributed`` nested encoder ``Model`` with three outputs would be simpler, but Keras 2
cannot wrap a multi-output model in ``TimeDistributed``: its mask computation fails.)
"""

from __future__ import annotations

import numpy as np

from deep_events_dagster.ml.tensorflow.compat import keras

__all__ = [
    "MODEL_KINDS",
    "build_keras_model",
    "count_keras_parameters",
]

MODEL_KINDS = ("unet", "bottleneck_lstm")

_BN_EPSILON = 1e-5
_BN_MOMENTUM = 0.9


def _kaiming_fan_out() -> keras.initializers.Initializer:
    # A new instance per layer: a reused unseeded initializer draws identical values.
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def _conv_block(
    x, filters: int, kernel_size: int, dropout: float, prefix: str, index: int, per_frame: bool
):
    """Convolution ("same") → batch norm → ReLU → dropout: ``<prefix>_conv<index>`` etc.

    ``per_frame``: ``x`` is a sequence ``N×T×H×W×C`` and the convolution runs on every frame
    (``TimeDistributed``, named like the plain convolution so weights match by name); batch norm,
    ReLU and dropout work on any rank, and batch norm then normalises over all ``N·T`` frames,
    as torch's encoder does on its ``(B·T)×C×H×W`` batch.
    """
    conv = keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        kernel_initializer=_kaiming_fan_out(),
        name=f"{prefix}_conv{index}" + ("_frame" if per_frame else ""),
    )
    if per_frame:
        conv = keras.layers.TimeDistributed(conv, name=f"{prefix}_conv{index}")
    x = conv(x)
    x = keras.layers.BatchNormalization(
        epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=f"{prefix}_bn{index}"
    )(x)
    x = keras.layers.ReLU(name=f"{prefix}_relu{index}")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name=f"{prefix}_drop{index}")(x)
    return x


def _double(x, filters: int, kernel_size: int, dropout: float, prefix: str, per_frame=False):
    x = _conv_block(x, filters, kernel_size, dropout, prefix, 1, per_frame)
    return _conv_block(x, filters, kernel_size, dropout, prefix, 2, per_frame)


def _max_pool(x, name: str, per_frame: bool):
    if per_frame:
        pool = keras.layers.MaxPooling2D(2, name=f"{name}_frame")
        return keras.layers.TimeDistributed(pool, name=name)(x)
    return keras.layers.MaxPooling2D(2, name=name)(x)


def _encoder(x, nb: int, first_conv_size: int, dropout: float, per_frame: bool = False):
    """Levels 0 and 1: returns (skip 0, skip 1, pooled level 1), per frame for sequences."""
    skip0 = _double(x, nb, first_conv_size, dropout, "enc0", per_frame)
    skip1 = _double(_max_pool(skip0, "enc0_pool", per_frame), 2 * nb, 3, dropout, "enc1", per_frame)
    return skip0, skip1, _max_pool(skip1, "enc1_pool", per_frame)


def _up_and_merge(x, skip, name: str):
    up = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up")(x)
    return keras.layers.Concatenate(name=f"{name}_concat")([skip, up])


def _decoder(centre, skip0, skip1, nb: int, dropout: float, probabilities: bool):
    x = _double(_up_and_merge(centre, skip1, "dec1"), 2 * nb, 3, dropout, "dec1")
    x = _double(_up_and_merge(x, skip0, "dec0"), nb, 3, dropout, "dec0")
    x = keras.layers.Conv2D(1, 1, kernel_initializer=_kaiming_fan_out(), name="output")(x)
    if probabilities:
        x = keras.layers.Activation("sigmoid", name="probabilities")(x)
    return x


def _last_frame(sequence, frames: int, channels: int, name: str):
    """``N×T×H×W×C`` → ``N×H×W×C`` of the last frame, for dynamic ``H×W``, without ``Lambda``."""
    last = keras.layers.Cropping3D(((frames - 1, 0), (0, 0), (0, 0)), name=f"{name}_last")(
        sequence
    )  # N×1×H×W×C
    last = keras.layers.Permute((2, 3, 1, 4), name=f"{name}_time_last")(last)  # N×H×W×1×C
    drop_time = keras.layers.Reshape((-1, channels), name=f"{name}_2d_frame")
    return keras.layers.TimeDistributed(drop_time, name=f"{name}_2d")(last)  # N×H×W×C


def _unet(frames, nb: int, first_conv_size: int, dropout: float):
    skip0, skip1, pooled = _encoder(frames, nb, first_conv_size, dropout)
    return _double(pooled, 4 * nb, 3, dropout, "centre"), skip0, skip1


def _bottleneck_lstm(frames, n_frames: int, nb: int, first_conv_size: int, dropout: float):
    # N×H×W×T → N×H×W×T×1 (TimeDistributed folds H into the batch, so Reshape has one unknown,
    # W) → N×T×H×W×1.
    sequence = keras.layers.TimeDistributed(
        keras.layers.Reshape((-1, n_frames, 1), name="frames_add_channel_frame"),
        name="frames_add_channel",
    )(frames)
    sequence = keras.layers.Permute((3, 1, 2, 4), name="frames_as_sequence")(sequence)

    skip0_seq, skip1_seq, pooled_seq = _encoder(
        sequence, nb, first_conv_size, dropout, per_frame=True
    )

    hidden = keras.layers.ConvLSTM2D(
        4 * nb,
        3,
        padding="same",
        recurrent_activation="sigmoid",
        return_sequences=False,
        kernel_initializer=_kaiming_fan_out(),
        recurrent_initializer=_kaiming_fan_out(),
        unit_forget_bias=False,
        name="lstm",
    )(pooled_seq)
    centre = keras.layers.BatchNormalization(
        epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name="centre_bn"
    )(hidden)
    centre = keras.layers.ReLU(name="centre_relu")(centre)
    if dropout > 0:
        centre = keras.layers.Dropout(dropout, name="centre_drop")(centre)
    skip0 = _last_frame(skip0_seq, n_frames, nb, "skip0")
    skip1 = _last_frame(skip1_seq, n_frames, 2 * nb, "skip1")
    return centre, skip0, skip1


def build_keras_model(settings, in_channels: int, *, probabilities: bool = False) -> keras.Model:
    """The Keras network a :class:`~deep_events_dagster.ml.config.TrainingSettings` asks for.

    Parameters
    ----------
    settings
        Anything with ``model`` (``"unet"`` or ``"bottleneck_lstm"``), ``nb_filters``,
        ``first_conv_size`` and ``dropout_rate``, e.g. the training settings.
    in_channels
        Frames per sample (``T``): the input is ``N×H×W×T``, ``H`` and ``W`` any multiple of 4.
    probabilities
        Return probabilities (a final sigmoid layer named ``probabilities``) instead of logits.

    Returns
    -------
    keras.Model
        A functional model ``N×H×W×T`` → ``N×H×W×1`` named after ``settings.model``.
    """
    if settings.model not in MODEL_KINDS:
        raise ValueError(f"unknown model {settings.model!r}; expected one of {MODEL_KINDS}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be at least 1, got {in_channels}")
    nb = int(settings.nb_filters)
    first_conv_size = int(settings.first_conv_size)
    dropout = float(settings.dropout_rate)

    frames = keras.Input((None, None, in_channels), name="frames")
    if settings.model == "unet":
        centre, skip0, skip1 = _unet(frames, nb, first_conv_size, dropout)
    else:
        centre, skip0, skip1 = _bottleneck_lstm(frames, in_channels, nb, first_conv_size, dropout)
    outputs = _decoder(centre, skip0, skip1, nb, dropout, probabilities)
    return keras.Model(frames, outputs, name=settings.model)


def count_keras_parameters(model: keras.Model) -> int:
    """Trainable parameters (batch-norm moving statistics are not trainable, not counted)."""
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
