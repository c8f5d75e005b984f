"""Torch checkpoints: ``model.pt`` (and ``model_best.pt``, ``model_last.pt``) written by the
trainer, and the network loaded back from one.

A checkpoint is a ``torch.save`` dictionary: ``format`` (:data:`CHECKPOINT_FORMAT`),
``version``, the training ``settings``, ``in_channels``, ``epoch``, ``val_loss``,
``training_set_id`` and the ``state_dict`` (on the CPU), so one file rebuilds its network.
"""

from __future__ import annotations

from pathlib import Path

import torch

from deep_events_dagster.core.fsutil import atomic_path
from deep_events_dagster.ml.config import TrainingSettings
from deep_events_dagster.ml.torch.devices import resolve_device
from deep_events_dagster.ml.torch.models import build_model

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "load_model", "save_checkpoint"]

CHECKPOINT_FORMAT = "deep-events-torch-model"
CHECKPOINT_VERSION = 1


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    settings: TrainingSettings,
    in_channels: int,
    epoch: int,
    val_loss: float,
    training_set_id: str,
) -> None:
    """Write ``model``'s weights and what rebuilds it to ``path`` (atomically; see
    :func:`load_model`)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "settings": settings.as_dict(),
        "in_channels": int(in_channels),
        "epoch": int(epoch),
        "val_loss": float(val_loss),
        "training_set_id": training_set_id,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The network saved in a checkpoint (``model.pt``), in eval mode on ``device``.

    Raises
    ------
    ValueError
        The file is not a deep-events torch checkpoint.
    """
    path = Path(path)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    settings = TrainingSettings.from_mapping(payload["settings"], source=str(path))
    model = build_model(settings, int(payload["in_channels"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(resolve_device(device)).eval()
