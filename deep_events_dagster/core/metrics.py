"""Evaluation of predicted probabilities: threshold sweeps over events, frames and pixels.

Three units share the 96 thresholds ``np.linspace(0.05, 1.0, 96)`` (as the original
deep-events) and the same metrics — precision, recall, F1, MCC, weighted MCC, Cohen's kappa,
specificity, NPV and F-beta (β = 0.1, which weighs precision far above recall: a false trigger of
the microscope costs more than a missed event):

**event** (the original's default ``whole_ev_eval``, and the microscope's rule). One unit per
held-out event: the samples ``first_sample … first_sample + n_samples − 1`` of the eval stack
(the training set manifest's rows, see :func:`.metric_units.event_groups`). An event is
*predicted positive* when the maximum of its samples' probability maps is **strictly greater**
than the threshold (as the original, and as the microscope triggers), and *actually positive*
when the maximum of its ground truth is ``> 0.5``; events whose ground truth is all zero (the
automatic negatives) are the negatives. :func:`.metric_units.unit_scores` reduces samples to
units, :func:`max_sweep` sweeps them.

**frame**: the same rule with one unit per sample (one image as the microscope sees it).

**pixel**: :func:`sweep`, every pixel is a unit, predicted positive when its probability is
``≥`` the threshold, positive when its mask is ``> 0.5``. The counts are exact and the sweep is
one pass over the data, in chunks: the probabilities of each class are histogrammed with the 96
thresholds as bin edges (``np.histogram`` with explicit edges compares every value with the edges
exactly), and a reverse cumulative sum gives the number of pixels at or above each threshold. Ten
million pixels take well under a second.

Every ratio whose denominator is zero is 0 (e.g. precision when nothing is predicted positive).

**Weighted MCC** is the MCC of the class-balanced confusion matrix: positive units weigh
``N / (2·P)`` and negative units ``N / (2·Nn)`` (``N`` units, ``P`` positive, ``Nn``
negative), so both classes count as much in total. Rare positives would otherwise make MCC
mostly a statement about the negatives. (The original used fixed cell weights
``tp 5, tn 5, fp 10, fn 1`` instead; values are not comparable.)

For the trainer's per-epoch report, :func:`event_counts` gives the event-level
``(tp, fp, fn, tn)`` at one threshold and :func:`f1_from_counts` their F1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from deep_events_dagster.core.metric_units import unit_scores

__all__ = [
    "BETA",
    "METRICS",
    "SweepResult",
    "UnitCounts",
    "best_threshold",
    "confusion_counts",
    "evaluation_summary",
    "event_counts",
    "f1_from_counts",
    "max_sweep",
    "metrics_from_counts",
    "sweep",
    "threshold_margin",
    "thresholds",
]

BETA = 0.1
N_THRESHOLDS = 96
METRICS = (
    "precision",
    "recall",
    "f1",
    "mcc",
    "weighted_mcc",
    "kappa",
    "specificity",
    "npv",
    "fbeta",
)
_CHUNK = 1 << 22


def thresholds() -> np.ndarray:
    """The 96 thresholds 0.05, 0.06, …, 1.0 (``np.linspace(0.05, 1.0, 96)``)."""
    return np.linspace(0.05, 1.0, N_THRESHOLDS)


@dataclass(frozen=True)
class SweepResult:
    """Confusion counts and metrics per threshold (arrays of length 96, float64).

    Attributes
    ----------
    thresholds
        The thresholds.
    tp, fp, tn, fn
        Unit counts (int64).
    precision, recall, f1, mcc, weighted_mcc, kappa, specificity, npv, fbeta
        Metrics (0 where undefined).
    beta
        β of ``fbeta``.
    n_units, n_positive
        Units evaluated, and those with positive truth.
    unit
        ``"pixel"``, ``"frame"``, ``"event"`` or ``"sample"`` (what one count is).
    strict
        Whether a unit is predicted positive when its score is ``>`` the threshold (events,
        frames) rather than ``≥`` (pixels).
    """

    thresholds: np.ndarray = field(hash=False)
    tp: np.ndarray = field(hash=False)
    fp: np.ndarray = field(hash=False)
    tn: np.ndarray = field(hash=False)
    fn: np.ndarray = field(hash=False)
    precision: np.ndarray = field(hash=False)
    recall: np.ndarray = field(hash=False)
    f1: np.ndarray = field(hash=False)
    mcc: np.ndarray = field(hash=False)
    weighted_mcc: np.ndarray = field(hash=False)
    kappa: np.ndarray = field(hash=False)
    specificity: np.ndarray = field(hash=False)
    npv: np.ndarray = field(hash=False)
    fbeta: np.ndarray = field(hash=False)
    beta: float = BETA
    n_units: int = 0
    n_positive: int = 0
    unit: str = "pixel"
    strict: bool = False

    def metric(self, name: str) -> np.ndarray:
        """The array of metric ``name`` (one of :data:`METRICS`)."""
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)}")
        return getattr(self, name)

    def index(self, threshold: float) -> int:
        """Index of ``threshold`` among :attr:`thresholds`.

        Raises
        ------
        ValueError
            ``threshold`` is not one of them (to 1e-9).
        """
        index = int(np.argmin(np.abs(self.thresholds - float(threshold))))
        if not np.isclose(self.thresholds[index], threshold, rtol=0, atol=1e-9):
            raise ValueError(f"threshold {threshold} is not one of the sweep's thresholds")
        return index

    def as_table(self) -> list[dict[str, float]]:
        """One plain dict per threshold (threshold, counts and metrics)."""
        rows = []
        for i, threshold in enumerate(self.thresholds):
            row: dict[str, float] = {"threshold": float(threshold)}
            for name in ("tp", "fp", "fn", "tn"):
                row[name] = int(getattr(self, name)[i])
            for name in METRICS:
                row[name] = float(getattr(self, name)[i])
            rows.append(row)
        return rows


class UnitCounts(NamedTuple):
    """Confusion counts at one threshold, in the order ``(tp, fp, fn, tn)``."""

    tp: int
    fp: int
    fn: int
    tn: int


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _mcc(tp: np.ndarray, fp: np.ndarray, tn: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return _ratio(tp * tn - fp * fn, denominator)


def metrics_from_counts(
    tp: Any, fp: Any, tn: Any, fn: Any, *, beta: float = BETA
) -> dict[str, np.ndarray]:
    """All :data:`METRICS` from confusion counts (scalars or arrays), zero where undefined.

    Note the argument order ``(tp, fp, tn, fn)`` (that of :func:`confusion_counts`).
    """
    tp, fp, tn, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, tn, fn))
    positives = tp + fn
    negatives = tn + fp
    total = positives + negatives
    beta2 = beta * beta
    w_pos = _ratio(total, 2 * positives)
    w_neg = _ratio(total, 2 * negatives)
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "mcc": _mcc(tp, fp, tn, fn),
        "weighted_mcc": _mcc(w_pos * tp, w_neg * fp, w_neg * tn, w_pos * fn),
        # Cohen's kappa = (p_o − p_e) / (1 − p_e), written with counts only
        "kappa": _ratio(2 * (tp * tn - fp * fn), (tp + fp) * (fp + tn) + (tp + fn) * (fn + tn)),
        "specificity": _ratio(tn, tn + fp),
        "npv": _ratio(tn, tn + fn),
        "fbeta": _ratio((1 + beta2) * tp, (1 + beta2) * tp + beta2 * fn + fp),
    }


def f1_from_counts(tp: int, fp: int, fn: int, tn: int = 0) -> float:
    """F1 ``2·tp / (2·tp + fp + fn)``, 0 when nothing is positive nor predicted positive.

    ``tn`` is accepted (and ignored) so that ``f1_from_counts(*event_counts(...))`` works.
    """
    denominator = 2 * int(tp) + int(fp) + int(fn)
    return 2 * int(tp) / denominator if denominator else 0.0


def _levels(levels: Any) -> np.ndarray:
    levels = thresholds() if levels is None else np.asarray(levels, dtype=np.float64)
    if levels.ndim != 1 or (len(levels) > 1 and np.any(np.diff(levels) <= 0)):
        raise ValueError("thresholds must be a 1-D increasing array")
    return levels


def confusion_counts(
    probabilities: Any, truth: Any, levels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact pixel ``(tp, fp, tn, fn)`` at each threshold of ``levels`` (default
    :func:`thresholds`).

    Parameters
    ----------
    probabilities
        Predicted probabilities, any shape.
    truth
        Same number of elements: booleans, or values (positive when ``> 0.5``).
    levels
        Increasing thresholds; a pixel is predicted positive when ``probability ≥ threshold``.

    Raises
    ------
    ValueError
        Sizes differ, or a probability is NaN.
    """
    levels = _levels(levels)
    probabilities = np.asarray(probabilities).reshape(-1)
    truth = np.asarray(truth).reshape(-1)
    if probabilities.size != truth.size:
        raise ValueError(
            f"{probabilities.size} probabilities but {truth.size} truth values; sizes must match"
        )
    # hist[c, i]: pixels of class c (0 negative, 1 positive) with levels[i] ≤ p < levels[i + 1]
    # (the last bin reaches +inf); numpy's histogram with explicit edges sorts each block and
    # searches the edges in it, so the counts are exact comparisons with the thresholds
    edges = np.append(levels, np.inf)
    hist = np.zeros((2, len(levels)), dtype=np.int64)
    n_class = np.zeros(2, dtype=np.int64)
    for start in range(0, probabilities.size, _CHUNK):
        p = probabilities[start : start + _CHUNK]
        t = truth[start : start + _CHUNK]
        positive = t if t.dtype == np.bool_ else t > 0.5
        if p.dtype.kind == "f" and np.isnan(p).any():
            raise ValueError("probabilities contain NaN")
        n_pos = int(np.count_nonzero(positive))
        n_class += (len(p) - n_pos, n_pos)
        hist[1] += np.histogram(p[positive], bins=edges)[0]
        hist[0] += np.histogram(p[~positive], bins=edges)[0]
    at_or_above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]
    n_negative, n_positive = n_class
    tp = at_or_above[1]
    fp = at_or_above[0]
    return tp, fp, n_negative - fp, n_positive - tp


