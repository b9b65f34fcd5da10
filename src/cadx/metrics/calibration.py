"""Probability calibration: temperature scaling, expected calibration error, reliability bins.

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017) divides a
classifier's logits by one number ``T > 0`` fitted on held-out data by minimising the negative
log-likelihood; the arg-max class (so accuracy) never changes, only how confident the model is.
The expected calibration error (ECE) is the top-label version of the same paper: confidences (the
largest class probability) are put in ``n_bins`` equal-width bins on (0, 1], and the gaps between each
bin's accuracy and its mean confidence are averaged, weighted by the bin's share of samples.

Pure numpy. Where only probabilities are kept (a predictor applies softmax), ``np.log(proba)``
serves as logits: softmax is blind to a per-row constant, so the fitted temperature is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed stably (the row maximum subtracted first).

    Parameters
    ----------
    logits : array_like, shape (n_samples, n_classes)

    Returns
    -------
    ndarray of float64, same shape; rows sum to 1.

    Examples
    --------
    >>> softmax([[0.0, np.log(3.0)]]).round(6).tolist()
    [[0.25, 0.75]]
    """
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Class probabilities ``softmax(logits / temperature)``.

    Parameters
    ----------
    logits : array_like, shape (n_samples, n_classes)
        Logits, or log-probabilities (see the module notes).
    temperature : float
        ``T > 0``; above 1 softens the probabilities, below 1 sharpens them.

    Returns
    -------
    ndarray of float64, shape (n_samples, n_classes)

    Examples
    --------
    >>> apply_temperature([[0.0, 2 * np.log(3.0)]], 2.0).round(6).tolist()
    [[0.25, 0.75]]
    """
    t = float(temperature)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return softmax(np.asarray(logits, np.float64) / t)


def _check(logits_or_proba: np.ndarray, labels: Sequence[int], what: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(logits_or_proba, np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{what} must have shape (n_samples, n_classes) with n_samples > 0, got {x.shape}")
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be {x.shape[0]} integer class indices")
    if y.min() < 0 or y.max() >= x.shape[1]:
        raise ValueError(f"labels must lie in 0..{x.shape[1] - 1}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} must be finite")
    return x, y.astype(np.int64)


def nll(logits: np.ndarray, labels: Sequence[int], temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of ``labels`` under ``softmax(logits / temperature)``.

    Examples
    --------
    >>> round(nll([[0.0, 0.0]], [1]), 6) == round(float(np.log(2)), 6)
    True
    """
    z, y = _check(logits, labels, "logits")
    z = z / float(temperature)
    zmax = z.max(axis=1)
    lse = zmax + np.log(np.exp(z - zmax[:, None]).sum(axis=1))
    return float(np.mean(lse - z[np.arange(y.size), y]))


