"""The networks: the original's parameter count, exact sizes, the ConvLSTM variant."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from deep_events_dagster.ml.config import TrainingSettings  # noqa: E402
from deep_events_dagster.ml.torch.models import (  # noqa: E402
    BottleneckConvLSTM,
    SameConv2d,
    UNet,
    build_model,
    count_parameters,
    same_padding,
)


def test_original_parameter_count():
    assert count_parameters(UNet(1, 16, 12)) == 155_345


def test_parameter_count_formula_for_other_settings():
    # convolutions with bias + BN scale/shift, per the original's layer list
    def expected(cin, nb, k):
        def conv(i, o, size):
            return i * o * size * size + o + 2 * o

        return (
            conv(cin, nb, k)
            + conv(nb, nb, k)
            + conv(nb, 2 * nb, 3)
            + conv(2 * nb, 2 * nb, 3)
            + conv(2 * nb, 4 * nb, 3)
            + conv(4 * nb, 4 * nb, 3)
            + conv(6 * nb, 2 * nb, 3)
            + conv(2 * nb, 2 * nb, 3)
            + conv(3 * nb, nb, 3)
            + conv(nb, nb, 3)
            + nb
            + 1
        )

    for cin, nb, k in [(1, 16, 12), (3, 8, 5), (2, 4, 3)]:
        assert count_parameters(UNet(cin, nb, k)) == expected(cin, nb, k)


@pytest.mark.parametrize("size", [(256, 256), (200, 248), (37, 53)])
def test_output_has_the_input_size(size):
    model = UNet(1, 16, 12).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, *size))
    assert out.shape == (1, 1, *size)


def test_level_zero_keeps_the_size_without_resizing():
    model = UNet(1, 16, 12)
    seen = []
    for module in model.modules():
        if isinstance(module, SameConv2d):
            module.register_forward_hook(lambda m, i, o: seen.append(o.shape[-2:]))
    with torch.no_grad():
        model.eval()(torch.rand(1, 1, 256, 256))
    assert seen[0] == seen[1] == (256, 256)  # the two 12×12 convolutions
    assert {tuple(s) for s in seen} == {(256, 256), (128, 128), (64, 64)}


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 12])
def test_same_padding_is_exact(k):
    before, after = same_padding(k)
    assert before + after == k - 1 and after - before in (0, 1)
    conv = SameConv2d(2, 3, k)
    x = torch.rand(1, 2, 9, 10)
    reference = F.conv2d(F.pad(x, (before, after, before, after)), conv.weight, conv.bias)
    out = conv(x)
    assert out.shape[-2:] == x.shape[-2:]
    assert torch.allclose(out, reference, atol=1e-6)


def test_even_kernel_padding_follows_tensorflow_convention():
    # a kernel with a single 1 at (0, 0) shifts the input: out[i] = x[i - before]
    conv = SameConv2d(1, 1, 4, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    out = conv(x)
    assert same_padding(4) == (1, 2)
    assert torch.equal(out[0, 0, 1:, 1:], x[0, 0, :-1, :-1])


def test_outputs_are_logits():
    torch.manual_seed(0)
    model = UNet(1, 4, 3).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 16, 16) * 10)
    assert out.min() < 0 or out.max() > 1  # not squashed into [0, 1]


def test_bottleneck_convlstm_shapes():
    model = BottleneckConvLSTM(3, 8, 5).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 48))
    assert out.shape == (2, 1, 64, 48)
    assert model.encoder.level0[0][0].in_channels == 1  # one frame at a time, shared weights


def test_bottleneck_convlstm_uses_every_frame():
    torch.manual_seed(1)
    model = BottleneckConvLSTM(3, 4, 3).eval()
    x = torch.rand(1, 3, 32, 32)
    changed_first = x.clone()
    changed_first[:, 0] = torch.rand(32, 32)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(changed_first))


def test_build_model_from_settings():
    unet = build_model(TrainingSettings(n_timepoints=3), 3)
    assert isinstance(unet, UNet) and unet.encoder.level0[0][0].in_channels == 3
    lstm = build_model(TrainingSettings(model="bottleneck_lstm", n_timepoints=3), 3)
    assert isinstance(lstm, BottleneckConvLSTM)
    out = lstm(torch.rand(2, 3, 32, 32))
    out.mean().backward()  # trainable end to end
    assert all(p.grad is not None for p in lstm.parameters())


def _with_batch_statistics(model):
    """Non-trivial running statistics, as after training (fresh ones are 0 and 1)."""
    generator = torch.Generator().manual_seed(3)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)
    return model.eval()


def test_inference_copy_folds_batch_norm_into_the_convolutions():
    from deep_events_dagster.ml.torch.models import inference_copy

    model = _with_batch_statistics(UNet(1, 4, 5))
    folded = inference_copy(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # a copy
    x = torch.rand(2, 1, 36, 44, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-4, rtol=1e-4)


def test_the_fast_predictor_stays_close_to_float32():
    import numpy as np

    from deep_events_dagster.ml.torch.predictor import TorchPredictor

    model = _with_batch_statistics(UNet(1, 4, 5))
    images = np.random.default_rng(0).random((3, 1, 40, 48), dtype=np.float32)
    exact = TorchPredictor(model, "cpu", "float32")
    fast = TorchPredictor(model, "cpu", "auto")
    assert exact.precision == "float32" and fast.precision in ("float32", "bfloat16")
    reference = exact.predict(images)
    assert np.abs(fast.predict(images) - reference).max() < 2e-2
    assert reference.shape == (3, 40, 48)
    with pytest.raises(ValueError, match="precision"):
        TorchPredictor(model, "cpu", "half")