def _result(
    levels: np.ndarray,
    tp: np.ndarray,
    fp: np.ndarray,
    tn: np.ndarray,
    fn: np.ndarray,
    *,
    beta: float,
    unit: str,
    strict: bool,
) -> SweepResult:
    values = metrics_from_counts(tp, fp, tn, fn, beta=beta)
    n_units = int(tp[0] + fp[0] + tn[0] + fn[0]) if len(levels) else 0
    return SweepResult(
        thresholds=levels,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        beta=float(beta),
        n_units=n_units,
        n_positive=int(tp[0] + fn[0]) if len(levels) else 0,
        unit=unit,
        strict=strict,
        **values,
    )


def sweep(probabilities: Any, truth: Any, *, beta: float = BETA) -> SweepResult:
    """Pixel-wise threshold sweep over ``np.linspace(0.05, 1.0, 96)``.

    Parameters
    ----------
    probabilities
        Predicted probabilities (any shape, e.g. ``N×H×W``); a pixel is predicted positive
        when its probability is ``≥`` the threshold.
    truth
        Binary truth of the same size (booleans, or masks: positive where ``> 0.5``).
    beta
        β of the F-beta score.
    """
    levels = thresholds()
    tp, fp, tn, fn = confusion_counts(probabilities, truth, levels)
    return _result(levels, tp, fp, tn, fn, beta=beta, unit="pixel", strict=False)


