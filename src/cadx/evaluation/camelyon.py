"""The CAMELYON16 challenge's own metrics, as the official ``Evaluation_FROC.py`` defines them.

Lesion FROC:
- ground truth at level 5 (downsample 32); annotations closer than 75 um are merged: Euclidean
  distance transform of the non-tumour area, ``distance < 75 / (0.243 * 32 * 2)`` px; holes filled;
  lesions labelled with 8-connectivity;
- a lesion whose major axis is under ``275 / (0.243 * 32)`` = 35.36 px is an isolated-tumour-cell
  (ITC) lesion: hits on it are neither TP nor FP;
- per lesion only the highest-probability hit counts; a detection outside every lesion, and every
  detection on a normal slide, is a FP;
- the curve uses every distinct probability but the lowest as a threshold; the score is the mean
  sensitivity at 0.25, 0.5, 1, 2, 4 and 8 average FPs per slide (linear interpolation).

Slide task: ROC AUC of one probability per slide, here with a bootstrap 95% interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cadx.io.annotations import Detection

#: Level and resolution the official script evaluates at.
EVAL_LEVEL = 5
EVAL_RESOLUTION_UM = 0.243
FROC_FP_RATES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def evaluation_mask(tumor_mask: np.ndarray, *, resolution_um: float = EVAL_RESOLUTION_UM,
                    level: int = EVAL_LEVEL) -> np.ndarray:
    """Labelled lesions from a boolean tumour mask at ``2 ** level`` downsample.

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


def itc_labels(eval_mask: np.ndarray, *, resolution_um: float = EVAL_RESOLUTION_UM, level: int = EVAL_LEVEL) -> set[int]:
    """Labels of lesions whose major axis is below 275 um (200 um plus the 75 um merge)."""
    from skimage import measure

    threshold = 275 / (resolution_um * 2**level)
    return {p.label for p in measure.regionprops(eval_mask) if p.axis_major_length < threshold}


@dataclass
class SlideHits:
    """One slide's FROC bookkeeping."""

    name: str
    fp_probs: list[float] = field(default_factory=list)
    tp_probs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    n_lesions: int = 0  # non-ITC lesions


def score_detections(name: str, detections: Sequence[Detection], eval_mask: np.ndarray | None,
                     itc: set[int] = frozenset(), *, level: int = EVAL_LEVEL) -> SlideHits:
    """Split a slide's detections into TPs (best hit per lesion) and FPs, ignoring ITC hits.

    ``eval_mask`` None means a normal slide: every detection is a FP.
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
    """Mean sensitivity at the given FP rates, interpolated as the official script does."""
    at = np.interp(fp_rates, avg_fp[::-1], sensitivity[::-1])
    return float(at.mean()), at


@dataclass
class AucResult:
    auc: float
    ci_low: float
    ci_high: float
    n_pos: int
    n_neg: int


def auc_with_ci(labels: Sequence[int], scores: Sequence[float], *, n_boot: int = 2000, seed: int = 0) -> AucResult:
    """ROC AUC with a percentile bootstrap 95% confidence interval (resampling slides)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, int)
    s = np.asarray(scores, float)
    if len(set(y.tolist())) < 2:
        raise ValueError("AUC needs both tumour and normal slides")
    auc = float(roc_auc_score(y, s))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if len(set(y[idx].tolist())) == 2:
            boots.append(roc_auc_score(y[idx], s[idx]))
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (np.nan, np.nan)
    return AucResult(auc, float(lo), float(hi), int((y == 1).sum()), int((y == 0).sum()))


def sens_spec(labels: Sequence[int], scores: Sequence[float], threshold: float) -> tuple[float, float]:
    """Sensitivity and specificity of ``score >= threshold``."""
    y = np.asarray(labels, int)
    pred = np.asarray(scores, float) >= threshold
    sens = float(pred[y == 1].mean()) if (y == 1).any() else float("nan")
    spec = float((~pred[y == 0]).mean()) if (y == 0).any() else float("nan")
    return sens, spec
