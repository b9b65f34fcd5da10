"""Pixel-level segmentation metrics: confusion counts, Dice, IoU, sensitivity and specificity.

Pure numpy, so validation during training and the whole-slide evaluation use the same code. Masks
are arrays of any shape and dtype, nonzero meaning tumour (threshold probabilities first). Counts
add up (:meth:`ConfusionCounts.__add__`), so a metric pooled over tiles or slides is the metric of
the summed counts, never a mean of per-item ratios.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConfusionCounts:
    """Pixel counts of a predicted mask against the truth.

    Attributes
    ----------
    tp, fp, fn, tn : int
        True positives, false positives, false negatives, true negatives (pixels).

    Examples
    --------
    >>> c = ConfusionCounts(tp=6, fp=2, fn=2, tn=90)
    >>> c.dice, c.iou, c.sensitivity, round(c.specificity, 3)
    (0.75, 0.6, 0.75, 0.978)
    >>> (c + c).tp, (c + c).dice
    (12, 0.75)
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: ConfusionCounts) -> ConfusionCounts:
        return ConfusionCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def total(self) -> int:
        """All pixels counted."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def dice(self) -> float:
        """``2 TP / (2 TP + FP + FN)``; 1.0 when neither mask has a positive pixel (perfect agreement)."""
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 1.0

    @property
    def iou(self) -> float:
        """Jaccard index ``TP / (TP + FP + FN)``; 1.0 when neither mask has a positive pixel."""
        denom = self.tp + self.fp + self.fn
        return self.tp / denom if denom else 1.0

    @property
    def sensitivity(self) -> float:
        """``TP / (TP + FN)``; NaN when the truth has no positive pixel."""
        denom = self.tp + self.fn
        return self.tp / denom if denom else float("nan")

    @property
    def specificity(self) -> float:
        """``TN / (TN + FP)``; NaN when the truth has no negative pixel."""
        denom = self.tn + self.fp
        return self.tn / denom if denom else float("nan")

    def to_dict(self) -> dict[str, float]:
        """Counts and metrics as plain numbers (for JSON and training histories)."""
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn, "dice": self.dice, "iou": self.iou,
                "sensitivity": self.sensitivity, "specificity": self.specificity}


def confusion_counts(pred: np.ndarray, truth: np.ndarray) -> ConfusionCounts:
    """Count TP, FP, FN and TN pixels of ``pred`` against ``truth``.

    Parameters
    ----------
    pred, truth : ndarray
        Masks of the same shape, any dtype; nonzero is positive (tumour).

    Returns
    -------
    ConfusionCounts

    Raises
    ------
    ValueError
        The shapes differ.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[1, 1, 0], [0, 0, 0]])
    >>> pred = np.array([[1, 0, 1], [0, 0, 0]])
    >>> confusion_counts(pred, truth)
    ConfusionCounts(tp=1, fp=1, fn=1, tn=3)
    """
    p, t = np.asarray(pred), np.asarray(truth)
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and truth {t.shape} differ in shape")
    p, t = p.astype(bool, copy=False), t.astype(bool, copy=False)
    tp = int(np.count_nonzero(p & t))
    n_pred, n_true = int(np.count_nonzero(p)), int(np.count_nonzero(t))
    fp, fn = n_pred - tp, n_true - tp
    return ConfusionCounts(tp=tp, fp=fp, fn=fn, tn=int(p.size) - tp - fp - fn)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient ``2 |P & T| / (|P| + |T|)`` of two masks (1.0 when both are empty).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((4, 4), bool); a[:2] = True
    >>> b = np.zeros((4, 4), bool); b[:, :2] = True
    >>> dice(a, b), dice(a, a), dice(np.zeros(3), np.zeros(3))
    (0.5, 1.0, 1.0)
    """
    return confusion_counts(pred, truth).dice


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union (Jaccard) ``|P & T| / |P | T|`` of two masks (1.0 when both are empty).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((4, 4), bool); a[:2] = True
    >>> b = np.zeros((4, 4), bool); b[:, :2] = True
    >>> round(iou(a, b), 4)
    0.3333
    """
    return confusion_counts(pred, truth).iou