def fit_temperature(logits: np.ndarray, labels: Sequence[int], *,
                    t_range: tuple[float, float] = (0.01, 100.0)) -> float:
    """The temperature ``T`` that minimises the mean negative log-likelihood of ``labels``.

    The NLL is convex in ``1 / T``, so its derivative is monotone there and a bisection on
    ``log(1 / T)`` finds the minimum to machine precision (no optimiser settings to tune).

    Parameters
    ----------
    logits : array_like, shape (n_samples, n_classes)
        Held-out logits (or log-probabilities), typically from the validation split.
    labels : sequence of int, length n_samples
        True class indices.
    t_range : (float, float)
        Bounds on ``T``; the result is clipped to them. A model whose logits rank the true
        class last gets the upper bound; a perfectly separating one gets the lower bound.

    Returns
    -------
    float
        ``T > 0``: divide logits by it (:func:`apply_temperature`).

    Examples
    --------
    Logits twice as large as the labels justify are halved back:

    >>> rng = np.random.default_rng(0)
    >>> true_logits = rng.normal(0, 2, (4000, 3))
    >>> labels = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    >>> round(fit_temperature(2 * true_logits, labels), 1)
    2.0
    """
    z, y = _check(logits, labels, "logits")
    lo_t, hi_t = float(t_range[0]), float(t_range[1])
    if not 0 < lo_t < hi_t:
        raise ValueError(f"t_range must satisfy 0 < low < high, got {t_range!r}")
    z_true = z[np.arange(y.size), y]

    def slope(log_beta: float) -> float:  # d NLL / d beta at beta = 1 / T = exp(log_beta)
        p = softmax(z * np.exp(log_beta))
        return float(np.mean((p * z).sum(axis=1) - z_true))

    lo, hi = np.log(1.0 / hi_t), np.log(1.0 / lo_t)  # in log(beta)
    if slope(lo) >= 0:
        return hi_t
    if slope(hi) <= 0:
        return lo_t
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if slope(mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return float(1.0 / np.exp(0.5 * (lo + hi)))


@dataclass(frozen=True)
class ReliabilityBins:
    """Top-label confidence binned on (0, 1] for a reliability diagram.

    Attributes
    ----------
    edges : ndarray of float64, shape (n_bins + 1,)
        Bin ``b`` holds confidences in ``(edges[b], edges[b + 1]]`` (the first also holds 0).
    count : ndarray of int64, shape (n_bins,)
    confidence : ndarray of float64, shape (n_bins,)
        Mean top-label probability per bin; NaN for an empty bin.
    accuracy : ndarray of float64, shape (n_bins,)
        Fraction of the bin's samples whose arg-max class is right; NaN for an empty bin.
    """

    edges: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: sum over bins of ``count / n * |accuracy - confidence|``."""
        full = self.count > 0
        return float(np.sum(self.count[full] * np.abs(self.accuracy[full] - self.confidence[full]))
                     / self.count.sum())

    def to_dict(self) -> dict[str, list]:
        """Plain lists for JSON (empty bins as ``None``)."""
        def plain(a: np.ndarray) -> list:
            return [None if v != v else float(v) for v in a.tolist()]

        return {"edges": self.edges.tolist(), "count": self.count.tolist(),
                "confidence": plain(self.confidence), "accuracy": plain(self.accuracy)}


def reliability_bins(proba: np.ndarray, labels: Sequence[int], *, n_bins: int = 15) -> ReliabilityBins:
    """Bin the top-label confidence of ``proba`` and measure each bin's accuracy.

    Parameters
    ----------
    proba : array_like, shape (n_samples, n_classes)
        Class probabilities (rows summing to 1).
    labels : sequence of int, length n_samples
    n_bins : int
        Equal-width bins on (0, 1].

    Returns
    -------
    ReliabilityBins

    Examples
    --------
    >>> b = reliability_bins([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], [0, 0, 0], n_bins=5)
    >>> b.count.tolist(), b.accuracy.tolist()[2:], b.confidence.round(2).tolist()[2:]
    ([0, 0, 1, 1, 1], [1.0, 0.0, 1.0], [0.6, 0.8, 0.9])
    """
    p, y = _check(proba, labels, "proba")
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins!r}")
    n_bins = int(n_bins)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)  # (lo, hi]
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(idx, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(idx, weights=correct, minlength=n_bins) / count
    return ReliabilityBins(edges, count.astype(np.int64), confidence, accuracy)


def expected_calibration_error(proba: np.ndarray, labels: Sequence[int], *, n_bins: int = 15) -> float:
    """Top-label expected calibration error (Guo et al. 2017), in [0, 1].

    Parameters
    ----------
    proba : array_like, shape (n_samples, n_classes)
    labels : sequence of int, length n_samples
    n_bins : int
        Equal-width confidence bins on (0, 1].

    Returns
    -------
    float
        0 for a perfectly calibrated model; an always-90 %-sure model that is right 60 % of the
        time scores 0.3.

    Examples
    --------
    >>> proba = np.tile([0.9, 0.1], (10, 1))
    >>> round(expected_calibration_error(proba, [0] * 6 + [1] * 4), 6)
    0.3
    """
    return reliability_bins(proba, labels, n_bins=n_bins).ece
