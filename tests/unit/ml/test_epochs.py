"""Which epoch a training keeps (``ml.epochs``): event-level score, ties, early stopping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deep_events_dagster.ml.epochs import BestEpoch, EventScore, Validation, event_score


def _validation(loss: float, f1: float, threshold: float = 0.5, margin: int = 1) -> Validation:
    score = EventScore(f1, threshold, margin)
    return Validation(loss, 0.0, 0.0, 0.0, np.zeros(0), (0, 0, 0, 0), math.nan, score)


def test_event_score_is_f1_at_the_fbeta_threshold():
    # three events (two samples each) and two empty ones; truth by the maximum ground truth
    groups = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    truth = np.array([0, 1, 0.9, 0, 1, 1, 0, 0, 0, 0.2])
    # event maxima: 0.9, 0.8, 0.3 (positives); 0.6, 0.1 (negatives)
    scores = np.array([0.9, 0.2, 0.8, 0.1, 0.3, 0.2, 0.6, 0.5, 0.1, 0.05])
    result = event_score(scores, truth, groups)
    # F-beta (β 0.1) is almost precision: precision 1 from 0.6 (0.6 itself is not above it) to
    # 0.79 (0.8 still above): 20 thresholds, the middle one kept; there tp 2, fp 0, fn 1 →
    # F1 = 2·2 / (2·2 + 0 + 1) = 0.8
    assert result.threshold == pytest.approx(0.69)
    assert result.margin == 20
    assert result.f1 == pytest.approx(0.8)


def test_a_plateau_without_separation_is_no_margin():
    # every event scores 0.99: all thresholds decide alike (all positive, a false positive)
    result = event_score(np.full(4, 0.99), np.array([1, 1, 0, 1]))
    assert result.f1 == pytest.approx(2 * 3 / (2 * 3 + 1)) and result.margin == 0


def test_event_score_without_a_positive_event_is_nan():
    result = event_score(np.array([0.9, 0.1]), np.array([0.0, 0.3]))
    assert math.isnan(result.f1) and result.threshold == 0.5


def test_validation_from_maxima_counts_events_at_one_half():
    groups = np.array([0, 0, 1, 2])
    validation = Validation.from_maxima(
        (0.2, 0.5, 0.6, 0.55), np.array([0.4, 0.7, 0.3, 0.8]), np.array([1, 0, 1, 0]), groups
    )
    # event 0 found (0.7), event 1 missed (0.3), event 2 a false positive (0.8)
    assert validation.event_counts == (1, 1, 1, 0)
    assert validation.event_f1 == pytest.approx(0.5)
    assert validation.loss == 0.2 and validation.f1 == 0.55


def test_event_f1_beats_a_lower_loss_and_ties_go_to_the_lower_loss():
    best = BestEpoch("event_f1", patience=None)
    assert best.offer(1, 0.30, _validation(0.30, 0.70))
    assert not best.offer(2, 0.10, _validation(0.10, 0.60))  # lower loss, fewer events found
    assert best.offer(3, 0.40, _validation(0.40, 0.90, threshold=0.8))
    assert not best.offer(4, 0.45, _validation(0.45, 0.90))  # tie, higher loss
    assert best.offer(5, 0.35, _validation(0.35, 0.90, threshold=0.7))  # tie, lower loss
    assert (best.epoch, best.event_f1, best.threshold, best.loss) == (5, 0.90, 0.7, 0.35)


def test_among_equal_event_f1_the_wider_margin_wins_before_the_loss():
    best = BestEpoch("event_f1", patience=None)
    assert best.offer(1, 0.10, _validation(0.10, 1.0, margin=3))
    assert best.offer(2, 0.30, _validation(0.30, 1.0, margin=12))  # higher loss, wider margin
    assert not best.offer(3, 0.05, _validation(0.05, 1.0, margin=5))
    assert not best.offer(4, 0.01, _validation(0.01, 0.9, margin=40))
    assert (best.epoch, best.margin) == (2, 12)


def test_val_loss_monitor_keeps_the_lowest_loss():
    best = BestEpoch("val_loss", patience=None)
    for epoch, (loss, f1) in enumerate([(0.3, 0.9), (0.1, 0.2), (0.2, 1.0)], start=1):
        best.offer(epoch, loss, _validation(loss, f1))
    assert best.epoch == 2 and best.loss == 0.1


def test_without_a_positive_eval_event_the_loss_decides():
    best = BestEpoch("event_f1", patience=None)
    best.offer(1, 0.3, _validation(0.3, math.nan))
    best.offer(2, 0.2, _validation(0.2, math.nan))
    assert best.epoch == 2


def test_patience_counts_epochs_since_the_best_one():
    best = BestEpoch("event_f1", patience=2)
    best.offer(1, 0.3, _validation(0.3, 0.5))
    best.offer(2, 0.3, _validation(0.3, 0.4))
    assert not best.should_stop
    best.offer(3, 0.3, _validation(0.3, 0.4))
    assert best.should_stop and best.since == 2 and best.epoch == 1


def test_epochs_without_a_finite_loss_are_skipped():
    best = BestEpoch("val_loss", patience=None)
    assert not best.offer(1, math.nan)
    assert best.epoch == 0
    assert best.offer(2, 0.5)
