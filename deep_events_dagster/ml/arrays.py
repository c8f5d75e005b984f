"""A training-set folder's stacks, as every backend reads them (numpy only).

A training-set folder (written by :func:`deep_events_dagster.core.training_set.build_training_set`)
holds ``train_images.npy`` (float32 ``N×T×H×W``), ``train_masks.npy`` (float32 ``N×H×W`` in
[0, 1]), the same for ``eval_*``, ``manifest.yaml`` (with the content ``id`` and the eval events)
and ``db_prompt.yaml``. The stacks are opened with ``np.load(mmap_mode="r")``: only the samples a
batch needs are read, so a training set larger than memory trains as well.

Also the numpy parts of the training recipe that every backend shares: which samples are
positive and the pixel prior (:func:`mask_statistics`), and the oversampling of positives
(:func:`oversampling_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from deep_events_dagster.core.metric_units import event_groups

__all__ = [
    "DEFAULT_POSITIVE_FRACTION",
    "STACKS",
    "TrainingArrays",
    "mask_statistics",
    "oversampling_weights",
    "resolved_positive_fraction",
]

# The minimum share of positive samples per epoch (``positive_fraction``'s default); compared
# side by side with no oversampling in benchmarks/bench_learning.py — set, not tuned.
DEFAULT_POSITIVE_FRACTION = 0.3

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


def mask_statistics(masks: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, float]:
    """One pass over a mask stack (read in chunks): per sample, whether it holds any
    ground-truth signal, and the mean ground-truth value (the positive pixel prior)."""
    flags = np.zeros(len(masks), dtype=bool)
    total = 0.0
    for start in range(0, len(masks), chunk):
        block = np.asarray(masks[start : start + chunk])
        flags[start : start + len(block)] = block.reshape(len(block), -1).max(axis=1) > 0
        total += float(block.sum(dtype=np.float64))
    return flags, total / masks.size if masks.size else 0.0


def oversampling_weights(positive: np.ndarray, minimum_fraction: float) -> np.ndarray | None:
    """Per-sample drawing weights giving positives at least ``minimum_fraction`` of the draws,
    or None (a plain permutation) without positives, without negatives, or when positives
    already make up that share.
    """
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0 or n_pos / len(positive) >= minimum_fraction:
        return None
    weights = np.ones(len(positive), dtype=np.float64)
    # w·n_pos / (w·n_pos + n_neg) = f  →  w = f·n_neg / ((1 − f)·n_pos)
    weights[positive] = minimum_fraction * n_neg / ((1.0 - minimum_fraction) * n_pos)
    return weights


def resolved_positive_fraction(settings: Any) -> float:
    """The minimum share of positive samples drawn per epoch (``positive_fraction``, else
    :data:`DEFAULT_POSITIVE_FRACTION`)."""
    fraction = settings.positive_fraction
    return DEFAULT_POSITIVE_FRACTION if fraction is None else float(fraction)
