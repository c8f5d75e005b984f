"""Torch ⇄ Keras weights give the same outputs; ``model.h5`` loads back as the microscope does."""

import json
import os

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from deep_events_dagster.ml.config import TrainingSettings
from deep_events_dagster.ml.tensorflow import compat, convert
from deep_events_dagster.ml.tensorflow.compat import keras, keras_2_10_model_config
from deep_events_dagster.ml.tensorflow.convert import (
    keras_model_from_torch,
    load_keras_h5,
    torch_state_from_keras,
    write_keras_h5,
)
from deep_events_dagster.ml.tensorflow.models import build_keras_model
from deep_events_dagster.ml.torch.models import BottleneckConvLSTM, UNet, build_model

INPUT_SIZES = [(2, 64, 64), (1, 96, 128)]  # (batch, H, W)
ATOL = 1e-4

ARCHITECTURES = {
    "unet-1-16-12": lambda: UNet(1, 16, 12),
    "unet-3-8-5-dropout": lambda: UNet(3, 8, 5, 0.2),
    "lstm-3-8-5": lambda: BottleneckConvLSTM(3, 8, 5),
    "lstm-1-4-4-dropout": lambda: BottleneckConvLSTM(1, 4, 4, 0.1),
}


def _randomised(name: str, seed: int) -> nn.Module:
    """Architecture ``name`` with random weights, biases and BN statistics (so that every
    transferred number matters), in eval mode; the same for the same seed."""
    torch.manual_seed(seed)
    model = ARCHITECTURES[name]()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(torch.rand(n, generator=generator) - 0.5)
                module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            elif isinstance(module, nn.Conv2d):
                module.bias.copy_(0.2 * torch.randn(module.out_channels, generator=generator))
    return model.eval()


def _torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _keras_output(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """``B×T×H×W`` in, ``B×1×H×W`` out, through the Keras ``N×H×W×T`` layout."""
    y = model(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), training=False).numpy()
    return y.transpose(0, 3, 1, 2)


def _inputs(frames: int, seed: int):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(b, frames, h, w)).astype(np.float32) for b, h, w in INPUT_SIZES]


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def converted(request):
    torch_model = _randomised(request.param, seed=len(request.param))
    return torch_model, keras_model_from_torch(torch_model, probabilities=False)


def test_keras_twin_computes_the_torch_logits(converted):
    torch_model, keras_model = converted
    for x in _inputs(torch_model.in_channels, seed=1):
        expected = _torch_logits(torch_model, x)
        assert np.abs(expected).max() > 1.0  # a real signal, not all zeros
        np.testing.assert_allclose(_keras_output(keras_model, x), expected, rtol=0, atol=ATOL)


