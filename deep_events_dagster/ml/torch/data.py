"""Training-set folders as torch data: memory-mapped stacks, augmented on the fly.

The stacks are :class:`deep_events_dagster.ml.arrays.TrainingArrays`, shared by every backend;
this module turns them into augmented torch samples and evaluation batches.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from deep_events_dagster.ml.arrays import STACKS, TrainingArrays
from deep_events_dagster.ml.augmentation import AugmentationParams, augment_sample

__all__ = ["STACKS", "AugmentedDataset", "TrainingArrays", "eval_batches"]


class AugmentedDataset(Dataset):
    """Every training sample ``copies`` times per epoch; copy 0 as is, the others augmented.

    Item ``i`` is copy ``i % copies`` of sample ``i // copies``; its augmentation depends only
    on ``(seed, epoch, sample, copy)``
    (:func:`~deep_events_dagster.ml.augmentation.augment_sample`), so results do not
    depend on shuffling or on DataLoader workers. Call :meth:`set_epoch` before each epoch.

    Items are ``(image T×H×W, mask 1×H×W)`` float32 tensors.
    """

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        *,
        copies: int,
        params: AugmentationParams,
        seed: int,
    ):
        self.images = images
        self.masks = masks
        self.copies = max(1, int(copies))
        self.params = params
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's augmentations."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.images) * self.copies

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        index, copy = divmod(int(item), self.copies)
        image, mask = augment_sample(
            self.images[index],
            self.masks[index],
            seed=self.seed,
            epoch=self.epoch,
            index=index,
            copy=copy,
            params=self.params,
        )
        return torch.from_numpy(image), torch.from_numpy(mask)[None]


def eval_batches(images: np.ndarray, masks: np.ndarray | None, batch_size: int):
    """Consecutive ``(images, masks)`` float32 tensor batches of a stack (no augmentation).

    ``masks`` may be None (prediction); batches then hold ``(images, None)``.
    """
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.array(images[start : start + batch_size], dtype=np.float32))
        y = None
        if masks is not None:
            y = torch.from_numpy(np.array(masks[start : start + batch_size], dtype=np.float32))
            y = y[:, None]
        yield x, y
