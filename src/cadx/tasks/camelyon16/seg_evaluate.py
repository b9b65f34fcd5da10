"""``cadx evaluate seg``: pixel and lesion metrics of predicted probability masks against CAMELYON16 truth.

Predictions folder (what ``cadx predict seg`` writes): ``<slide>_mask.tif`` probability pyramids
recording the slide's size and their downsample. Truth folder (CAMELYON16 ``testing`` layout):
``lesion_annotations/<slide>.xml`` or ``<slide>_Mask.tif`` (also under ``masks/``), and optionally
``reference.csv`` (then every reference slide must have a prediction; slides without truth are
normal).

Everything is compared at the evaluation level (default 5, downsample 32, the official FROC's):
the probability of an evaluation pixel is the mean of the mask pixels it covers. Pixel AUC is
exact on the masks' 256 probability levels (histograms, so pooling many slides costs no memory).
Lesions for the FROC are the 8-connected components of the thresholded mask, each a detection
at its most probable pixel with that probability.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import CadxError, InputFileError
from cadx.inference.segment import read_mask_attrs
from cadx.io.annotations import Detection
from cadx.io.atomic import atomic_path
from cadx.io.tables import read_reference
from cadx.metrics.froc import (
    EVAL_LEVEL,
    FROC_FP_RATES,
    evaluation_mask,
    froc_curve,
    froc_score,
    itc_labels,
    score_detections,
)
from cadx.metrics.segmentation import ConfusionCounts, confusion_counts
from cadx.tasks.camelyon16.evaluate import truth_mask
from cadx.tasks.camelyon16.seg_predict import MASK_SUFFIX

log = logging.getLogger(__name__)


def histogram_auc(pos_hist: np.ndarray, neg_hist: np.ndarray) -> float | None:
    """ROC AUC from score histograms over the same ordered bins (ties count one half).

    Returns None when either class is empty.

    Examples
    --------
    >>> histogram_auc(np.array([0, 1, 3]), np.array([2, 1, 0]))   # pos scores 1,2,2,2; neg 0,0,1
    0.9583333333333334
    """
    pos, neg = np.asarray(pos_hist, np.float64), np.asarray(neg_hist, np.float64)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return None
    below = np.cumsum(neg) - neg
    return float((pos * (below + 0.5 * neg)).sum() / (n_pos * n_neg))


def mask_at_level(mask_path: str | Path, *, level: int = EVAL_LEVEL) -> tuple[np.ndarray, dict[str, Any]]:
    """A probability TIFF averaged onto the slide's ``2 ** level`` grid.

    Returns
    -------
    probs : ndarray of float32, shape (ceil(height / 2**level), ceil(width / 2**level))
        Mean probability of the mask pixels each evaluation pixel covers.
    attrs : dict
        The TIFF's record (:func:`~cadx.inference.segment.read_mask_attrs`).
    """
    from PIL import Image

    from cadx.io.slide import open_slide

    attrs = read_mask_attrs(mask_path)
    w0, h0 = (int(v) for v in attrs["slide_size_wh"])
    ds = 2**level
    shape = (math.ceil(h0 / ds), math.ceil(w0 / ds))
    factor = ds / float(attrs["downsample"])  # mask pixels per evaluation pixel
    with open_slide(mask_path, mpp=float(attrs["mpp"])) as m:
        mw, mh = m.dimensions
        f = int(round(factor))
        if f >= 1 and abs(factor - f) < 1e-6:
            out = np.zeros(shape, np.float32)
            band = max(1, 1024 // f)  # evaluation rows per read
            for r in range(0, shape[0], band):
                rows = min(band, shape[0] - r)
                need_h, need_w = rows * f, shape[1] * f
                px = np.zeros((need_h, need_w), np.float32)
                rh, rw = min(need_h, mh - r * f), min(need_w, mw)
                if rh > 0:
                    px[:rh, :rw] = m.read_region((0, r * f), 0, (rw, rh))[:, :, 0]
                out[r : r + rows] = px.reshape(rows, f, shape[1], f).mean(axis=(1, 3)) / 255.0
            return out, attrs
        level_m = m.best_level_for_downsample(max(1.0, factor))
        lds = m.level_downsamples[level_m]
        cw, ch = (min(math.ceil(v / float(attrs["downsample"]) / lds), d)
                  for v, d in zip((w0, h0), m.level_dimensions[level_m], strict=True))
        img = m.read_region((0, 0), level_m, (cw, ch))[:, :, 0]
    probs = np.asarray(Image.fromarray(img).resize((shape[1], shape[0]), Image.Resampling.BOX), np.float32) / 255.0
    return probs, attrs


def mask_detections(probs: np.ndarray, *, threshold: float = 0.5, level: int = EVAL_LEVEL) -> list[Detection]:
    """One detection per 8-connected component of ``probs > threshold``: its most probable pixel.

    Coordinates are level-0 pixel centres (``(col + 0.5) * 2 ** level``).

    Examples
    --------
    >>> p = np.zeros((4, 6), np.float32); p[0, :2] = (0.6, 0.9); p[3, 5] = 0.7
    >>> [(d.prob, d.x, d.y) for d in mask_detections(p, level=1)]
    [(0.9, 3.0, 1.0), (0.7, 11.0, 7.0)]
    """
    from scipy import ndimage as ndi

    labels, n = ndi.label(probs > threshold, structure=np.ones((3, 3), bool))
    if n == 0:
        return []
    idx = np.arange(1, n + 1)
    peaks = ndi.maximum(probs, labels, idx)
    where = ndi.maximum_position(probs, labels, idx)
    ds = 2**level
    return [Detection(prob=round(float(p), 6), x=float((c + 0.5) * ds), y=float((r + 0.5) * ds))
            for p, (r, c) in zip(np.atleast_1d(peaks), where, strict=True)]


def evaluate_seg(pred_dir: str | Path, truth_dir: str | Path, *, out_dir: str | Path | None = None,
                 level: int = EVAL_LEVEL, threshold: float = 0.5,
                 exclude: tuple[str, ...] = ("test_049", "test_114")) -> dict[str, Any]:
    """Dice, IoU, pixel AUC, sensitivity/specificity per slide and pooled; lesion FROC; JSON and CSV.

    Parameters
    ----------
    pred_dir, truth_dir : path
        See the module docstring.
    out_dir : path, optional
        Where ``seg_metrics.json`` and ``seg_per_slide.csv`` go (default ``pred_dir``).
    level : int
        Evaluation level: pixels of ``2 ** level`` level-0 pixels.
    threshold : float
        Probability above which a pixel is tumour.
    exclude : tuple of str
        Reference slides left out (as usual for CAMELYON16: Test_049, Test_114).

    Returns
    -------
    dict
        Pooled metrics (``dice``, ``iou``, ``pixel_auc``, ``sensitivity``, ``specificity``, counts,
        ``froc``...) and ``per_slide`` rows. Metrics that are undefined (no tumour pixel in truth)
        are None.

    Raises
    ------
    CadxError
        No prediction to evaluate, a reference slide without one, or a tumour slide without truth.
    """
    pred, truth = Path(pred_dir), Path(truth_dir)
    out = Path(out_dir) if out_dir else pred
    masks = {p.name[: -len(MASK_SUFFIX)]: p for p in sorted(pred.glob(f"*{MASK_SUFFIX}"))}
    lower = {n.lower(): n for n in masks}
    reference = read_reference(truth / "reference.csv") if (truth / "reference.csv").is_file() else None
    if reference is not None:
        names = sorted(n for n in reference if n not in exclude)
        missing = [n for n in names if n.lower() not in lower]
        if missing:
            raise CadxError(f"{pred}: no {MASK_SUFFIX} for {len(missing)} reference slides: {', '.join(missing[:5])}")
        names = [lower[n.lower()] for n in names]
    else:
        names = [n for n in masks if n.lower() not in exclude]
    if not names:
        raise CadxError(f"{pred}: no *{MASK_SUFFIX} prediction to evaluate")

    pooled = ConfusionCounts()
    pos_hist, neg_hist = np.zeros(256, np.int64), np.zeros(256, np.int64)
    rows, hits = [], []
    for name in names:
        probs, attrs = mask_at_level(masks[name], level=level)
        size_wh = tuple(int(v) for v in attrs["slide_size_wh"])
        t = truth_mask(truth, name, size_wh, level=level)
        is_tumor = bool(reference[name.lower()]) if reference is not None else t is not None and bool(t.any())
        if t is None:
            if is_tumor:
                raise InputFileError(truth / "lesion_annotations" / f"{name}.xml",
                                     "no annotation or mask for a tumour slide")
            t = np.zeros(probs.shape, bool)
        counts = confusion_counts(probs > threshold, t)
        q = np.rint(probs * 255).astype(np.int64)
        ph, nh = np.bincount(q[t], minlength=256), np.bincount(q[~t], minlength=256)
        pooled, pos_hist, neg_hist = pooled + counts, pos_hist + ph, neg_hist + nh
        em = evaluation_mask(t, level=level) if is_tumor else None
        itc = itc_labels(em, level=level) if em is not None else set()
        dets = mask_detections(probs, threshold=threshold, level=level)
        h = score_detections(name, dets, em, itc, level=level)
        hits.append(h)
        rows.append({"slide": name, "label": "Tumor" if is_tumor else "Normal",
                     **_metrics(counts, histogram_auc(ph, nh)), "lesions": h.n_lesions,
                     "lesions_detected": int((h.tp_probs > threshold).sum()),
                     "false_positives": len(h.fp_probs), "detections": len(dets)})

    metrics: dict[str, Any] = {"slides": len(names), "tumor_slides": sum(r["label"] == "Tumor" for r in rows),
                               "level": level, "threshold": threshold,
                               **_metrics(pooled, histogram_auc(pos_hist, neg_hist))}
    n_lesions = sum(h.n_lesions for h in hits)
    metrics["lesions"] = n_lesions
    if n_lesions:
        fps, sens = froc_curve(hits)
        froc, at = froc_score(fps, sens)
        metrics.update(froc=froc, froc_sensitivities={str(r): float(v) for r, v in zip(FROC_FP_RATES, at,
                                                                                         strict=True)})
    else:
        metrics.update(froc=None, froc_sensitivities=None)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "seg_metrics.json") as tmp:
        tmp.write_text(json.dumps({**metrics, "per_slide": rows}, indent=2))
    with atomic_path(out / "seg_per_slide.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    metrics["per_slide"] = rows
    return metrics


def _metrics(c: ConfusionCounts, auc: float | None) -> dict[str, Any]:
    def num(v: float) -> float | None:
        return None if math.isnan(v) else float(v)

    no_tumour = c.tp + c.fn == 0
    return {"dice": None if no_tumour and c.fp == 0 else c.dice, "iou": None if no_tumour and c.fp == 0 else c.iou,
            "pixel_auc": auc, "sensitivity": num(c.sensitivity), "specificity": num(c.specificity),
            "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn}