def test_torch_keras_torch_round_trip_is_exact(converted):
    torch_model, keras_model = converted
    original = torch_model.state_dict()
    state = torch_state_from_keras(keras_model)
    assert set(state) == set(original)
    for name, value in original.items():
        if not name.endswith("num_batches_tracked"):
            torch.testing.assert_close(state[name], value, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("kind", ["unet", "bottleneck_lstm"])
def test_keras_trained_model_gets_a_torch_twin(kind):
    frames = 3
    settings = TrainingSettings(
        model=kind, nb_filters=4, first_conv_size=6, dropout_rate=0.1, n_timepoints=frames
    )
    keras_model = build_keras_model(settings, frames)
    rng = np.random.default_rng(7)
    for layer in keras_model.layers:  # as if trained: biases and BN statistics moved too
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.get_weights()[0].shape
            weights = [0.5 + rng.random(n), rng.random(n) - 0.5, rng.random(n) - 0.5]
            layer.set_weights([w.astype(np.float32) for w in [*weights, 0.5 + rng.random(n)]])
        elif layer.get_weights():
            *kernels, bias = layer.get_weights()
            layer.set_weights([*kernels, (0.2 * rng.normal(size=bias.shape)).astype(np.float32)])

    torch_model = build_model(settings, frames)
    torch_model.load_state_dict(torch_state_from_keras(keras_model))  # strict
    torch_model.eval()
    for x in _inputs(frames, seed=2):
        np.testing.assert_allclose(
            _torch_logits(torch_model, x), _keras_output(keras_model, x), rtol=0, atol=ATOL
        )


def _rescale_logits(model: nn.Module, x: np.ndarray) -> None:
    """Scale the (linear) output layer so the logits on ``x`` have mean 0 and std 2: random
    networks often give logits so large that every probability is 0 or 1."""
    logits = _torch_logits(model, x)
    scale = 2.0 / float(logits.std())
    output = model.decoder.output
    with torch.no_grad():
        output.weight.mul_(scale)
        output.bias.sub_(float(logits.mean())).mul_(scale)


@pytest.fixture(scope="module", params=["unet-3-8-5-dropout", "lstm-3-8-5"])
def written_h5(request, tmp_path_factory):
    """A torch model and the ``model.h5`` written from it, alone in its folder."""
    torch_model = _randomised(request.param, seed=3)
    _rescale_logits(torch_model, _inputs(torch_model.in_channels, seed=4)[0])
    folder = tmp_path_factory.mktemp(request.param)
    path = write_keras_h5(keras_model_from_torch(torch_model), folder / "model.h5")
    assert path == folder / "model.h5"
    return torch_model, path


def test_model_h5_is_written_whole_and_readable(written_h5):
    _, path = written_h5
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.h5"]  # no temporary left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not private


def test_model_h5_loads_back_with_the_torch_probabilities(written_h5):
    torch_model, path = written_h5
    loaded = load_keras_h5(path)
    assert loaded.layers[-1].name == "probabilities"
    for x in _inputs(torch_model.in_channels, seed=4):
        expected = torch.sigmoid(torch.from_numpy(_torch_logits(torch_model, x))).numpy()
        assert 0.5 < np.mean((0.01 < expected) & (expected < 0.99))  # mostly not saturated
        np.testing.assert_allclose(_keras_output(loaded, x), expected, rtol=0, atol=ATOL)
    # and the loaded file still maps back onto the torch network, weight for weight
    for name, value in torch_state_from_keras(loaded).items():
        torch.testing.assert_close(value, torch_model.state_dict()[name], rtol=0, atol=0, msg=name)


def _serialised_objects(node):
    if isinstance(node, dict):
        if "class_name" in node:
            yield node
        for value in node.values():
            yield from _serialised_objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _serialised_objects(value)


# The config keys TF 2.10.1 (Keras 2.10.0) itself writes for each class the twins use, taken
# from a model.h5 of each twin loaded and saved again by TF 2.10.1. A newer Keras that adds a key
# to one of these breaks loading on the microscope (TF 2.10 rejects unknown constructor keys).
TF_2_10_CONFIG_KEYS = {
    "Activation": {"activation", "dtype", "name", "trainable"},
    "BatchNormalization": {
        *("axis", "center", "dtype", "epsilon", "momentum", "name", "scale", "trainable"),
        *("beta_constraint", "beta_initializer", "beta_regularizer"),
        *("gamma_constraint", "gamma_initializer", "gamma_regularizer"),
        *("moving_mean_initializer", "moving_variance_initializer"),
    },
    "Concatenate": {"axis", "dtype", "name", "trainable"},
    "Conv2D": {
        *("activation", "data_format", "dilation_rate", "dtype", "filters", "groups"),
        *("kernel_size", "name", "padding", "strides", "trainable", "use_bias"),
        *("activity_regularizer", "bias_constraint", "bias_initializer", "bias_regularizer"),
        *("kernel_constraint", "kernel_initializer", "kernel_regularizer"),
    },
    "ConvLSTM2D": {
        *("activation", "data_format", "dilation_rate", "dropout", "dtype", "filters"),
        *("go_backwards", "kernel_size", "name", "padding", "recurrent_activation"),
        *("recurrent_dropout", "return_sequences", "return_state", "stateful", "strides"),
        *("time_major", "trainable", "unit_forget_bias", "unroll", "use_bias"),
        *("activity_regularizer", "bias_constraint", "bias_initializer", "bias_regularizer"),
        *("kernel_constraint", "kernel_initializer", "kernel_regularizer"),
        *("recurrent_constraint", "recurrent_initializer", "recurrent_regularizer"),
    },
    "Cropping3D": {"cropping", "data_format", "dtype", "name", "trainable"},
    "Dropout": {"dtype", "name", "noise_shape", "rate", "seed", "trainable"},
    "Functional": {"input_layers", "layers", "name", "output_layers"},
    "InputLayer": {"batch_input_shape", "dtype", "name", "ragged", "sparse"},
    "MaxPooling2D": {
        "data_format",
        "dtype",
        "name",
        "padding",
        "pool_size",
        "strides",
        "trainable",
    },
    "Ones": set(),
    "Permute": {"dims", "dtype", "name", "trainable"},
    "ReLU": {"dtype", "max_value", "name", "negative_slope", "threshold", "trainable"},
    "Reshape": {"dtype", "name", "target_shape", "trainable"},
    "TimeDistributed": {"dtype", "layer", "name", "trainable"},
    "UpSampling2D": {"data_format", "dtype", "interpolation", "name", "size", "trainable"},
    "VarianceScaling": {"distribution", "mode", "scale", "seed"},
    "Zeros": set(),
}
TF_2_10_OBJECT_KEYS = {"class_name", "config", "inbound_nodes", "name", "shared_object_id"}


def test_model_h5_config_has_exactly_the_keys_tf_2_10_writes(written_h5):
    _, path = written_h5
    with h5py.File(path, "r") as h5:
        assert h5.attrs["keras_version"] == compat.keras_version()
        assert h5.attrs["backend"] == "tensorflow"
        assert "training_config" not in h5.attrs  # no optimizer, nothing to compile
        config = json.loads(h5.attrs["model_config"])
    objects = list(_serialised_objects(config))
    assert {"Conv2D", "BatchNormalization", "UpSampling2D", "VarianceScaling"} <= {
        o["class_name"] for o in objects
    }
    for serialised in objects:
        assert set(serialised) <= TF_2_10_OBJECT_KEYS, serialised
        assert set(serialised["config"]) == TF_2_10_CONFIG_KEYS[serialised["class_name"]]


def test_keras_2_10_model_config_strips_only_newer_keys():
    config = {
        "class_name": "Functional",
        "config": {
            "name": "m",
            "trainable": True,
            "layers": [
                {
                    "class_name": "InputLayer",
                    "config": {"name": "x", "optional": False, "dtype": "float32"},
                    "name": "x",
                    "inbound_nodes": [],
                },
                {
                    "class_name": "TimeDistributed",
                    "config": {
                        "name": "td",
                        "layer": {
                            "module": "keras.layers",
                            "class_name": "Conv2D",
                            "config": {"name": "c", "filters": 2},
                            "registered_name": None,
                            "build_config": {"input_shape": [None, 4, 4, 1]},
                        },
                    },
                    "name": "td",
                    "inbound_nodes": [[["x", 0, 0, {}]]],
                },
            ],
        },
    }
    original = json.dumps(config)
    cleaned = keras_2_10_model_config(config)
    assert json.dumps(config) == original  # input untouched
    assert cleaned == {
        "class_name": "Functional",
        "config": {
            "name": "m",
            "layers": [
                {
                    "class_name": "InputLayer",
                    "config": {"name": "x", "dtype": "float32"},
                    "name": "x",
                    "inbound_nodes": [],
                },
                {
                    "class_name": "TimeDistributed",
                    "config": {
                        "name": "td",
                        "layer": {"class_name": "Conv2D", "config": {"name": "c", "filters": 2}},
                    },
                    "name": "td",
                    "inbound_nodes": [[["x", 0, 0, {}]]],
                },
            ],
        },
    }


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def broken_save(model, path):
        with open(path, "wb") as half_written:
            half_written.write(b"\x89HDF")
        raise OSError("disk full")

    monkeypatch.setattr(convert, "save_keras_2_h5", broken_save)
    model = keras_model_from_torch(UNet(1, 2, 3).eval())
    with pytest.raises(OSError, match="disk full"):
        write_keras_h5(model, tmp_path / "model.h5")
    assert list(tmp_path.iterdir()) == []


def test_rejects_a_foreign_torch_module():
    with pytest.raises(TypeError, match="UNet or BottleneckConvLSTM"):
        keras_model_from_torch(nn.Conv2d(1, 1, 3))
