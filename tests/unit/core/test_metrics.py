"""Tests for core.metrics: exact counts, metric values by hand, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from deep_events_dagster.core.metrics import (
    METRICS,
    best_threshold,
    confusion_counts,
    evaluation_summary,
    metrics_from_counts,
    sweep,
    thresholds,
)


def _index(value: float) -> int:
    return int(np.argmin(np.abs(thresholds() - value)))


def test_thresholds_are_the_originals():
    levels = thresholds()
    assert len(levels) == 96
    np.testing.assert_array_equal(levels, np.linspace(0.05, 1.0, 96))


def test_counts_are_exact_including_values_on_the_thresholds():
    rng = np.random.default_rng(0)
    levels = thresholds()
    # many probabilities exactly equal to thresholds, some outside [0.05, 1]
    p = np.concatenate([rng.random(5000), rng.choice(levels, 3000), [0.0, 1.0, 1.0, 0.049999, 1.2]])
    truth = rng.random(p.size) < 0.3
    tp, fp, tn, fn = confusion_counts(p, truth)
    for i, t in enumerate(levels):
        predicted = p >= t
        assert tp[i] == np.sum(predicted & truth)
        assert fp[i] == np.sum(predicted & ~truth)
        assert tn[i] == np.sum(~predicted & ~truth)
        assert fn[i] == np.sum(~predicted & truth)
    # float32 probabilities and mask-valued truth (> 0.5) give the same
    p32 = p.astype(np.float32)
    tp32, fp32, *_ = confusion_counts(p32, truth.astype(np.float32) * 0.9)
    for i, t in enumerate(levels):
        assert tp32[i] == np.sum((p32 >= t) & truth)
        assert fp32[i] == np.sum((p32 >= t) & ~truth)


def test_hand_computed_balanced_case():
    p = np.array([0.1, 0.6, 0.3, 0.7, 0.9, 0.2])
    truth = np.array([0, 0, 1, 1, 1, 0], dtype=bool)
    result = sweep(p, truth)
    i = _index(0.5)
    assert (result.tp[i], result.fp[i], result.tn[i], result.fn[i]) == (2, 1, 2, 1)
    assert result.precision[i] == pytest.approx(2 / 3)
    assert result.recall[i] == pytest.approx(2 / 3)
    assert result.f1[i] == pytest.approx(2 / 3)
    assert result.mcc[i] == pytest.approx(1 / 3)  # (2·2 − 1·1) / √(3·3·3·3)
    assert result.weighted_mcc[i] == pytest.approx(1 / 3)  # balanced classes: same
    assert result.kappa[i] == pytest.approx(1 / 3)  # p_o = 4/6, p_e = 1/2
    assert result.specificity[i] == pytest.approx(2 / 3)
    assert result.npv[i] == pytest.approx(2 / 3)
    assert result.fbeta[i] == pytest.approx(2.02 / 3.03)  # (1+β²)TP / ((1+β²)TP + β²FN + FP)
    assert result.n_pixels == 6 and result.n_positive == 3
    # at 0.95 only 0.9 < t: nothing predicted → precision 0 by convention
    j = _index(0.95)
    assert (result.tp[j], result.fp[j]) == (0, 0)
    assert result.precision[j] == 0 and result.f1[j] == 0 and result.mcc[j] == 0


def test_hand_computed_unbalanced_weighted_mcc_and_kappa():
    p = np.array([0.9, 0.8, 0.1, 0.1, 0.2, 0.3, 0.1, 0.4])
    truth = np.array([1, 0, 0, 0, 0, 0, 0, 0], dtype=bool)
    result = sweep(p, truth)
    i = _index(0.5)
    assert (result.tp[i], result.fp[i], result.tn[i], result.fn[i]) == (1, 1, 6, 0)
    assert result.mcc[i] == pytest.approx(6 / math.sqrt(2 * 1 * 7 * 6))
    # weights: positives 8/(2·1) = 4, negatives 8/(2·7) = 4/7 → MCC √3/2
    assert result.weighted_mcc[i] == pytest.approx(math.sqrt(3) / 2)
    assert result.kappa[i] == pytest.approx(12 / 20)
    assert result.precision[i] == pytest.approx(0.5)
    assert result.recall[i] == 1.0
    assert result.fbeta[i] == pytest.approx(1.01 * 1 / (1.01 * 1 + 0 + 1))
    # the best F-beta is where the false positive at 0.8 is gone: the first threshold > 0.8
    assert best_threshold(result) == pytest.approx(thresholds()[_index(0.81)])
    assert result.fbeta[_index(0.81)] == 1.0


def test_all_negative_truth():
    p = np.array([0.1, 0.5, 0.7, 0.99])
    result = sweep(p, np.zeros(4, dtype=bool))
    for name in ("precision", "recall", "f1", "mcc", "weighted_mcc", "kappa", "fbeta"):
        assert not result.metric(name).any(), name
    i = _index(0.6)
    assert result.specificity[i] == pytest.approx(2 / 4)
    assert result.npv[i] == 1.0
    assert best_threshold(result) == pytest.approx(0.05)  # ties: the lowest
    assert np.all(np.isfinite(np.stack([result.metric(m) for m in METRICS])))


def test_constant_probabilities():
    truth = np.array([1, 0, 1, 0, 0], dtype=bool)
    result = sweep(np.full(5, 0.5), truth)
    levels = thresholds()
    below = levels <= 0.5
    np.testing.assert_array_equal(result.tp, np.where(below, 2, 0))
    np.testing.assert_array_equal(result.fp, np.where(below, 3, 0))
    # everything predicted positive or nothing: MCC and kappa are 0, never NaN
    assert not result.mcc.any() and not result.kappa.any() and not result.weighted_mcc.any()
    np.testing.assert_allclose(result.precision[below], 0.4)
    np.testing.assert_allclose(result.recall[below], 1.0)
    assert not result.recall[~below].any()
    np.testing.assert_allclose(result.specificity[~below], 1.0)
    np.testing.assert_allclose(result.npv[~below], 0.6)


def test_metrics_from_counts_zero_everything():
    values = metrics_from_counts(0, 0, 0, 0)
    assert all(float(v) == 0.0 for v in values.values())


def test_summary_is_plain_and_at_the_best_threshold():
    p = np.array([0.9, 0.8, 0.1, 0.1, 0.2, 0.3, 0.1, 0.4])
    truth = p > 0.85
    result = sweep(p.reshape(2, 2, 2), truth.reshape(2, 2, 2))
    summary = evaluation_summary(result)
    assert summary["chosen_by"] == "fbeta"
    assert summary["threshold"] == pytest.approx(best_threshold(result))
    assert summary["fbeta"] == 1.0 and summary["precision"] == 1.0 and summary["mcc"] == 1.0
    assert (summary["tp"], summary["fp"], summary["tn"], summary["fn"]) == (1, 0, 7, 0)
    assert summary["n_pixels"] == 8 and summary["n_positive_pixels"] == 1
    assert summary["beta"] == 0.1
    assert set(METRICS) <= set(summary)
    assert yaml.safe_load(yaml.safe_dump(summary)) == summary  # plain YAML values
    given = evaluation_summary(result, thresholds()[_index(0.5)])
    assert given["chosen_by"] == "given" and given["fp"] == 1
    with pytest.raises(ValueError, match="not one of"):
        evaluation_summary(result, 0.123)


def test_large_input_is_fast_path_and_exact():
    rng = np.random.default_rng(1)
    p = rng.random(3_000_000, dtype=np.float32)
    truth = rng.random(3_000_000) < 0.01
    result = sweep(p, truth)
    for value in (0.05, 0.5, 1.0):
        i = _index(value)
        t = thresholds()[i]
        assert result.tp[i] == np.sum((p >= t) & truth)
        assert result.fp[i] == np.sum((p >= t) & ~truth)
    assert result.n_pixels == 3_000_000


def test_bad_input():
    with pytest.raises(ValueError, match="sizes must match"):
        sweep(np.zeros(3), np.zeros(4, dtype=bool))
    with pytest.raises(ValueError, match="NaN"):
        sweep(np.array([0.1, np.nan]), np.zeros(2, dtype=bool))
    result = sweep(np.array([0.2]), np.array([True]))
    with pytest.raises(ValueError, match="unknown metric"):
        best_threshold(result, "accuracy")
