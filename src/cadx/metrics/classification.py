"""Classification metrics: ROC AUC with a bootstrap interval, sensitivity and specificity, and the
multi-class metrics of ISIC 2019 (balanced accuracy, confusion matrix, a per-class report).

Pure numpy, so training loops and evaluation use the same code. Class labels are integers
``0 .. n_classes - 1``; class probabilities are arrays of shape (n_samples, n_classes).
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


def roc_curve(labels: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve points, one per distinct score (highest threshold first), starting at (0, 0).

    Parameters
    ----------
    labels, scores : sequence
        As for :func:`roc_auc`; both classes must occur.

    Returns
    -------
    fpr, tpr : ndarray of float64, shape (n_distinct_scores + 1,)
        False- and true-positive rates of ``score >= threshold``.
    thresholds : ndarray of float64, same shape
        ``inf`` first, then the distinct scores in decreasing order.

    Examples
    --------
    >>> fpr, tpr, thr = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> fpr.tolist(), tpr.tolist(), thr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0], [inf, 0.8, 0.4, 0.35, 0.1])
    """
    y, s = _binary(labels, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a ROC curve needs both positive and negative labels")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    return (np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos], np.r_[np.inf, s[last]])


def _labels(y: Sequence[int], n_classes: int, what: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{what} must be a 1-D sequence of integer class indices")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"{what} must lie in 0..{n_classes - 1}")
    return arr


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Parameters
    ----------
    y_true, y_pred : sequence of int, length n_samples
        Class indices in ``0 .. n_classes - 1``.
    n_classes : int

    Returns
    -------
    ndarray of int64, shape (n_classes, n_classes)
        Row = true class, column = predicted class (scikit-learn's convention).

    Examples
    --------
    >>> confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], 3).tolist()
    [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    """
    t = _labels(y_true, n_classes, "y_true")
    p = _labels(y_pred, n_classes, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"{t.size} true labels but {p.size} predictions")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def balanced_accuracy_from_confusion(cm: np.ndarray) -> float:
    """Mean per-class recall of a confusion matrix (rows = true class), over classes that occur.

    Examples
    --------
    >>> balanced_accuracy_from_confusion(np.array([[8, 2], [1, 1]]))
    0.65
    """
    cm = np.asarray(cm)
    support = cm.sum(axis=1)
    if not (support > 0).any():
        raise ValueError("balanced accuracy needs at least one sample")
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def balanced_accuracy(y_true: Sequence[int], y_pred: Sequence[int], *, n_classes: int | None = None) -> float:
    """Balanced multi-class accuracy (the ISIC 2019 metric): the mean of the per-class recalls.

    Classes that do not occur in ``y_true`` are left out of the mean (as scikit-learn's
    ``balanced_accuracy_score`` does); a prediction of such a class still counts as an error.

    Parameters
    ----------
    y_true, y_pred : sequence of int
        Class indices.
    n_classes : int, optional
        Number of classes (default: one more than the largest index seen).

    Returns
    -------
    float

    Examples
    --------
    Recalls 1/2, 1/1 and 2/3:

    >>> round(balanced_accuracy([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0]), 6)
    0.722222
    """
    if n_classes is None:
        both = np.r_[np.asarray(y_true, np.int64).ravel(), np.asarray(y_pred, np.int64).ravel()]
        n_classes = int(both.max()) + 1 if both.size else 1
    return balanced_accuracy_from_confusion(confusion_matrix(y_true, y_pred, n_classes))


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


@dataclass(frozen=True)
class ClassMetrics:
    """One class against the rest. Every rate is NaN where its denominator is zero.

    Attributes
    ----------
    name : str
    support : int
        Samples of this class.
    predicted : int
        Samples predicted as this class (arg-max of the probabilities).
    sensitivity : float
        Recall, TP / (TP + FN): NaN when the class does not occur.
    specificity : float
        TN / (TN + FP): NaN when every sample is of this class.
    precision : float
        TP / (TP + FP): NaN when the class is never predicted.
    f1 : float
        2 TP / (2 TP + FP + FN): NaN when the class neither occurs nor is predicted.
    auc : float
        One-vs-rest ROC AUC of this class's probability: NaN when the class is absent (or is
        the only class present).
    """

    name: str
    support: int
    predicted: int
    sensitivity: float
    specificity: float
    precision: float
    f1: float
    auc: float


@dataclass(frozen=True)
class ClassificationReport:
    """What :func:`per_class_report` returns.

    Attributes
    ----------
    classes : tuple of ClassMetrics
        In class-index order.
    confusion : ndarray of int64, shape (n_classes, n_classes)
        Rows = true class, columns = predicted class.
    accuracy : float
        Fraction of samples whose arg-max class is the true class.
    balanced_accuracy : float
        Mean sensitivity over the classes that occur.
    mean_auc : float
        Mean of the defined one-vs-rest AUCs (NaN if none is defined).
    """

    classes: tuple[ClassMetrics, ...]
    confusion: np.ndarray
    accuracy: float
    balanced_accuracy: float
    mean_auc: float

    @property
    def n_samples(self) -> int:
        """Number of samples evaluated."""
        return int(self.confusion.sum())


def per_class_report(y_true: Sequence[int], proba: np.ndarray, class_names: Sequence[str]) -> ClassificationReport:
    """Per-class sensitivity, specificity, precision, F1 and one-vs-rest AUC, plus the overall numbers.

    The predicted class is the arg-max of ``proba`` (the first class on a tie).

    Parameters
    ----------
    y_true : sequence of int, length n_samples
        True class indices into ``class_names``.
    proba : array_like, shape (n_samples, n_classes)
        Class scores (probabilities, or anything whose order is meaningful per class).
    class_names : sequence of str, length n_classes

    Returns
    -------
    ClassificationReport
        Rates with a zero denominator are NaN (see :class:`ClassMetrics`), never 0.

    Examples
    --------
    >>> r = per_class_report([0, 0, 1, 2], [[.8, .1, .1], [.3, .6, .1], [.2, .7, .1], [.1, .1, .8]],
    ...                      ["MEL", "NV", "BCC"])
    >>> r.accuracy, r.balanced_accuracy, r.confusion.tolist()
    (0.75, 0.8333333333333334, [[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    >>> m = r.classes[1]
    >>> m.name, m.sensitivity, m.specificity, m.precision, round(m.f1, 4), m.auc
    ('NV', 1.0, 0.6666666666666666, 0.5, 0.6667, 1.0)
    """
    names = tuple(str(n) for n in class_names)
    p = np.asarray(proba, np.float64)
    if p.ndim != 2 or p.shape[1] != len(names):
        raise ValueError(f"proba must have shape (n_samples, {len(names)}), got {p.shape}")
    t = _labels(y_true, len(names), "y_true")
    if t.size != p.shape[0] or t.size == 0:
        raise ValueError(f"{t.size} labels but {p.shape[0]} rows of probabilities")
    pred = p.argmax(axis=1)
    cm = confusion_matrix(t, pred, len(names))
    n = t.size
    rows = []
    for k, name in enumerate(names):
        tp = cm[k, k]
        fn = cm[k].sum() - tp
        fp = cm[:, k].sum() - tp
        tn = n - tp - fn - fp
        is_k = (t == k).astype(int)
        auc = roc_auc(is_k, p[:, k]) if 0 < is_k.sum() < n else float("nan")
        rows.append(ClassMetrics(name, int(tp + fn), int(tp + fp), _ratio(tp, tp + fn), _ratio(tn, tn + fp),
                                 _ratio(tp, tp + fp), _ratio(2 * tp, 2 * tp + fp + fn), auc))
    aucs = [r.auc for r in rows if r.auc == r.auc]
    return ClassificationReport(tuple(rows), cm, float(np.trace(cm) / n), balanced_accuracy_from_confusion(cm),
                                float(np.mean(aucs)) if aucs else float("nan"))