# -- units: events and frames ------------------------------------------------------------------


def max_sweep(
    scores: Any, truth: Any, *, beta: float = BETA, unit: str = "event", levels: Any = None
) -> SweepResult:
    """Unit-level threshold sweep: a unit is predicted positive when its score is ``>`` the
    threshold (strictly, as the microscope triggers).

    Parameters
    ----------
    scores
        One score per unit: the maximum of its probability maps
        (:func:`.metric_units.unit_scores`).
    truth
        One per unit: booleans, or the maximum of its ground truth (positive when ``> 0.5``).
    beta
        β of the F-beta score.
    unit
        What a unit is (``"event"``, ``"frame"``, ``"sample"``), kept in the result.
    levels
        Thresholds (default :func:`thresholds`).

    Raises
    ------
    ValueError
        Lengths differ, or a score is NaN.
    """
    levels = _levels(levels)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth).reshape(-1)
    if scores.size != truth.size:
        raise ValueError(f"{scores.size} scores but {truth.size} truth values; sizes must match")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    positive = truth if truth.dtype == np.bool_ else truth > 0.5
    pos = np.sort(scores[positive])
    neg = np.sort(scores[~positive])
    # units with score > t: n − (units with score ≤ t)
    tp = len(pos) - np.searchsorted(pos, levels, side="right").astype(np.int64)
    fp = len(neg) - np.searchsorted(neg, levels, side="right").astype(np.int64)
    return _result(levels, tp, fp, len(neg) - fp, len(pos) - tp, beta=beta, unit=unit, strict=True)


