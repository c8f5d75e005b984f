"""A small synthetic training-set folder, for tests, benchmarks and trying the trainer out.

The folder has the layout :func:`deep_events_dagster.core.training_set.build_training_set`
writes (``train_images.npy`` ``N×T×H×W``, ``train_masks.npy`` ``N×H×W``, ``eval_*``,
``manifest.yaml`` with an ``id``, ``db_prompt.yaml``, ``COMPLETE``). Samples are noise; in a
positive sample (``positive_fraction`` of them) a bright Gaussian spot sits where its mask has a
Gaussian of peak 1 (values below 0.1 set to 0, as the platform's ground truth). With several
frames the spot brightens towards the last frame, the one the mask belongs to.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import yaml

__all__ = ["synthetic_samples", "write_synthetic_training_set"]


def synthetic_samples(
    n: int,
    *,
    size: tuple[int, int] = (64, 64),
    n_timepoints: int = 1,
    sigma: float = 3.0,
    contrast: float = 1.0,
    noise: float = 0.25,
    positive_fraction: float = 0.6,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples: images ``n×T×H×W`` float32 normalised per frame, masks ``n×H×W``.

    Parameters
    ----------
    contrast
        Spot peak over the noise (before normalisation).
    noise
        Amplitude of the uniform background noise.
    """
    rng = np.random.default_rng(seed)
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    images = np.empty((n, n_timepoints, height, width), dtype=np.float32)
    masks = np.zeros((n, height, width), dtype=np.float32)
    margin_y = min(int(3 * sigma), (height - 1) // 2)
    margin_x = min(int(3 * sigma), (width - 1) // 2)
    for i in range(n):
        frames = rng.uniform(0.0, noise, size=(n_timepoints, height, width)).astype(np.float32)
        if rng.random() < positive_fraction:
            cy = rng.uniform(margin_y, height - 1 - margin_y)
            cx = rng.uniform(margin_x, width - 1 - margin_x)
            spot = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)).astype(np.float32)
            for t in range(n_timepoints):
                frames[t] += contrast * spot * (t + 1) / n_timepoints
            masks[i] = np.where(spot >= 0.1, spot, 0.0)
        frames -= frames.min(axis=(1, 2), keepdims=True)
        peak = frames.max(axis=(1, 2), keepdims=True)
        frames /= np.where(peak > 0.2, peak, 1.0)
        images[i] = frames
    return images, masks


def write_synthetic_training_set(
    folder: str | Path,
    *,
    n_train: int = 80,
    n_eval: int = 20,
    size: tuple[int, int] = (64, 64),
    n_timepoints: int = 1,
    seed: int = 0,
    **kwargs,
) -> Path:
    """Write a synthetic training-set folder (see the module docstring) and return its path.

    Extra keyword arguments go to :func:`synthetic_samples`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train = synthetic_samples(n_train, size=size, n_timepoints=n_timepoints, seed=seed, **kwargs)
    held = synthetic_samples(
        n_eval, size=size, n_timepoints=n_timepoints, seed=seed + 10_000, **kwargs
    )
    digest = hashlib.blake2b(digest_size=8)
    for name, array in zip(
        ("train_images", "train_masks", "eval_images", "eval_masks"), (*train, *held)
    ):
        np.save(folder / f"{name}.npy", array)
        digest.update(array.tobytes())
    identity = digest.hexdigest()
    manifest = {
        "id": identity,
        "format": "deep-events-training-set",
        "synthetic": True,
        "parameters": {"n_timepoints": n_timepoints},
        "counts": {"train": n_train, "eval": n_eval},
    }
    (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False), "utf-8")
    (folder / "db_prompt.yaml").write_text(
        yaml.safe_dump({"collection": "synthetic", "db_prompt": {}}, sort_keys=False), "utf-8"
    )
    (folder / "COMPLETE").write_text(identity, "utf-8")
    return folder
