"""Torch training metrics: the running loss and pixel confusion counts of an epoch or a
validation (:class:`PixelCounts`), kept on the device so that a step never waits for the host.
"""

from __future__ import annotations

import math

import torch

__all__ = ["PixelCounts"]


class PixelCounts:
    """Running loss and pixel confusion counts at probability 0.5 (logit 0)."""

    def __init__(self, device: torch.device):
        self.counts = torch.zeros(3, dtype=torch.float64, device=device)  # tp, fp, fn
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.samples = 0

    @torch.no_grad()
    def add(self, logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor) -> None:
        predicted = logits > 0
        positive = target > 0.5
        self.counts += torch.stack(
            [
                (predicted & positive).sum(),
                (predicted & ~positive).sum(),
                (~predicted & positive).sum(),
            ]
        ).to(torch.float64)
        n = int(logits.shape[0])
        self.loss_sum += loss.detach().to(torch.float64) * n  # no host sync per step
        self.samples += n

    def result(self) -> tuple[float, float, float, float]:
        """(mean loss, precision, recall, F1); NaN when nothing was added."""
        if self.samples == 0:
            return (math.nan,) * 4
        tp, fp, fn = (float(v) for v in self.counts.cpu())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        return float(self.loss_sum) / self.samples, precision, recall, f1
