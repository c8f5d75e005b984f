"""Pixel-wise evaluation of predicted probabilities: a threshold sweep and its metrics.

:func:`sweep` counts, for each of the 96 thresholds ``np.linspace(0.05, 1.0, 96)`` (as the
original deep-events), the pixels predicted positive (probability ``≥`` threshold) against the
binary truth, and derives precision, recall, F1, MCC, weighted MCC, Cohen's kappa, specificity,
NPV and F-beta (β = 0.1, which weighs precision far above recall: a false trigger of the
microscope costs more than a missed event).

The counts are exact and the sweep is one pass over the data, in chunks: the probabilities of
each class are histogrammed with the 96 thresholds as bin edges (``np.histogram`` with explicit
edges compares every value with the edges exactly), and a reverse cumulative sum gives the
number of pixels at or above each threshold. Ten million pixels take well under a second.

Every ratio whose denominator is zero is 0 (e.g. precision when nothing is predicted positive).

**Weighted MCC** is the MCC of the class-balanced confusion matrix: positive pixels weigh
``N / (2·P)`` and negative pixels ``N / (2·Nn)`` (``N`` pixels, ``P`` positive, ``Nn``
negative), so both classes count as much in total. Rare event pixels would otherwise make MCC
mostly a statement about the background. (The original used fixed cell weights
``tp 5, tn 5, fp 10, fn 1`` instead; values are not comparable.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "BETA",
    "METRICS",
    "SweepResult",
    "best_threshold",
    "confusion_counts",
    "evaluation_summary",
    "metrics_from_counts",
    "sweep",
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
        The thresholds; a pixel is predicted positive when its probability is ``≥`` one.
    tp, fp, tn, fn
        Pixel counts.
    precision, recall, f1, mcc, weighted_mcc, kappa, specificity, npv, fbeta
        Metrics (0 where undefined).
    beta
        β of ``fbeta``.
    n_pixels, n_positive
        Pixels evaluated, and those with positive truth.
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
    n_pixels: int = 0
    n_positive: int = 0

    def metric(self, name: str) -> np.ndarray:
        """The array of metric ``name`` (one of :data:`METRICS`)."""
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)}")
        return getattr(self, name)

    def as_table(self) -> list[dict[str, float]]:
        """One plain dict per threshold (threshold, counts and metrics)."""
        rows = []
        for i, threshold in enumerate(self.thresholds):
            row: dict[str, float] = {"threshold": float(threshold)}
            for name in ("tp", "fp", "tn", "fn"):
                row[name] = int(getattr(self, name)[i])
            for name in METRICS:
                row[name] = float(getattr(self, name)[i])
            rows.append(row)
        return rows


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
    """All :data:`METRICS` from confusion counts (scalars or arrays), zero where undefined."""
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


def confusion_counts(
    probabilities: Any, truth: Any, levels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact ``(tp, fp, tn, fn)`` at each threshold of ``levels`` (default :func:`thresholds`).

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
    levels = thresholds() if levels is None else np.asarray(levels, dtype=np.float64)
    if levels.ndim != 1 or (len(levels) > 1 and np.any(np.diff(levels) <= 0)):
        raise ValueError("thresholds must be a 1-D increasing array")
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


def sweep(probabilities: Any, truth: Any, *, beta: float = BETA) -> SweepResult:
    """Threshold sweep over ``np.linspace(0.05, 1.0, 96)``.

    Parameters
    ----------
    probabilities
        Predicted probabilities (any shape, e.g. ``N×H×W``).
    truth
        Binary truth of the same size (booleans, or masks: positive where ``> 0.5``).
    beta
        β of the F-beta score.
    """
    levels = thresholds()
    tp, fp, tn, fn = confusion_counts(probabilities, truth, levels)
    values = metrics_from_counts(tp, fp, tn, fn, beta=beta)
    return SweepResult(
        thresholds=levels,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        beta=float(beta),
        n_pixels=int(tp[0] + fp[0] + tn[0] + fn[0]),
        n_positive=int(tp[0] + fn[0]),
        **values,
    )


def best_threshold(result: SweepResult, metric: str = "fbeta") -> float:
    """The threshold maximising ``metric`` (the lowest one among ties)."""
    values = result.metric(metric)
    return float(result.thresholds[int(np.argmax(values))])


def evaluation_summary(
    result: SweepResult, threshold: float | None = None, *, metric: str = "fbeta"
) -> dict[str, Any]:
    """Plain values for ``evaluation.yaml`` at ``threshold`` (default: the best ``metric``).

    Returns
    -------
    dict
        ``threshold``, the nine metrics, ``beta``, ``tp``/``fp``/``tn``/``fn``, ``n_pixels``,
        ``n_positive_pixels`` and ``chosen_by`` (the metric, or ``"given"``).
    """
    chosen_by = metric if threshold is None else "given"
    if threshold is None:
        threshold = best_threshold(result, metric)
    index = int(np.argmin(np.abs(result.thresholds - float(threshold))))
    if not np.isclose(result.thresholds[index], threshold, rtol=0, atol=1e-9):
        raise ValueError(f"threshold {threshold} is not one of the sweep's thresholds")
    summary: dict[str, Any] = {"threshold": round(float(result.thresholds[index]), 6)}
    for name in METRICS:
        summary[name] = float(result.metric(name)[index])
    summary.update(
        {
            "beta": float(result.beta),
            "tp": int(result.tp[index]),
            "fp": int(result.fp[index]),
            "tn": int(result.tn[index]),
            "fn": int(result.fn[index]),
            "n_pixels": int(result.n_pixels),
            "n_positive_pixels": int(result.n_positive),
            "chosen_by": chosen_by,
        }
    )
    return summary
