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

Before that, when ``patch_size`` is set and smaller than the sample, every copy (copy 0 too) is
a random ``patch_size``² window of the sample (:func:`patch_corner`): a positive sample's window
always holds the maximum of its mask away from the window's border, so a positive stays
positive; a negative's window is anywhere. The network is fully convolutional, so it trains on
windows and still evaluates and predicts on whole frames; a window costs a fraction of the
pixels of the whole crop per step (the original also trained on 128² crops). Nothing is resized:
every sample of a batch has the same size and scale.

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
    "patch_corner",
    "sample_rng",
    "symmetries",
]

# A positive window keeps its mask's maximum at least this share of the window from its border.
PATCH_MARGIN_FRACTION = 0.125
# A mask whose maximum reaches this is a positive sample (the evaluation's rule).
POSITIVE_MASK_LEVEL = 0.5
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
    patch_size
        Side of the random training window (None: whole samples).
    """

    brightness_range: tuple[float, float] = (0.6, 1.0)
    poisson: float = 0.0
    poisson_probability: float = 1.0
    flips: bool = True
    rotations: bool = True
    patch_size: int | None = None

    def __post_init__(self) -> None:
        if self.patch_size is not None and self.patch_size < 8:
            raise ValueError(f"patch_size must be ≥ 8 pixels or None, got {self.patch_size}")
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
            patch_size=settings.patch_size,
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


def patch_corner(mask: np.ndarray, patch_size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner ``(y, x)`` of a random ``patch_size``² training window of a sample.

    Parameters
    ----------
    mask
        ``H×W`` ground truth of the sample.
    patch_size
        Window side; a side of the sample shorter than it is taken whole (corner 0).
    rng
        Source of randomness.

    Returns
    -------
    (y, x)
        When the mask reaches :data:`POSITIVE_MASK_LEVEL` (a positive sample), the window holds
        the mask's maximum at least ``patch_size · PATCH_MARGIN_FRACTION`` pixels inside its
        border (less only where the sample's own border is nearer); otherwise the corner is
        uniform over the sample.
    """
    height, width = mask.shape[-2:]
    peak = None
    if float(mask.max(initial=0.0)) >= POSITIVE_MASK_LEVEL:
        peak = np.unravel_index(int(np.argmax(mask)), (height, width))
    corner = []
    for axis, size in enumerate((height, width)):
        span = size - patch_size
        if span <= 0:
            corner.append(0)
            continue
        low, high = 0, span
        if peak is not None:
            margin = round(patch_size * PATCH_MARGIN_FRACTION)
            at = int(peak[axis])
            low = max(low, min(at - (patch_size - 1 - margin), span))
            high = min(high, max(at - margin, 0))
            low, high = min(low, high), max(low, high)
        corner.append(int(rng.integers(low, high + 1)))
    return corner[0], corner[1]


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
    (never views of the input, which may be a read-only memory map). With
    ``params.patch_size``, every copy is first cut to a window (:func:`patch_corner`).
    """
    size = params.patch_size
    if size is not None and (mask.shape[-2] > size or mask.shape[-1] > size):
        rng = sample_rng(seed, epoch, index, copy)
        y, x = patch_corner(mask, size, rng)
        image = image[..., y : y + size, x : x + size]
        mask = mask[..., y : y + size, x : x + size]
        if copy == 0:
            return (
                np.array(image, dtype=np.float32, order="C"),
                np.array(mask, dtype=np.float32, order="C"),
            )
        return augment_pair(image, mask, rng, params)
    if copy == 0:
        return (
            np.array(image, dtype=np.float32, order="C"),
            np.array(mask, dtype=np.float32, order="C"),
        )
    return augment_pair(image, mask, sample_rng(seed, epoch, index, copy), params)
