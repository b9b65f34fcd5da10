"""Classification metrics: ROC AUC with a bootstrap interval, sensitivity and specificity.

Pure numpy, so training loops and evaluation use the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AucResult:
    """ROC AUC with its percentile-bootstrap 95% interval and the class counts."""

    auc: float
    ci_low: float
    ci_high: float
    n_pos: int
    n_neg: int


def _binary(labels: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, int).ravel()
    s = np.asarray(scores, float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return y, s


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties).

    Parameters
    ----------
    labels : sequence of int
        1 positive, 0 negative; both must occur.
    scores : sequence of float
        Higher means more likely positive.

    Returns
    -------
    float
        The probability that a random positive outscores a random negative (ties count half).

    Examples
    --------
    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> roc_auc([0, 1], [0.5, 0.5])
    0.5
    """
    y, s = _binary(labels, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative labels")
    order = np.argsort(s, kind="mergesort")
    _, first, counts = np.unique(s[order], return_index=True, return_counts=True)
    ranks = np.empty(s.size)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based mid-ranks
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auc_with_ci(labels: Sequence[int], scores: Sequence[float], *, n_boot: int = 2000, seed: int = 0) -> AucResult:
    """ROC AUC with a percentile bootstrap 95% confidence interval (resampling cases).

    Parameters
    ----------
    labels, scores : sequence
        As for :func:`roc_auc`.
    n_boot : int
        Bootstrap resamples; those that miss a class are dropped.
    seed : int
        Seed of the resampling.

    Returns
    -------
    AucResult

    Raises
    ------
    ValueError
        If only one class occurs.

    Examples
    --------
    >>> r = auc_with_ci([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], n_boot=100)
    >>> r.auc, r.ci_low, r.ci_high, r.n_pos, r.n_neg
    (1.0, 1.0, 1.0, 2, 2)
    """
    y, s = _binary(labels, scores)
    if len(set(y.tolist())) < 2:
        raise ValueError("AUC needs both tumour and normal cases")
    auc = roc_auc(y, s)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if len(set(y[idx].tolist())) == 2:
            boots.append(roc_auc(y[idx], s[idx]))
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (np.nan, np.nan)
    return AucResult(auc, float(lo), float(hi), int((y == 1).sum()), int((y == 0).sum()))


def sens_spec(labels: Sequence[int], scores: Sequence[float], threshold: float) -> tuple[float, float]:
    """Sensitivity and specificity of ``score >= threshold`` (NaN for a class that does not occur).

    Examples
    --------
    >>> sens_spec([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.4], 0.5)
    (0.5, 0.5)
    """
    y, s = _binary(labels, scores)
    pred = s >= threshold
    sens = float(pred[y == 1].mean()) if (y == 1).any() else float("nan")
    spec = float((~pred[y == 0]).mean()) if (y == 0).any() else float("nan")
    return sens, spec
