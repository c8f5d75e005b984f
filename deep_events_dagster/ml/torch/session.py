"""One torch training's state, as :class:`deep_events_dagster.ml.epochs.Session`: the network,
Adam and the learning-rate schedules, the mixed-precision training step, validation on the eval
stack, weight files, and the data path (seeding, the augmented dataset, the epoch's seeded order
with oversampling (:class:`EpochSampler`), the DataLoader and its workers).

:func:`deep_events_dagster.ml.torch.train.prepare_training` builds one and
:func:`~deep_events_dagster.ml.torch.train.train` runs it; the recipe is described there. The
training benchmark (``benchmarks/bench_training.py``) times it step by step.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from deep_events_dagster.ml.arrays import (
    mask_statistics,
    oversampling_weights,
    resolved_positive_fraction,
)
from deep_events_dagster.ml.augmentation import AugmentationParams
from deep_events_dagster.ml.config import TrainingSettings
from deep_events_dagster.ml.epochs import Validation
from deep_events_dagster.ml.torch.checkpoints import save_checkpoint
from deep_events_dagster.ml.torch.data import AugmentedDataset, TrainingArrays, eval_batches
from deep_events_dagster.ml.torch.devices import autocast_context, autocast_dtype
from deep_events_dagster.ml.torch.losses import build_loss
from deep_events_dagster.ml.torch.metrics import PixelCounts
from deep_events_dagster.ml.torch.models import (
    build_model,
    count_parameters,
    set_output_prior,
)
from deep_events_dagster.ml.torch.predictor import predict

__all__ = ["EpochSampler", "TrainingSession"]

# Recipe constants. Whether each part of the recipe helps is compared side by side in
# benchmarks/bench_learning.py; these values themselves were set, not tuned.
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 3


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _default_workers(device: torch.device, requested: int) -> int:
    if requested > 0 or device.type != "cuda":
        return requested
    return max(0, min(4, (os.cpu_count() or 1) - 1))


class EpochSampler(Sampler[int]):
    """One epoch's order over the augmented dataset: a permutation, or — with oversampling
    weights — ``len(dataset)`` draws with replacement; seeded per epoch by the session."""

    def __init__(self, n_items: int, copies: int, weights: np.ndarray | None, generator):
        self.n_items = n_items
        self.copies = copies
        self.weights = (
            None if weights is None else torch.as_tensor(weights).repeat_interleave(copies)
        )
        self.generator = generator

    def __len__(self) -> int:
        return self.n_items

    def __iter__(self) -> Iterator[int]:
        if self.weights is None:
            order = torch.randperm(self.n_items, generator=self.generator)
        else:
            order = torch.multinomial(
                self.weights, self.n_items, replacement=True, generator=self.generator
            )
        return iter(order.tolist())


class TrainingSession:
    """The model, optimiser, schedule and data path of one training — what
    :func:`~.train.train` runs, and what the training benchmark times step by step.

    Use :func:`~.train.prepare_training` to build one.
    """

    def __init__(self, data: TrainingArrays, settings: TrainingSettings, device: torch.device):
        self.data = data
        self.settings = settings
        self.device = device
        _seed_everything(settings.seed)
        self.in_channels = data.n_timepoints
        self.model = build_model(settings, self.in_channels).to(device)
        self.channels_last = settings.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.parameters = count_parameters(self.model)
        self.positive, self.positive_prior = mask_statistics(data.train_masks)
        self.output_bias = (
            set_output_prior(self.model, self.positive_prior)
            if settings.output_bias_prior
            else None
        )
        self.loss_fn = build_loss(settings)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=settings.initial_learning_rate,
            weight_decay=settings.weight_decay,
        )
        self.dtype = autocast_dtype(device, settings.mixed_precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self.precision = "float32" if self.dtype is None else str(self.dtype).removeprefix("torch.")
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.dataset = AugmentedDataset(
            data.train_images,
            data.train_masks,
            copies=settings.n_augmentations,
            params=AugmentationParams.from_settings(settings),
            seed=settings.seed,
        )
        weights = oversampling_weights(self.positive, resolved_positive_fraction(settings))
        self.oversampled = weights is not None
        self.shuffle_generator = torch.Generator()
        self.sampler = EpochSampler(
            len(self.dataset), self.dataset.copies, weights, self.shuffle_generator
        )
        self.loader = DataLoader(
            self.dataset,
            batch_size=settings.batch_size,
            sampler=self.sampler,
            num_workers=_default_workers(device, settings.num_workers),
            pin_memory=device.type == "cuda",
            drop_last=False,
        )
        self.steps_per_epoch = len(self.loader)
        self.scheduler = _build_scheduler(self.optimizer, settings, self.steps_per_epoch)
        self.global_step = 0
        self.batch_log: Callable[[int, float], None] | None = None

    @property
    def copies(self) -> int:
        """Copies of each training sample per epoch."""
        return self.dataset.copies

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """An input batch on the training device, in the model's memory format."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on a batch already on the device; returns (logits, loss)."""
        self.optimizer.zero_grad(set_to_none=True)
        with autocast_context(self.device, self.dtype):
            logits = self.model(x)
        loss = self.loss_fn(logits, y)
        self.scaler.scale(loss).backward()
        if self.settings.gradient_clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), self.settings.gradient_clip_norm
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.settings.lr_schedule == "onecycle":
            self.scheduler.step()
        self.global_step += 1
        return logits.detach(), loss.detach()

    def steps(self, epoch: int, counts: PixelCounts) -> Iterator[int]:
        """Run one epoch's training steps lazily, yielding each batch's size after its step.

        The data path (augmented dataset, sampler, DataLoader, transfer) and the step, exactly
        as :meth:`train_epoch` runs them; loss and pixel counts accumulate into ``counts``.
        """
        self.dataset.set_epoch(epoch)
        self.shuffle_generator.manual_seed(self.settings.seed * 1_000_003 + epoch)
        self.model.train()
        for x, y in self.loader:
            x = self.to_device(x)
            y = y.to(self.device, non_blocking=True)
            logits, loss = self.train_step(x, y)
            counts.add(logits, y, loss)
            frequency = self.settings.log_batch_frequency
            if self.batch_log is not None and frequency and self.global_step % frequency == 0:
                self.batch_log(self.global_step, float(loss))
            yield int(x.shape[0])

    def train_epoch(self, epoch: int, max_steps: int | None = None) -> tuple[PixelCounts, float]:
        """One pass over the augmented training set (or its first ``max_steps`` batches).

        Returns the loss and pixel counts, and the seconds it took (data path included).
        """
        counts = PixelCounts(self.device)
        tick = time.perf_counter()
        for done, _ in enumerate(self.steps(epoch, counts), start=1):
            if max_steps is not None and done >= max_steps:
                break
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return counts, time.perf_counter() - tick

    @torch.no_grad()
    def validate(self) -> Validation:
        """Loss, pixel metrics and event-level counts on the eval stack (no augmentation)."""
        self.model.eval()
        counts = PixelCounts(self.device)
        data, batch_size = self.data, self.settings.batch_size
        maxima = []
        truth = []
        for x, y in eval_batches(data.eval_images, data.eval_masks, batch_size):
            x = self.to_device(x)
            y = y.to(self.device, non_blocking=True)
            with autocast_context(self.device, self.dtype):
                logits = self.model(x)
            counts.add(logits, y, self.loss_fn(logits, y))
            maxima.append(torch.sigmoid(logits.float().amax(dim=(1, 2, 3))).cpu().numpy())
            truth.append(y.amax(dim=(1, 2, 3)).cpu().numpy())
        sample_max = np.concatenate(maxima) if maxima else np.zeros(0, dtype=np.float32)
        truth_max = np.concatenate(truth) if truth else np.zeros(0, dtype=np.float32)
        return Validation.from_maxima(counts.result(), sample_max, truth_max, data.eval_groups)

    def end_of_epoch(self, monitored: float) -> None:
        """Advance a plateau schedule with the monitored validation loss."""
        if self.settings.lr_schedule == "plateau" and math.isfinite(monitored):
            self.scheduler.step(monitored)

    def learning_rate(self) -> float:
        """The optimiser's current learning rate."""
        return float(self.optimizer.param_groups[0]["lr"])

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities of ``N×T×H×W`` samples with the current weights."""
        return predict(self.model, images, self.settings.batch_size, self.device)

    def save(self, path: Path, epoch: int, score: float) -> None:
        """Write a checkpoint (see :func:`~.checkpoints.load_model`)."""
        save_checkpoint(
            path, self.model, self.settings, self.in_channels, epoch, score, self.data.manifest_id
        )

    def state(self) -> dict[str, torch.Tensor]:
        """A copy of the weights (kept in memory for restoring the best epoch)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights saved by :meth:`state`."""
        self.model.load_state_dict(state)


def _build_scheduler(optimizer, settings: TrainingSettings, steps_per_epoch: int):
    if settings.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE
        )
    if settings.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=settings.initial_learning_rate,
            total_steps=max(1, settings.epochs * steps_per_epoch),
        )
    return None
