"""Weights between the torch networks and their Keras twins, and the ``model.h5`` export.

* :func:`keras_model_from_torch`: the Keras twin (:mod:`.models`) of a torch ``UNet`` or
  ``BottleneckConvLSTM`` with its weights: convolutions ``out×in×kh×kw`` → ``kh×kw×in×out``;
  batch norm weight, bias, running mean and variance → gamma, beta, moving mean and variance;
  the ConvLSTM cell's one convolution over ``[x, h]`` → ``ConvLSTM2D``'s ``kernel`` (the ``x``
  input channels) and ``recurrent_kernel`` (the ``h`` ones), gates reordered from torch's
  ``i, f, o, g`` to Keras' ``i, f, c, o`` (the bias likewise).
* :func:`torch_state_from_keras`: the reverse, a state dict that ``load_state_dict`` takes on
  ``build_model(settings, in_channels)``, so Keras-trained models reach ONNX/TorchScript too.
* :func:`write_keras_h5` / :func:`load_keras_h5`: the microscope's ``model.h5``.

Compatibility of ``model.h5`` with the microscope's TF 2.10 (``keras.models.load_model(path,
compile=False)``), as verified when this module was written:

* The file is Keras 2's legacy HDF5 format written by ``tf_keras`` (:mod:`.compat`): root
  attributes ``keras_version`` (the writer's, e.g. ``2.21.0``; TF 2.10 only compares it with
  ``"1"``), ``backend`` (``tensorflow``) and ``model_config``; no ``training_config`` (no
  optimizer: nothing to compile); the weights under ``model_weights`` as Keras 2 writes them.
* ``model_config`` holds only standard Keras 2 classes, no ``Lambda``: ``Functional``,
  ``InputLayer``, ``Conv2D``, ``BatchNormalization``, ``ReLU``, ``Dropout``, ``MaxPooling2D``,
  ``UpSampling2D``, ``Concatenate``, ``Activation``, and for the bottleneck ConvLSTM also
  ``TimeDistributed``, ``Reshape``, ``Permute``, ``Cropping3D``, ``ConvLSTM2D``; initialisers
  ``VarianceScaling``, ``Zeros``, ``Ones``.
* ``tf_keras`` 2.21 writes keys that TF 2.10 does not know: ``module``, ``registered_name``
  and ``build_config`` next to each nested ``class_name`` (TimeDistributed's layer,
  initialisers), ``trainable`` in the functional model's config, and ``optional: false`` in
  ``InputLayer``'s config. The last one is fatal: TF 2.10's ``InputLayer`` raises
  "Unrecognized keyword arguments: ['optional']". :func:`.compat.save_keras_2_h5` therefore
  rewrites ``model_config`` without these keys (all informational or at their defaults), and the
  file still loads in ``tf_keras`` 2.21 (tested).
* Checked once by hand, outside the test suite (the project's Python 3.11 cannot install TF
  2.10): with TensorFlow 2.10.1 / Keras 2.10.0 on Python 3.10 and with TensorFlow 2.12.1 /
  Keras 2.12.0, files as ``tf_keras`` 2.21 writes them fail to load (the ``optional`` key) and
  the rewritten files load with ``load_model(path, compile=False)`` for both networks and give
  the torch probabilities within 6e-6. TF 2.10 saving such a loaded model again writes the same
  ``model_config``, key for key (plus ``shared_object_id`` on ConvLSTM2D's initialisers, which
  it does not need to read back); the tests pin these key sets per class.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deep_events_dagster.ml.tensorflow.compat import keras, load_keras_2_h5, save_keras_2_h5
from deep_events_dagster.ml.tensorflow.models import build_keras_model
from deep_events_dagster.ml.torch.models import BottleneckConvLSTM, UNet

__all__ = [
    "keras_model_from_torch",
    "load_keras_h5",
    "torch_state_from_keras",
    "write_keras_h5",
]

# Keras layer-name prefix of each double convolution block, and the torch module holding it.
_DOUBLE_BLOCKS = (
    ("enc0", "encoder.level0"),
    ("enc1", "encoder.level1"),
    ("centre", "centre"),  # U-Net only
    ("dec1", "decoder.up1"),
    ("dec0", "decoder.up0"),
)

# Torch's ConvLSTM cell orders its gates i, f, o, g; Keras' ConvLSTM2D i, f, c (= g), o. The
# permutation is its own inverse, so it serves both directions.
_GATE_ORDER_SWAP = (0, 1, 3, 2)


@dataclass(frozen=True)
class _Architecture:
    """What :func:`~.models.build_keras_model` reads from training settings."""

    model: str
    nb_filters: int
    first_conv_size: int
    dropout_rate: float


@dataclass(frozen=True)
class _LayerPair:
    """One weight-holding layer: its Keras name, its torch module path and its kind."""

    keras_name: str
    torch_path: str
    kind: str  # "conv", "batch_norm" or "conv_lstm"


def _layer_pairs(model_kind: str) -> list[_LayerPair]:
    pairs = []
    for prefix, torch_path in _DOUBLE_BLOCKS:
        if prefix == "centre" and model_kind == "bottleneck_lstm":
            continue
        for index in (1, 2):
            block = f"{torch_path}.{index - 1}"
            pairs.append(_LayerPair(f"{prefix}_conv{index}", f"{block}.0", "conv"))
            pairs.append(_LayerPair(f"{prefix}_bn{index}", f"{block}.1", "batch_norm"))
    if model_kind == "bottleneck_lstm":
        pairs.append(_LayerPair("lstm", "lstm.conv", "conv_lstm"))
        pairs.append(_LayerPair("centre_bn", "centre.0", "batch_norm"))
    pairs.append(_LayerPair("output", "decoder.output", "conv"))
    return pairs


def _architecture_of_torch(torch_model: nn.Module) -> _Architecture:
    if isinstance(torch_model, BottleneckConvLSTM):
        kind = "bottleneck_lstm"
    elif isinstance(torch_model, UNet):
        kind = "unet"
    else:
        raise TypeError(f"expected a UNet or BottleneckConvLSTM, got {type(torch_model).__name__}")
    first_conv = torch_model.encoder.level0[0][0]
    dropout_rates = [m.p for m in torch_model.modules() if isinstance(m, nn.Dropout)]
    return _Architecture(
        model=kind,
        nb_filters=first_conv.out_channels,
        first_conv_size=first_conv.kernel_size[0],
        dropout_rate=float(dropout_rates[0]) if dropout_rates else 0.0,
    )


def _model_kind_of_keras(keras_model: keras.Model) -> str:
    names = {layer.name for layer in keras_model.layers}
    return "bottleneck_lstm" if "lstm" in names else "unet"


def _conv_to_keras(weight: np.ndarray) -> np.ndarray:
    """torch ``out×in×kh×kw`` → Keras ``kh×kw×in×out``."""
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def _conv_to_torch(kernel: np.ndarray) -> np.ndarray:
    """Keras ``kh×kw×in×out`` → torch ``out×in×kh×kw``."""
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def _swap_gates(array: np.ndarray, axis: int) -> np.ndarray:
    blocks = np.split(array, 4, axis=axis)
    return np.concatenate([blocks[i] for i in _GATE_ORDER_SWAP], axis=axis)


def _keras_weights(pair: _LayerPair, state: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The Keras weights of one layer from the torch state (numpy arrays)."""
    path = pair.torch_path
    if pair.kind == "conv":
        return [_conv_to_keras(state[f"{path}.weight"]), state[f"{path}.bias"]]
    if pair.kind == "batch_norm":
        return [
            state[f"{path}.{name}"] for name in ("weight", "bias", "running_mean", "running_var")
        ]
    # One torch convolution over [x, h] → Keras kernel (x part) and recurrent kernel (h part).
    weight = _swap_gates(state[f"{path}.weight"], axis=0)
    hidden = weight.shape[0] // 4
    inputs = weight.shape[1] - hidden
    return [
        _conv_to_keras(weight[:, :inputs]),
        _conv_to_keras(weight[:, inputs:]),
        _swap_gates(state[f"{path}.bias"], axis=0),
    ]


