"""Losses on logits, for soft (Gaussian) targets in [0, 1].

Every loss takes the network's **logits** ``z`` and a target ``y`` of the same shape, computes in
float32 (also under autocast) and averages over all pixels. With ``p = σ(z)``:

``binary_crossentropy``
    ``BCE(z, y) = −[y·log p + (1−y)·log(1−p)]``, computed stably from the logits
    (``max(z, 0) − z·y + log(1 + e^{−|z|})``). The original's default ``nn.BCELoss`` expected
    probabilities and failed on its own logits.
``soft_focal``
    ``α_t · (1 − p_t)^γ · BCE(z, y)`` with ``p_t = y·p + (1−y)·(1−p)`` and
    ``α_t = y·α + (1−y)·(1−α)`` — the focal loss of Lin et al. (2017) with the targets allowed to
    be soft (for ``y ∈ {0, 1}`` it is exactly the usual one). The original guessed per batch
    whether it had been given logits or probabilities (by their range); here it is always logits.
``mse``
    ``(σ(z) − y)²``: the squared error of the *probabilities*, so the loss stays bounded and
    comparable with the targets' scale (the original applied ``nn.MSELoss`` to the logits).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["bce_with_logits", "build_loss", "mse_on_probabilities", "soft_focal_with_logits"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bce_with_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of ``σ(logits)`` against ``target`` (soft targets allowed)."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def soft_focal_with_logits(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Mean soft focal loss (see the module docstring).

    Parameters
    ----------
    logits, target
        Same shape; target in [0, 1].
    alpha
        Positive-class weight in [0, 1].
    gamma
        Focusing exponent ≥ 0.
    """
    z = logits.float()
    y = target.float()
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    p = torch.sigmoid(z)
    p_t = y * p + (1.0 - y) * (1.0 - p)
    alpha_t = y * alpha + (1.0 - y) * (1.0 - alpha)
    # The clamp keeps the gradient finite for 0 < γ < 1 where p_t reaches exactly 1 in float32.
    modulation = (1.0 - p_t).clamp_min(1e-12) ** gamma if gamma != 0 else 1.0
    return (alpha_t * modulation * bce).mean()


def mse_on_probabilities(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between ``σ(logits)`` and ``target``."""
    return F.mse_loss(torch.sigmoid(logits.float()), target.float())


def build_loss(settings) -> LossFn:
    """The loss a :class:`~deep_events_dagster.ml.config.TrainingSettings` names.

    Returns
    -------
    callable
        ``loss(logits, target) -> scalar tensor``.
    """
    if settings.loss == "binary_crossentropy":
        return bce_with_logits
    if settings.loss == "soft_focal":
        alpha, gamma = float(settings.weight.alpha), float(settings.weight.gamma)

        def focal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return soft_focal_with_logits(logits, target, alpha, gamma)

        return focal
    if settings.loss == "mse":
        return mse_on_probabilities
    raise ValueError(f"unknown loss {settings.loss!r}")
