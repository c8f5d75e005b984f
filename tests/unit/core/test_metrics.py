"""Tests for core.metrics and core.metric_units: exact counts, metric values by hand, edge cases;
pixel, frame and event units (the microscope's rule: max probability > threshold)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from deep_events_dagster.core.metric_units import event_groups, sample_max, unit_scores
from deep_events_dagster.core.metrics import (
    METRICS,
    UnitCounts,
    best_threshold,
    confusion_counts,
    evaluation_summary,
    event_counts,
    f1_from_counts,
    max_sweep,
    metrics_from_counts,
    sweep,
    threshold_margin,
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
    assert result.n_units == 6 and result.n_positive == 3
    assert result.unit == "pixel" and not result.strict
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
    # the best F-beta is where the false positive at 0.8 is gone and the positive at 0.9 still
    # counts (0.81 … 0.90, pixels count at ≥): the middle of that plateau, the widest margin
    assert result.fbeta[_index(0.81)] == result.fbeta[_index(0.9)] == 1.0
    assert result.fbeta[_index(0.8)] < 1.0 and result.fbeta[_index(0.91)] < 1.0
    assert best_threshold(result) == pytest.approx(0.85)
    assert threshold_margin(result) == 10


def test_all_negative_truth():
    p = np.array([0.1, 0.5, 0.7, 0.99])
    result = sweep(p, np.zeros(4, dtype=bool))
    for name in ("precision", "recall", "f1", "mcc", "weighted_mcc", "kappa", "fbeta"):
        assert not result.metric(name).any(), name
    i = _index(0.6)
    assert result.specificity[i] == pytest.approx(2 / 4)
    assert result.npv[i] == 1.0
    # every threshold ties (at 0): the middle of the whole range
    assert best_threshold(result) == pytest.approx(thresholds()[47])
    assert threshold_margin(result) == 96
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
    assert summary["threshold"] == pytest.approx(best_threshold(result))
    assert summary["fbeta"] == 1.0 and summary["precision"] == 1.0 and summary["mcc"] == 1.0
    assert (summary["tp"], summary["fp"], summary["fn"], summary["tn"]) == (1, 0, 0, 7)
    assert summary["n_units"] == 8 and summary["n_positive"] == 1
    assert list(summary) == ["threshold", *METRICS, "tp", "fp", "fn", "tn", "n_units", "n_positive"]
    assert yaml.safe_load(yaml.safe_dump(summary)) == summary  # plain YAML values
    given = evaluation_summary(result, thresholds()[_index(0.5)])
    assert given["fp"] == 1 and given["threshold"] == 0.5
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
    assert result.n_units == 3_000_000


def test_bad_input():
    with pytest.raises(ValueError, match="sizes must match"):
        sweep(np.zeros(3), np.zeros(4, dtype=bool))
    with pytest.raises(ValueError, match="NaN"):
        sweep(np.array([0.1, np.nan]), np.zeros(2, dtype=bool))
    result = sweep(np.array([0.2]), np.array([True]))
    with pytest.raises(ValueError, match="unknown metric"):
        best_threshold(result, "accuracy")


# -- units: events and frames -------------------------------------------------------------------

# five events: maximum probability and maximum ground truth of each
EVENT_SCORES = np.array([0.9, 0.6, 0.3, 0.7, 0.2])
EVENT_TRUTH = np.array([1.0, 0.8, 0.9, 0.0, 0.0])  # > 0.5: events 0, 1, 2 positive


def test_event_counts_by_hand():
    # predicted (> 0.5): 0, 1, 3 → TP 0 and 1, FP 3, FN 2, TN 4
    counts = event_counts(EVENT_SCORES, EVENT_TRUTH, threshold=0.5)
    assert counts == UnitCounts(tp=2, fp=1, fn=1, tn=1)
    assert tuple(counts) == (2, 1, 1, 1)  # the order is (tp, fp, fn, tn)
    assert all(type(v) is int for v in counts)
    assert f1_from_counts(*counts) == pytest.approx(2 / 3)
    assert f1_from_counts(0, 0, 0) == 0.0
    assert f1_from_counts(3, 1, 0) == pytest.approx(6 / 7)
    # the same counts and metrics from the sweep at 0.5
    result = max_sweep(EVENT_SCORES, EVENT_TRUTH)
    i = _index(0.5)
    assert (result.tp[i], result.fp[i], result.fn[i], result.tn[i]) == (2, 1, 1, 1)
    assert result.precision[i] == pytest.approx(2 / 3)
    assert result.recall[i] == pytest.approx(2 / 3)
    assert result.f1[i] == pytest.approx(2 / 3)
    assert result.specificity[i] == pytest.approx(1 / 2)
    assert result.mcc[i] == pytest.approx((2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2))
    assert result.n_units == 5 and result.n_positive == 3
    assert result.unit == "event" and result.strict
    # at 0.65 event 1 (0.6) is missed: TP 1, FP 1, FN 2, TN 1
    assert event_counts(EVENT_SCORES, EVENT_TRUTH, threshold=0.65) == (1, 1, 2, 1)
    j = _index(0.65)
    assert (result.tp[j], result.fp[j], result.fn[j], result.tn[j]) == (1, 1, 2, 1)
    # the best F-beta: above the false positive at 0.7, below the true positive at 0.9
    # (0.70 … 0.89, events count at >): the middle of that plateau
    assert result.precision[_index(0.7)] == result.precision[_index(0.89)] == 1.0
    assert best_threshold(result) == pytest.approx(0.79)
    assert threshold_margin(result) == 20


def test_the_threshold_is_strict():
    levels = thresholds()
    i = _index(0.5)
    on = levels[i]  # a score exactly on a threshold does not pass it
    assert event_counts([on], [1.0], threshold=on) == (0, 0, 1, 0)
    assert event_counts([np.nextafter(on, 1.0)], [1.0], threshold=on) == (1, 0, 0, 0)
    assert event_counts([0.5], [0.0], threshold=0.5) == (0, 0, 0, 1)
    result = max_sweep(np.array([on]), np.array([True]))
    assert result.tp[i] == 0 and result.fn[i] == 1
    assert result.tp[i - 1] == 1
    # ground truth exactly 0.5 is negative (> 0.5)
    assert event_counts([0.9], [0.5], threshold=0.5) == (0, 1, 0, 0)
    # pixels keep ≥: the same value counts at its own threshold
    assert sweep(np.array([on]), np.array([True])).tp[i] == 1


def test_max_sweep_matches_brute_force():
    rng = np.random.default_rng(3)
    levels = thresholds()
    scores = np.concatenate([rng.random(300), rng.choice(levels, 200), [0.0, 1.0, 1.3]])
    truth = rng.random(scores.size) < 0.4
    result = max_sweep(scores.astype(np.float32), truth)
    scores32 = scores.astype(np.float32)
    for i, t in enumerate(levels):
        predicted = scores32 > t
        assert result.tp[i] == np.sum(predicted & truth)
        assert result.fp[i] == np.sum(predicted & ~truth)
        assert result.fn[i] == np.sum(~predicted & truth)
        assert result.tn[i] == np.sum(~predicted & ~truth)
        assert event_counts(scores32, truth.astype(float), threshold=t) == (
            result.tp[i],
            result.fp[i],
            result.fn[i],
            result.tn[i],
        )
    with pytest.raises(ValueError, match="sizes must match"):
        max_sweep(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="NaN"):
        max_sweep(np.array([np.nan]), np.array([True]))


def _manifest_rows():
    # eval rows deliberately out of order, with train rows (other stack) between them
    return [
        {"_id": "B", "split": "eval", "first_sample": 3, "n_samples": 2},
        {"_id": "T1", "split": "train", "first_sample": 0, "n_samples": 9},
        {"_id": "A", "split": "eval", "first_sample": 0, "n_samples": 3},
        {"_id": "C", "split": "eval", "first_sample": 5, "n_samples": 1},
        {"_id": "D", "split": "eval", "first_sample": 6, "n_samples": 2},
        {"_id": "T2", "split": "train", "first_sample": 9, "n_samples": 0},
    ]


def test_events_are_grouped_by_manifest_rows():
    # A (rows 0-2): positive, only its last sample scores above 0.5 → TP
    # B (rows 3-4): auto-negative, one sample above 0.5 → FP
    # C (row 5): negative, low → TN;  D (rows 6-7): positive, low → FN
    prob_max = np.array([0.1, 0.2, 0.8, 0.3, 0.7, 0.1, 0.4, 0.2])
    truth_max = np.array([1.0, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.7])
    groups = event_groups(_manifest_rows(), 8)
    np.testing.assert_array_equal(groups, [1, 1, 1, 0, 0, 2, 3, 3])
    assert event_counts(prob_max, truth_max, groups, threshold=0.5) == (1, 1, 1, 1)
    # the same grouping by event id
    ids = np.array(["A", "A", "A", "B", "B", "C", "D", "D"])
    assert event_counts(prob_max, truth_max, ids, threshold=0.5) == (1, 1, 1, 1)
    np.testing.assert_array_equal(unit_scores(prob_max, ids), [0.8, 0.7, 0.1, 0.4])
    np.testing.assert_array_equal(unit_scores(truth_max, ids) > 0.5, [True, False, False, True])
    # frame by frame it is another count: sample 2 is FP (its own GT is 0), 0, 1, 7 are FN
    assert event_counts(prob_max, truth_max, threshold=0.5) == (0, 2, 3, 3)
    # whole maps are reduced to their maxima first
    maps = np.zeros((8, 4, 4))
    maps[np.arange(8), 1, 2] = prob_max
    assert event_counts(maps, truth_max, groups, threshold=0.5) == (1, 1, 1, 1)


def test_event_groups_fallback_and_errors():
    assert event_groups(None, 5) is None
    assert event_groups([], 5) is None
    rows = _manifest_rows()
    with pytest.raises(ValueError, match="belong to no eval event"):
        event_groups(rows, 9)
    with pytest.raises(ValueError, match="outside"):
        event_groups(rows, 7)
    overlap = [*rows, {"_id": "E", "split": "eval", "first_sample": 4, "n_samples": 1}]
    with pytest.raises(ValueError, match="overlap"):
        event_groups(overlap, 8)
    with pytest.raises(ValueError, match="first_sample"):
        event_groups([{"_id": "X", "split": "eval", "n_samples": 1}], 1)
    # the train split's rows
    np.testing.assert_array_equal(event_groups(rows, 9, split="train"), np.zeros(9))


def test_unit_scores_and_sample_max():
    stack = np.arange(24, dtype=np.float32).reshape(3, 2, 4)
    np.testing.assert_array_equal(sample_max(stack), [7, 15, 23])
    np.testing.assert_array_equal(unit_scores(stack), [7, 15, 23])
    np.testing.assert_array_equal(unit_scores(stack, [5, 2, 5]), [15, 23])  # sorted labels
    with pytest.raises(ValueError, match="one label per sample"):
        unit_scores(stack, [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        sample_max(np.array([[0.1, np.nan]]))
