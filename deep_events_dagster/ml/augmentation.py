"""Data augmentation of (image, mask) training pairs — numpy only, shared by every backend.

A training sample is an image stack ``T×H×W`` float32 (``T = n_timepoints``, normalised to about
[0, 1]) and its mask ``H×W`` in [0, 1]. Each epoch sees every sample ``n_augmentations`` times
(the original's meaning): copy 0 unchanged, copies 1… augmented by

1. a random symmetry of the frame, applied identically to every frame and to the mask: one of
   the 8 flips/90° rotations of a square, or of the 4 flips of a rectangle (a 90° rotation of a
   non-square frame would change its size);
2. shot noise with strength ``poisson = s`` > 0 (the original's formula, with
   ``poisson_probability`` of the copies): ``x ← Poisson(x · 100/s) / (100/s)``;
3. brightness: the image is multiplied by a factor drawn uniformly from ``brightness_range``.

Outputs always have the input's size: nothing is cropped or resized, so every sample of a batch
has the same size and scale (the original mixed 128² crops with resized 256² samples).

Randomness is explicit: :func:`sample_rng` derives a generator from ``(seed, epoch, sample,
copy)``, so a sample's augmentation does not depend on the order samples are drawn in, on the
number of DataLoader workers or on the machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "AugmentationParams",
    "augment_pair",
    "augment_sample",
    "sample_rng",
    "symmetries",
]

# Photons at intensity 1 for poisson strength 1 (the original's ``intensity_scale = 100 / s``).
PHOTONS_AT_UNIT_STRENGTH = 100.0


@dataclass(frozen=True)
class AugmentationParams:
    """What :func:`augment_pair` may do.

    Attributes
    ----------
    brightness_range
        ``(low, high)`` multiplicative brightness factor range; ``(1, 1)`` disables it.
    poisson
        Shot-noise strength ``s`` ≥ 0 (0 disables it).
    poisson_probability
        Probability that an augmented copy gets shot noise.
    flips
        Allow mirror images.
    rotations
        Allow 90° rotations (square frames) and 180° rotations (any frame).
    """

    brightness_range: tuple[float, float] = (0.6, 1.0)
    poisson: float = 0.0
    poisson_probability: float = 1.0
    flips: bool = True
    rotations: bool = True

    def __post_init__(self) -> None:
        low, high = self.brightness_range
        if not 0.0 < low <= high:
            raise ValueError(f"brightness_range must satisfy 0 < low ≤ high, got {(low, high)}")
        if self.poisson < 0:
            raise ValueError(f"poisson must be ≥ 0, got {self.poisson}")
        if not 0.0 <= self.poisson_probability <= 1.0:
            raise ValueError(
                f"poisson_probability must be in [0, 1], got {self.poisson_probability}"
            )

    @classmethod
    def from_settings(cls, settings) -> AugmentationParams:
        """From a :class:`~deep_events_dagster.ml.config.TrainingSettings`."""
        return cls(
            brightness_range=tuple(settings.brightness_range),
            poisson=settings.poisson,
            poisson_probability=settings.poisson_probability,
        )


def symmetries(height: int, width: int, params: AugmentationParams) -> list[tuple[int, bool]]:
    """The size-preserving symmetries allowed for an ``height×width`` frame.

    Returns
    -------
    list of (k, flip)
        Rotate by ``k·90°`` (``np.rot90`` on the last two axes), then mirror left–right when
        ``flip``. ``(0, False)`` (identity) is always first.
    """
    if not params.rotations:
        ks = [0]
    elif height == width:
        ks = [0, 1, 2, 3]
    else:
        ks = [0, 2]
    flips = [False, True] if params.flips else [False]
    return [(k, f) for k in ks for f in flips]


def sample_rng(seed: int, epoch: int, index: int, copy: int) -> np.random.Generator:
    """The generator for one augmented copy: a pure function of its four arguments."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index), int(copy)])


def augment_pair(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    params: AugmentationParams,
) -> tuple[np.ndarray, np.ndarray]:
    """One random augmentation of a sample.

    Parameters
    ----------
    image
        ``T×H×W`` (or ``H×W``) float array; not modified.
    mask
        ``H×W`` array; not modified.
    rng
        Source of randomness (see :func:`sample_rng`).
    params
        What is allowed.

    Returns
    -------
    image, mask
        New C-contiguous float32 arrays with the input shapes.
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.shape[-2:] != mask.shape[-2:]:
        raise ValueError(f"image {image.shape} and mask {mask.shape} differ in size")
    height, width = mask.shape[-2:]
    options = symmetries(height, width, params)
    k, flip = options[int(rng.integers(len(options)))]
    out = np.rot90(image, k, axes=(-2, -1)) if k else image
    out_mask = np.rot90(mask, k, axes=(-2, -1)) if k else mask
    if flip:
        out = out[..., ::-1]
        out_mask = out_mask[..., ::-1]
    out = np.array(out, dtype=np.float32, order="C")  # always a fresh copy
    out_mask = np.array(out_mask, dtype=np.float32, order="C")
    if params.poisson > 0 and rng.random() < params.poisson_probability:
        scale = PHOTONS_AT_UNIT_STRENGTH / params.poisson
        np.maximum(out, 0.0, out=out)
        out = (rng.poisson(out * scale) / scale).astype(np.float32)
    low, high = params.brightness_range
    if low != 1.0 or high != 1.0:
        out *= np.float32(rng.uniform(low, high))
    return out, out_mask


def augment_sample(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    seed: int,
    epoch: int,
    index: int,
    copy: int,
    params: AugmentationParams,
) -> tuple[np.ndarray, np.ndarray]:
    """Copy ``copy`` of sample ``index`` in ``epoch``: unchanged for copy 0, else augmented.

    Deterministic in ``(seed, epoch, index, copy)``. Returns new float32 C-contiguous arrays
    (never views of the input, which may be a read-only memory map).
    """
    if copy == 0:
        return (
            np.array(image, dtype=np.float32, order="C"),
            np.array(mask, dtype=np.float32, order="C"),
        )
    return augment_pair(image, mask, sample_rng(seed, epoch, index, copy), params)
