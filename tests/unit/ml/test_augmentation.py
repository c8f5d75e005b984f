"""Augmentation: deterministic, size-preserving, image and mask transformed alike."""

from __future__ import annotations

import numpy as np
import pytest

from deep_events_dagster.ml.augmentation import (
    AugmentationParams,
    augment_pair,
    augment_sample,
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
