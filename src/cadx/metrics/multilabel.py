"""Multi-label metrics: the RSNA 2019 weighted log loss and its per-label parts.

The RSNA Intracranial Hemorrhage Detection score (shared/DOMAIN.md): for labels in the order
``epidural, intraparenchymal, intraventricular, subarachnoid, subdural, any``, each label's mean
binary log loss with probabilities clipped to ``[eps, 1 - eps]``, then the weighted mean with weight 2
for ``any`` and 1 for each subtype: ``(2 * LL_any + sum of the five subtype LLs) / 7``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Label weights of the RSNA 2019 metric (five subtypes, then ``any``).
RSNA_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 2.0)


def _check(y_true: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, np.float64)
    q = np.asarray(p, np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if q.ndim == 1:
        q = q[:, None]
    if y.shape != q.shape or y.ndim != 2:
        raise ValueError(f"labels of shape {y.shape} but probabilities of shape {q.shape}")
    if y.shape[0] == 0:
        raise ValueError("no samples")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(q).all() or (q < 0).any() or (q > 1).any():
        raise ValueError("probabilities must be finite and in [0, 1]")
    return y, q


def per_label_log_loss(y_true: np.ndarray, p: np.ndarray, *, eps: float = 1e-15) -> np.ndarray:
    """Mean binary log loss (natural log) of each column.

    Parameters
    ----------
    y_true : array_like, (N, K) of 0/1
    p : array_like, (N, K) probabilities in [0, 1]
        Clipped to ``[eps, 1 - eps]`` before the log.
    eps : float

    Returns
    -------
    ndarray, (K,) float64

    Examples
    --------
    >>> per_label_log_loss([[1, 0], [0, 0]], [[0.5, 0.5], [0.5, 0.5]]).round(6).tolist()
    [0.693147, 0.693147]
    >>> per_label_log_loss([[1], [0]], [[0.8], [0.4]]).round(6).tolist()  # (-ln .8 - ln .6) / 2
    [0.366985]
    """
    y, q = _check(y_true, p)
    q = np.clip(q, eps, 1.0 - eps)
    return -(y * np.log(q) + (1.0 - y) * np.log1p(-q)).mean(axis=0)


def weighted_log_loss(y_true: np.ndarray, p: np.ndarray, *, weights: Sequence[float] = RSNA_WEIGHTS,
                      eps: float = 1e-15) -> float:
    """The RSNA 2019 score: the weighted mean of the per-label log losses.

    Parameters
    ----------
    y_true : array_like, (N, 6) of 0/1
        Columns ``epidural, intraparenchymal, intraventricular, subarachnoid, subdural, any``.
    p : array_like, (N, 6) probabilities in [0, 1]
    weights : sequence of float, length K
        Default: 1 per subtype, 2 for ``any``.
    eps : float
        Clip of the probabilities.

    Returns
    -------
    float
        ``sum(w_k * LL_k) / sum(w_k)``; lower is better, 0 for a perfect prediction.

    Raises
    ------
    ValueError
        Shapes differ, no rows, labels not 0/1, probabilities outside [0, 1], or a weight count that
        does not match the columns.

    Examples
    --------
    >>> y = np.zeros((2, 6)); y[0, [0, 5]] = 1
    >>> round(weighted_log_loss(y, np.full((2, 6), 0.5)), 6)  # ln 2
    0.693147
    >>> weighted_log_loss(y, y) < 1e-14
    True
    """
    ll = per_label_log_loss(y_true, p, eps=eps)
    w = np.asarray(weights, np.float64)
    if w.shape != ll.shape:
        raise ValueError(f"{w.size} weights for {ll.size} labels")
    return float((w * ll).sum() / w.sum())
