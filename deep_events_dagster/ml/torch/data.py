"""Training-set folders as torch data: memory-mapped stacks, augmented on the fly.

A training-set folder (written by :func:`deep_events_dagster.core.training_set.build_training_set`)
holds ``train_images.npy`` (float32 ``N×T×H×W``), ``train_masks.npy`` (float32 ``N×H×W`` in
[0, 1]), the same for ``eval_*``, ``manifest.yaml`` (with the content ``id``) and
``db_prompt.yaml``. The stacks are opened with ``np.load(mmap_mode="r")``: only the samples a
batch needs are read, so a training set larger than memory trains as well.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import Dataset

from deep_events_dagster.core.metrics import event_groups
from deep_events_dagster.ml.augmentation import AugmentationParams, augment_sample

__all__ = ["AugmentedDataset", "TrainingArrays", "eval_batches"]

STACKS = ("train_images", "train_masks", "eval_images", "eval_masks")


@dataclass(frozen=True)
class TrainingArrays:
    """The four stacks of a training-set folder (memory maps), its manifest id, and which eval
    event each eval sample belongs to.

    ``eval_groups`` is an int array with one entry per eval sample (the index of its event in
    the manifest's eval events), or None when the manifest lists no events (e.g. synthetic
    stacks): then every sample is its own unit.
    """

    path: Path
    train_images: np.ndarray
    train_masks: np.ndarray
    eval_images: np.ndarray
    eval_masks: np.ndarray
    manifest_id: str
    eval_groups: np.ndarray | None = None

    @classmethod
    def load(cls, folder: str | Path) -> TrainingArrays:
        """Open a training-set folder and check the stacks agree.

        Raises
        ------
        FileNotFoundError
            A stack is missing.
        ValueError
            Shapes or dtypes disagree; the message names the folder.
        """
        folder = Path(folder).resolve()
        arrays: dict[str, np.ndarray] = {}
        for name in STACKS:
            file = folder / f"{name}.npy"
            if not file.is_file():
                raise FileNotFoundError(f"{folder}: training set has no {file.name}")
            arrays[name] = np.load(file, mmap_mode="r")
        manifest: dict[str, Any] = {}
        manifest_file = folder / "manifest.yaml"
        if manifest_file.is_file():
            manifest = yaml.safe_load(manifest_file.read_text(encoding="utf-8")) or {}
        data = cls(
            folder,
            manifest_id=str(manifest.get("id", "")),
            eval_groups=_eval_groups(folder, manifest, len(arrays["eval_images"])),
            **arrays,
        )
        data._check()
        return data

    def with_frames(self, n_timepoints: int) -> TrainingArrays:
        """The same stacks keeping the last ``n_timepoints`` frames of every sample (views).

        A training set stores windows of ``max_n_timepoints`` frames; a model of fewer frames
        uses the most recent ones.

        Raises
        ------
        ValueError
            The samples hold fewer than ``n_timepoints`` frames.
        """
        if n_timepoints == self.n_timepoints:
            return self
        if not 1 <= n_timepoints <= self.n_timepoints:
            raise ValueError(
                f"{self.path}: samples have {self.n_timepoints} frame(s); a model of "
                f"n_timepoints: {n_timepoints} cannot use them"
            )
        return replace(
            self,
            train_images=self.train_images[:, -n_timepoints:],
            eval_images=self.eval_images[:, -n_timepoints:],
        )

    def _check(self) -> None:
        for split in ("train", "eval"):
            images = getattr(self, f"{split}_images")
            masks = getattr(self, f"{split}_masks")
            if images.ndim != 4:
                raise ValueError(
                    f"{self.path}: {split}_images.npy must be N×T×H×W, got shape {images.shape}"
                )
            if masks.ndim != 3 or masks.shape[0] != images.shape[0]:
                raise ValueError(
                    f"{self.path}: {split}_masks.npy must be N×H×W with N = {images.shape[0]}, "
                    f"got shape {masks.shape}"
                )
            if masks.shape[1:] != images.shape[2:]:
                raise ValueError(
                    f"{self.path}: {split} images {images.shape[2:]} and masks "
                    f"{masks.shape[1:]} differ in size"
                )
        if len(self.train_images) == 0:
            raise ValueError(f"{self.path}: the training set has no training samples")
        if len(self.eval_images) and self.eval_images.shape[1:] != self.train_images.shape[1:]:
            raise ValueError(
                f"{self.path}: eval samples {self.eval_images.shape[1:]} differ from training "
                f"samples {self.train_images.shape[1:]}"
            )

    @property
    def n_timepoints(self) -> int:
        """Frames per sample (``T``)."""
        return int(self.train_images.shape[1])

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])


def _eval_groups(folder: Path, manifest: dict[str, Any], n_eval: int) -> np.ndarray | None:
    try:
        return event_groups(manifest.get("events"), n_eval)
    except ValueError as exc:
        raise ValueError(f"{folder}: manifest.yaml does not match the eval stack: {exc}") from exc


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
