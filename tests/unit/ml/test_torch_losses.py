"""Losses on logits against hand-computed values.

logits z = (0, 2, −1), targets y = (1, 0, 0.5); σ(z) = (0.5, 0.880797, 0.268941).

BCE per pixel, max(z, 0) − z·y + log(1 + e^{−|z|}):
  (log 2, 2 + log(1 + e^{−2}), 0.5 + log(1 + e^{−1})) = (0.693147, 2.126928, 0.813262),
  mean 1.211112.
Soft focal, α = 0.25, γ = 2: p_t = (0.5, 0.119203, 0.5), α_t = (0.25, 0.75, 0.5),
  α_t (1 − p_t)² BCE = (0.043322, 1.237559, 0.101658), mean 0.460846.
MSE of probabilities: ((0.5 − 1)², 0.880797², (0.268941 − 0.5)²)
  = (0.25, 0.775803, 0.053388), mean 0.359731.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from deep_events_dagster.ml.config import TrainingSettings  # noqa: E402
from deep_events_dagster.ml.torch.losses import (  # noqa: E402
    bce_with_logits,
    build_loss,
    mse_on_probabilities,
    soft_focal_with_logits,
)

Z = torch.tensor([0.0, 2.0, -1.0])
Y = torch.tensor([1.0, 0.0, 0.5])


def test_bce_with_logits():
    assert bce_with_logits(Z, Y).item() == pytest.approx(1.211112, abs=1e-5)


def test_soft_focal():
    assert soft_focal_with_logits(Z, Y, 0.25, 2.0).item() == pytest.approx(0.460846, abs=1e-5)


def test_focal_with_gamma_zero_and_alpha_half_is_half_the_bce():
    assert soft_focal_with_logits(Z, Y, 0.5, 0.0).item() == pytest.approx(1.211112 / 2, abs=1e-5)


def test_mse_on_probabilities():
    assert mse_on_probabilities(Z, Y).item() == pytest.approx(0.359731, abs=1e-5)


def test_large_logits_stay_finite():
    z = torch.tensor([80.0, -80.0, 80.0], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 0.0])
    for loss in (bce_with_logits(z, y), soft_focal_with_logits(z, y, 0.25, 0.5)):
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
        z.grad = None


def test_half_precision_logits_computed_in_float32():
    value = bce_with_logits(Z.to(torch.bfloat16), Y)
    assert value.dtype == torch.float32


@pytest.mark.parametrize(
    ("name", "expected"),
    [("binary_crossentropy", 1.211112), ("soft_focal", 0.460846), ("mse", 0.359731)],
)
def test_build_loss(name, expected):
    loss = build_loss(TrainingSettings(loss=name))
    assert loss(Z, Y).item() == pytest.approx(expected, abs=1e-5)


def test_build_loss_uses_weight():
    settings = TrainingSettings.from_mapping(
        {"loss": "soft_focal", "weight": {"alpha": 0.5, "gamma": 0}}
    )
    assert build_loss(settings)(Z, Y).item() == pytest.approx(1.211112 / 2, abs=1e-5)