def event_counts(
    sample_max_prob: Any,
    sample_max_truth: Any,
    groups: Any = None,
    threshold: float = 0.5,
) -> UnitCounts:
    """Event-level ``(tp, fp, fn, tn)`` at one threshold (the trainer's per-epoch report).

    Parameters
    ----------
    sample_max_prob
        Per sample, the maximum of its probability map (``N``; or the maps ``N×H×W``).
    sample_max_truth
        Per sample, the maximum of its ground truth (``N``; or the masks ``N×H×W``).
    groups
        Per sample, its event (ids, or indices from :func:`.metric_units.event_groups`); None:
        every sample is its own unit.
    threshold
        An event is predicted positive when its maximum probability is ``>`` this, positive
        when its maximum ground truth is ``> 0.5``.

    Returns
    -------
    UnitCounts
        ``(tp, fp, fn, tn)`` as plain ints (note the order, unlike :func:`confusion_counts`).
    """
    scores = unit_scores(sample_max_prob, groups)
    truth = unit_scores(sample_max_truth, groups) > 0.5
    predicted = scores > float(threshold)
    return UnitCounts(
        tp=int(np.count_nonzero(predicted & truth)),
        fp=int(np.count_nonzero(predicted & ~truth)),
        fn=int(np.count_nonzero(~predicted & truth)),
        tn=int(np.count_nonzero(~predicted & ~truth)),
    )


# -- choosing and reporting ---------------------------------------------------------------------


def _best_run(values: np.ndarray) -> tuple[int, int]:
    """``(start, length)`` of the longest run of consecutive maxima of ``values`` (the first
    such run among equally long ones)."""
    hits = values >= values.max() - 1e-12
    best_start, best_length, start = 0, 0, None
    for i, hit in enumerate([*hits.tolist(), False]):
        if hit and start is None:
            start = i
        elif not hit and start is not None:
            if i - start > best_length:
                best_start, best_length = start, i - start
            start = None
    return best_start, best_length


def best_threshold(result: SweepResult, metric: str = "fbeta") -> float:
    """The threshold maximising ``metric``.

    When consecutive thresholds tie (a plateau: e.g. every threshold between the highest
    negative and the lowest positive score separates them perfectly), the middle of the
    longest such run is taken — the largest margin on both sides, so that scores of new data
    a little above or below the ones seen are decided the same (the lowest of the run sits
    right above the highest negative). Among equally long runs the lowest.
    """
    start, length = _best_run(result.metric(metric))
    return float(result.thresholds[start + (length - 1) // 2])


def threshold_margin(result: SweepResult, metric: str = "fbeta") -> int:
    """How many consecutive thresholds share the best ``metric`` around
    :func:`best_threshold` (1: a single best threshold; more: a margin of that many steps)."""
    return _best_run(result.metric(metric))[1]


def evaluation_summary(result: SweepResult, threshold: float | None = None) -> dict[str, Any]:
    """Plain values at ``threshold`` (default: the one maximising F-beta).

    Returns
    -------
    dict
        ``threshold`` (rounded to 6 decimals), the nine :data:`METRICS`, ``tp``, ``fp``,
        ``fn``, ``tn`` (ints), ``n_units`` and ``n_positive``.

    Raises
    ------
    ValueError
        ``threshold`` is not one of the sweep's thresholds.
    """
    if threshold is None:
        threshold = best_threshold(result, "fbeta")
    index = result.index(threshold)
    summary: dict[str, Any] = {"threshold": round(float(result.thresholds[index]), 6)}
    for name in METRICS:
        summary[name] = float(result.metric(name)[index])
    for name in ("tp", "fp", "fn", "tn"):
        summary[name] = int(getattr(result, name)[index])
    summary["n_units"] = int(result.n_units)
    summary["n_positive"] = int(result.n_positive)
    return summary
