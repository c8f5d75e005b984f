"""Augmentation: deterministic, size-preserving, image and mask transformed alike."""

from __future__ import annotations

import numpy as np
import pytest

from deep_events_dagster.ml.augmentation import (
    AugmentationParams,
    augment_pair,
    augment_sample,
    patch_corner,
    sample_rng,
    symmetries,
)


def _sample(shape=(3, 32, 32), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random(shape, dtype=np.float32)
    mask = (image[-1] > 0.8).astype(np.float32)  # a mask that follows the image
    return image, mask


def test_deterministic_per_seed_epoch_sample_copy():
    image, mask = _sample()
    params = AugmentationParams(poisson=0.5)
    kwargs = dict(seed=7, epoch=2, index=5, copy=3, params=params)
    a = augment_sample(image, mask, **kwargs)
    b = augment_sample(image, mask, **kwargs)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    others = [augment_sample(image, mask, **{**kwargs, "epoch": e})[0] for e in range(3, 9)]
    assert any(not np.array_equal(a[0], other) for other in others)


def test_copy_zero_is_the_sample_itself_as_a_fresh_array():
    image, mask = _sample()
    out, out_mask = augment_sample(
        image, mask, seed=1, epoch=1, index=0, copy=0, params=AugmentationParams()
    )
    assert np.array_equal(out, image) and np.array_equal(out_mask, mask)
    assert not np.shares_memory(out, image)


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 24, 40), (2, 7, 5)])
def test_every_output_keeps_the_size(shape):
    image, mask = _sample(shape)
    params = AugmentationParams(poisson=1.0)
    for copy in range(1, 30):
        out, out_mask = augment_pair(image, mask, sample_rng(0, 0, 0, copy), params)
        assert out.shape == image.shape and out_mask.shape == mask.shape
        assert out.dtype == np.float32 and out_mask.dtype == np.float32
        assert out.flags.c_contiguous and out_mask.flags.c_contiguous


def test_symmetry_sets():
    params = AugmentationParams()
    assert len(symmetries(32, 32, params)) == 8
    assert len(symmetries(24, 40, params)) == 4  # no 90° rotation of a rectangle
    assert symmetries(24, 40, AugmentationParams(flips=False, rotations=False)) == [(0, False)]


def test_mask_follows_the_image_and_brightness_stays_in_range():
    image, mask = _sample((2, 32, 32))
    params = AugmentationParams(brightness_range=(0.6, 1.0))
    seen = set()
    for copy in range(1, 60):
        out, out_mask = augment_pair(image, mask, sample_rng(3, 1, 4, copy), params)
        # undo the brightness factor with the ratio of sums, then find the symmetry
        factor = out.sum() / image.sum()
        assert 0.6 - 1e-5 <= factor <= 1.0 + 1e-5
        matches = []
        for k in range(4):
            for flip in (False, True):
                candidate = np.rot90(image, k, axes=(-2, -1))
                candidate_mask = np.rot90(mask, k, axes=(-2, -1))
                if flip:
                    candidate, candidate_mask = candidate[..., ::-1], candidate_mask[..., ::-1]
                if np.allclose(out, candidate * factor, atol=1e-5):
                    matches.append((k, flip))
                    assert np.array_equal(out_mask, candidate_mask)
        assert matches, "output is not a symmetry of the input"
        seen.update(matches)
    assert len(seen) == 8


def test_poisson_noise_is_shot_noise():
    image = np.full((1, 64, 64), 0.5, dtype=np.float32)
    mask = np.zeros((64, 64), dtype=np.float32)
    params = AugmentationParams(brightness_range=(1.0, 1.0), poisson=1.0)
    out, _ = augment_pair(image, mask, sample_rng(0, 0, 0, 1), params)
    # Poisson(0.5 · 100) / 100: mean 0.5, standard deviation sqrt(50) / 100 ≈ 0.0707
    assert out.min() >= 0
    assert abs(out.mean() - 0.5) < 0.01
    assert 0.06 < out.std() < 0.08
    quiet, _ = augment_pair(
        image,
        mask,
        sample_rng(0, 0, 0, 1),
        AugmentationParams(brightness_range=(1.0, 1.0), poisson=1.0, poisson_probability=0.0),
    )
    assert np.array_equal(quiet, image)


def test_inputs_are_not_modified():
    image, mask = _sample()
    before = image.copy(), mask.copy()
    augment_pair(image, mask, sample_rng(0, 0, 0, 1), AugmentationParams(poisson=0.3))
    assert np.array_equal(image, before[0]) and np.array_equal(mask, before[1])


def test_bad_parameters():
    with pytest.raises(ValueError):
        AugmentationParams(brightness_range=(1.2, 1.0))
    with pytest.raises(ValueError):
        AugmentationParams(poisson=-1)


def _gaussian_mask(shape, peak, sigma=3.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((yy - peak[0]) ** 2 + (xx - peak[1]) ** 2) / (2 * sigma**2)).astype(np.float32)


@pytest.mark.parametrize("peak", [(128, 128), (3, 250), (250, 2), (60, 200), (255, 255)])
def test_a_positive_window_always_holds_its_event(peak):
    mask = _gaussian_mask((256, 256), peak)
    corners = set()
    for copy in range(200):
        y, x = patch_corner(mask, 128, sample_rng(0, 1, 2, copy))
        assert 0 <= y <= 128 and 0 <= x <= 128
        window = mask[y : y + 128, x : x + 128]
        assert window.max() == mask.max()  # the peak is inside: still a positive
        py, px = peak[0] - y, peak[1] - x
        # at least 16 px (1/8 of the window) from the window's border where the sample allows
        assert min(py, 127 - py) >= min(16, peak[0], 255 - peak[0])
        assert min(px, 127 - px) >= min(16, peak[1], 255 - peak[1])
        corners.add((y, x))
    if peak == (128, 128):
        assert len(corners) > 50  # the window moves around the event


def test_a_negative_window_is_anywhere_and_small_samples_stay_whole():
    empty = np.zeros((256, 256), dtype=np.float32)
    corners = np.array([patch_corner(empty, 128, sample_rng(0, 0, 0, c)) for c in range(300)])
    assert corners.min() <= 5 and corners.max() >= 123
    assert patch_corner(np.zeros((64, 200), np.float32), 128, sample_rng(0, 0, 0, 0))[0] == 0


def test_patch_size_cuts_every_copy_and_keeps_the_event():
    image = np.random.default_rng(0).random((2, 256, 256), dtype=np.float32)
    mask = _gaussian_mask((256, 256), (40, 220))
    params = AugmentationParams(patch_size=128, poisson=0.5)
    for copy in range(6):
        out, out_mask = augment_sample(
            image, mask, seed=1, epoch=1, index=0, copy=copy, params=params
        )
        assert out.shape == (2, 128, 128) and out_mask.shape == (128, 128)
        assert out_mask.max() == pytest.approx(1.0)
    out, out_mask = augment_sample(image, mask, seed=1, epoch=1, index=0, copy=0, params=params)
    y, x = np.argwhere(image[0] == out[0, 0, 0])[0]  # copy 0 is a plain window of the sample
    assert np.array_equal(out, image[:, y : y + 128, x : x + 128])
    assert np.array_equal(out_mask, mask[y : y + 128, x : x + 128])
    with pytest.raises(ValueError, match="patch_size"):
        AugmentationParams(patch_size=4)