def _torch_weights(pair: _LayerPair, weights: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The torch state entries of one layer from its Keras weights."""
    path = pair.torch_path
    if pair.kind == "conv":
        kernel, bias = weights
        return {f"{path}.weight": _conv_to_torch(kernel), f"{path}.bias": bias}
    if pair.kind == "batch_norm":
        names = ("weight", "bias", "running_mean", "running_var")
        return {f"{path}.{name}": value for name, value in zip(names, weights, strict=True)}
    kernel, recurrent_kernel, bias = weights
    weight = np.concatenate([_conv_to_torch(kernel), _conv_to_torch(recurrent_kernel)], axis=1)
    return {
        f"{path}.weight": np.ascontiguousarray(_swap_gates(weight, axis=0)),
        f"{path}.bias": np.ascontiguousarray(_swap_gates(bias, axis=0)),
    }


def keras_model_from_torch(torch_model: nn.Module, *, probabilities: bool = True) -> keras.Model:
    """The Keras twin of a torch :class:`UNet` or :class:`BottleneckConvLSTM`, same weights.

    Parameters
    ----------
    torch_model
        The trained torch network (its architecture is read from its modules).
    probabilities
        End with a sigmoid (the microscope's ``model.h5`` form) instead of returning logits.

    Returns
    -------
    keras.Model
        ``N×H×W×T`` → ``N×H×W×1``; in inference mode it computes what ``torch_model.eval()``
        computes on the ``N×T×H×W`` transpose (up to float rounding).
    """
    architecture = _architecture_of_torch(torch_model)
    keras_model = build_keras_model(
        architecture, int(torch_model.in_channels), probabilities=probabilities
    )
    state = {
        name: value.detach().cpu().float().numpy()
        for name, value in torch_model.state_dict().items()
        if not name.endswith("num_batches_tracked")
    }
    for pair in _layer_pairs(architecture.model):
        keras_model.get_layer(pair.keras_name).set_weights(_keras_weights(pair, state))
    return keras_model


def torch_state_from_keras(keras_model: keras.Model) -> dict[str, torch.Tensor]:
    """The torch state dict of a Keras twin (logits or probabilities model).

    ``build_model(settings, in_channels).load_state_dict(torch_state_from_keras(model))`` then
    gives a torch network computing what the Keras model computes (logits), e.g. to export a
    Keras-trained model to ONNX or TorchScript through torch.

    Parameters
    ----------
    keras_model
        A model built by :func:`~.models.build_keras_model` (or loaded from its ``.h5``).

    Returns
    -------
    dict[str, torch.Tensor]
        Every parameter and buffer of the torch network, ``num_batches_tracked`` at 0.
    """
    state: dict[str, torch.Tensor] = {}
    for pair in _layer_pairs(_model_kind_of_keras(keras_model)):
        weights = keras_model.get_layer(pair.keras_name).get_weights()
        for name, value in _torch_weights(pair, weights).items():
            state[name] = torch.from_numpy(np.array(value, dtype=np.float32))
        if pair.kind == "batch_norm":
            state[f"{pair.torch_path}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return state


def write_keras_h5(keras_model: keras.Model, path: str | os.PathLike) -> Path:
    """Save a Keras model (the probabilities form, for the microscope) as a Keras 2 HDF5 file.

    The file is written under a temporary name in the same folder and renamed, so ``path`` is
    never a half-written file. The optimizer is not saved.

    Parameters
    ----------
    keras_model
        The model, e.g. from :func:`keras_model_from_torch` (``probabilities=True``).
    path
        The ``.h5`` file to write (replaced if it exists).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name beside the target (same file system, so the rename is atomic), created by
    # HDF5 with the usual permissions.
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.h5")
    try:
        save_keras_2_h5(keras_model, temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def load_keras_h5(path: str | os.PathLike) -> keras.Model:
    """Load a Keras 2 ``.h5`` model as the microscope does: ``load_model(path, compile=False)``."""
    return load_keras_2_h5(path)
