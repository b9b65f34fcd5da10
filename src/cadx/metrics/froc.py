"""The CAMELYON16 lesion FROC, rule for rule as the official ``Evaluation_FROC.py`` defines it.

- ground truth at level 5 (downsample 32); annotations closer than 75 um are merged: Euclidean
  distance transform of the non-tumour area, ``distance < 75 / (0.243 * 32 * 2)`` px; holes filled;
  lesions labelled with 8-connectivity;
- a lesion whose major axis is under ``275 / (0.243 * 32)`` = 35.36 px is an isolated-tumour-cell
  (ITC) lesion: hits on it are neither TP nor FP;
- per lesion only the highest-probability hit counts; a detection outside every lesion, and every
  detection on a normal slide, is a FP;
- the curve uses every distinct probability but the lowest as a threshold; the score is the mean
  sensitivity at 0.25, 0.5, 1, 2, 4 and 8 average FPs per slide (linear interpolation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

#: Level and resolution the official script evaluates at.
EVAL_LEVEL = 5
EVAL_RESOLUTION_UM = 0.243
FROC_FP_RATES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


class PointDetection(Protocol):
    """Anything with ``prob`` and a level-0 ``(x, y)`` (e.g. :class:`cadx.io.annotations.Detection`)."""

    prob: float
    x: float
    y: float


def evaluation_mask(tumor_mask: np.ndarray, *, resolution_um: float = EVAL_RESOLUTION_UM,
                    level: int = EVAL_LEVEL) -> np.ndarray:
    """Labelled lesions from a boolean tumour mask at ``2 ** level`` downsample.

    Parameters
    ----------
    tumor_mask : ndarray of bool, shape (rows, cols)
        Tumour pixels at ``2 ** level`` downsample of level 0.
    resolution_um : float
        Level-0 um/px the official thresholds assume (0.243).
    level : int

    Returns
    -------
    ndarray of int, same shape
        0 background, 1..N lesions (after the 75 um merge and hole filling, 8-connected).
    """
    from scipy import ndimage as ndi
    from skimage import measure

    distance = ndi.distance_transform_edt(~np.asarray(tumor_mask, bool))
    threshold = 75 / (resolution_um * 2**level * 2)
    filled = ndi.binary_fill_holes(distance < threshold)
    return measure.label(filled, connectivity=2)


def itc_labels(eval_mask: np.ndarray, *, resolution_um: float = EVAL_RESOLUTION_UM,
               level: int = EVAL_LEVEL) -> set[int]:
    """Labels of lesions whose major axis is below 275 um (200 um plus the 75 um merge)."""
    from skimage import measure

    threshold = 275 / (resolution_um * 2**level)
    return {p.label for p in measure.regionprops(eval_mask) if p.axis_major_length < threshold}


@dataclass
class SlideHits:
    """One slide's FROC bookkeeping.

    Attributes
    ----------
    name : str
    fp_probs : list of float
        Probabilities of the false positives.
    tp_probs : ndarray of float32, shape (n_labels,)
        Best hit per labelled lesion (0 when missed, and always 0 for ITC lesions).
    n_lesions : int
        Lesions that count (not ITC).
    """

    name: str
    fp_probs: list[float] = field(default_factory=list)
    tp_probs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    n_lesions: int = 0


def score_detections(name: str, detections: Sequence[PointDetection], eval_mask: np.ndarray | None,
                     itc: set[int] | frozenset[int] = frozenset(), *, level: int = EVAL_LEVEL) -> SlideHits:
    """Split a slide's detections into TPs (best hit per lesion) and FPs, ignoring ITC hits.

    Parameters
    ----------
    name : str
    detections : sequence of objects with ``prob``, ``x``, ``y``
        Level-0 pixel coordinates.
    eval_mask : ndarray of int, optional
        From :func:`evaluation_mask`; None means a normal slide: every detection is a FP.
    itc : set of int
        From :func:`itc_labels`.
    level : int
        Level of ``eval_mask`` (downsample ``2 ** level``).

    Returns
    -------
    SlideHits
    """
    if eval_mask is None:
        return SlideHits(name, [d.prob for d in detections], np.zeros(0, np.float32), 0)
    max_label = int(eval_mask.max())
    tp = np.zeros(max_label, np.float32)
    fp: list[float] = []
    h, w = eval_mask.shape
    for d in detections:
        r, c = int(d.y / 2**level), int(d.x / 2**level)
        hit = int(eval_mask[r, c]) if 0 <= r < h and 0 <= c < w else 0
        if hit == 0:
            fp.append(d.prob)
        elif hit not in itc and d.prob > tp[hit - 1]:
            tp[hit - 1] = d.prob
    # ITC lesions keep their 0 entry in the TP list, as in the official script (it matters:
    # the lowest distinct probability is never used as a threshold).
    return SlideHits(name, fp, tp, max_label - len(itc))


def froc_curve(slides: Sequence[SlideHits]) -> tuple[np.ndarray, np.ndarray]:
    """Average FPs per slide and sensitivity at each threshold (official ``computeFROC``).

    As in the official script, the TP list holds one entry per lesion (0 when missed or ITC)
    and thresholds are all distinct probabilities but the lowest.

    Returns
    -------
    avg_fp, sensitivity : ndarray of float64
        Decreasing in the threshold; the last point is (0, 0).
    """
    fps = np.concatenate([np.asarray(s.fp_probs, np.float64) for s in slides]) if slides else np.zeros(0)
    tps = np.concatenate([np.asarray(s.tp_probs, np.float64) for s in slides]) if slides else np.zeros(0)
    n_lesions = sum(s.n_lesions for s in slides)
    thresholds = np.unique(np.concatenate([fps, tps]))[1:]
    total_fp = [(fps >= t).sum() for t in thresholds] + [0]
    total_tp = [(tps >= t).sum() for t in thresholds] + [0]
    avg_fp = np.asarray(total_fp, np.float64) / max(len(slides), 1)
    sens = np.asarray(total_tp, np.float64) / n_lesions if n_lesions else np.zeros(len(total_tp))
    return avg_fp, sens


def froc_score(avg_fp: np.ndarray, sensitivity: np.ndarray,
               fp_rates: Sequence[float] = FROC_FP_RATES) -> tuple[float, np.ndarray]:
    """Mean sensitivity at the given FP rates, interpolated as the official script does.

    Examples
    --------
    >>> score, at = froc_score(np.array([2.0, 1.0, 0.0]), np.array([1.0, 0.5, 0.0]))
    >>> round(score, 4), at.tolist()
    (0.6458, [0.125, 0.25, 0.5, 1.0, 1.0, 1.0])
    """
    at = np.interp(fp_rates, avg_fp[::-1], sensitivity[::-1])
    return float(at.mean()), at
