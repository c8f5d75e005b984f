"""The Keras twin of the torch networks: structure, parameter counts, layer-level equivalences."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deep_events_dagster.ml.config import TrainingSettings
from deep_events_dagster.ml.tensorflow.compat import keras
from deep_events_dagster.ml.tensorflow.models import build_keras_model, count_keras_parameters
from deep_events_dagster.ml.torch.models import (
    BottleneckConvLSTM,
    SameConv2d,
    UNet,
    count_parameters,
)

# Every layer class the twins may use: standard Keras 2 layers that TF 2.10 knows, no Lambda.
STANDARD_LAYER_CLASSES = {
    "Activation",
    "BatchNormalization",
    "Concatenate",
    "Conv2D",
    "ConvLSTM2D",
    "Cropping3D",
    "Dropout",
    "InputLayer",
    "MaxPooling2D",
    "Permute",
    "ReLU",
    "Reshape",
    "TimeDistributed",
    "UpSampling2D",
}


def _settings(model: str, nb_filters: int, first_conv_size: int, dropout=0.0, frames=1):
    return TrainingSettings(
        model=model,
        nb_filters=nb_filters,
        first_conv_size=first_conv_size,
        dropout_rate=dropout,
        n_timepoints=frames,
    )


def _layer_classes(model: keras.Model) -> set[str]:
    classes = set()

    def walk(node):
        if isinstance(node, dict):
            if "class_name" in node and "inbound_nodes" in node:
                classes.add(node["class_name"])
            if node.get("class_name") == "TimeDistributed":
                classes.add(node["config"]["layer"]["class_name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(model.to_json()))
    return classes


@pytest.mark.parametrize(
    ("settings", "frames", "torch_model", "expected"),
    [
        (_settings("unet", 16, 12), 1, UNet(1, 16, 12), 155_345),
        (_settings("unet", 8, 5, frames=3), 3, UNet(3, 8, 5), None),
        (
            _settings("bottleneck_lstm", 8, 5, dropout=0.1, frames=3),
            3,
            BottleneckConvLSTM(3, 8, 5, 0.1),
            None,
        ),
    ],
    ids=["unet-1-16-12", "unet-3-8-5", "lstm-3-8-5"],
)
def test_parameter_count_equals_torch(settings, frames, torch_model, expected):
    model = build_keras_model(settings, frames)
    assert count_keras_parameters(model) == count_parameters(torch_model)
    if expected is not None:
        assert count_keras_parameters(model) == expected


@pytest.mark.parametrize("kind", ["unet", "bottleneck_lstm"])
def test_shapes_names_and_standard_layers_only(kind):
    model = build_keras_model(_settings(kind, 4, 4, dropout=0.2, frames=2), 2)
    assert model.name == kind
    assert model.input_shape == (None, None, None, 2)
    assert model.output_shape == (None, None, None, 1)
    names = {layer.name for layer in model.layers}
    assert {"enc0_conv1", "enc0_bn1", "enc0_drop1", "enc1_conv2", "output"} <= names
    assert ("lstm" in names) == (kind == "bottleneck_lstm")
    assert ("centre_conv1" in names) == (kind == "unet")
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    classes = _layer_classes(model)
    assert {"Conv2D", "BatchNormalization", "UpSampling2D"} <= classes <= STANDARD_LAYER_CLASSES
    # different sizes run through the same model (dynamic H×W)
    for height, width in [(32, 32), (48, 80)]:
        x = np.random.default_rng(0).normal(size=(1, height, width, 2)).astype(np.float32)
        assert model(x, training=False).shape == (1, height, width, 1)


def test_probabilities_end_with_a_sigmoid_layer():
    settings = _settings("unet", 4, 3)
    model = build_keras_model(settings, 1, probabilities=True)
    assert model.layers[-1].name == "probabilities"
    assert model.layers[-1].get_config()["activation"] == "sigmoid"
    x = np.random.default_rng(1).normal(size=(2, 16, 16, 1)).astype(np.float32) * 50
    y = model(x, training=False).numpy()
    assert y.min() >= 0.0 and y.max() <= 1.0


def test_unknown_model_and_bad_channels_raise():
    with pytest.raises(ValueError, match="unknown model"):
        build_keras_model(_settings("unet", 4, 3).model_copy(update={"model": "resnet"}), 1)
    with pytest.raises(ValueError, match="in_channels"):
        build_keras_model(_settings("unet", 4, 3), 0)


def test_kernels_start_kaiming_normal_fan_out():
    model = build_keras_model(_settings("unet", 16, 12), 1)
    kernel = model.get_layer("enc0_conv1").get_weights()[0]  # 12×12×1×16
    expected_std = np.sqrt(2.0 / (12 * 12 * 16))
    assert kernel.std() == pytest.approx(expected_std, rel=0.1)
    assert not np.any(model.get_layer("enc0_conv1").get_weights()[1])


@pytest.mark.parametrize("kernel_size", [12, 4, 3])
def test_same_padding_equals_torch_for_even_and_odd_kernels(kernel_size):
    torch.manual_seed(kernel_size)
    torch_conv = SameConv2d(2, 3, kernel_size).eval()
    keras_conv = keras.layers.Conv2D(3, kernel_size, padding="same")
    x = torch.randn(1, 2, 20, 24)
    keras_conv.build((None, 20, 24, 2))
    keras_conv.set_weights(
        [
            torch_conv.weight.detach().numpy().transpose(2, 3, 1, 0),
            torch_conv.bias.detach().numpy(),
        ]
    )
    with torch.no_grad():
        expected = torch_conv(x).numpy()
    got = keras_conv(x.permute(0, 2, 3, 1).numpy()).numpy().transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_bilinear_upsampling_equals_torch_align_corners_false():
    x = torch.randn(2, 3, 7, 5)
    expected = F.interpolate(x, size=(14, 10), mode="bilinear", align_corners=False).numpy()
    up = keras.layers.UpSampling2D(2, interpolation="bilinear")
    got = up(x.permute(0, 2, 3, 1).numpy()).numpy().transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
