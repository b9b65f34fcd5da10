"""Attention MIL on CAMELYON16: tumour regions from slide labels alone.

``cadx train mil`` (:func:`train_mil`), ``cadx predict mil`` (:func:`predict_mil`) and ``cadx evaluate
mil`` (:func:`evaluate_mil`) on features files from ``cadx features``. The model, the bag dataset and
the fitting loop are the generic ones (:mod:`cadx.models.mil`, :mod:`cadx.datasets.bags`,
:mod:`cadx.training.mil`); this module adds the CAMELYON16 layout, the outputs and the metrics.

Score-grid channels of a MIL prediction (``<slide>.h5``), one cell per features tile:

``attention``
    The bag's softmax attention, min-max scaled per slide on the log scale: ``(log a - min log a) /
    (max log a - min log a)``, so 1 is the slide's most attended tile and 0 its least (the same
    order as the raw attention, which spans orders of magnitude; the raw values are kept per tile
    under ``tiles/attention``). Comparable within a slide, not across slides.
``instance_probability``
    The instance classifier's tumour probability (sigmoid of its logit): comparable across slides.
``detection_score``
    ``attention * slide probability``: the attention map weighed by how likely the slide holds
    tumour, so that the peaks of a slide called normal rank low. Detections (non-maximum
    suppression) and the FROC come from this channel.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import CadxError, InputFileError
from cadx.inference.detections import nms_detections
from cadx.io.atomic import atomic_path
from cadx.io.h5 import ScoreGrid, read_score_grid_h5
from cadx.io.tables import read_slide_scores
from cadx.metrics.classification import auc_with_ci, roc_auc, roc_curve, sens_spec
from cadx.metrics.froc import FROC_FP_RATES, evaluation_mask, froc_curve, froc_score, itc_labels, score_detections
from cadx.tasks.camelyon16.evaluate import tile_labels_from_truth, truth_mask
from cadx.tasks.camelyon16.layout import slide_truth
from cadx.viz.plots import plot_froc, plot_roc

log = logging.getLogger(__name__)

#: Score-grid channels of a MIL prediction (see the module docstring).
ATTENTION_CHANNEL = "attention"
INSTANCE_CHANNEL = "instance_probability"
DETECTION_CHANNEL = "detection_score"
MIL_CHANNELS = (ATTENTION_CHANNEL, INSTANCE_CHANNEL, DETECTION_CHANNEL)
#: Non-maximum suppression radius of detections (the CAMELYON16 convention), in microns.
NMS_RADIUS_UM = 150.0


# --- evaluation ----------------------------------------------------------------------------------


def evaluate_mil(pred_dir: str | Path, truth_dir: str | Path, *, out_dir: str | Path | None = None,
                 threshold: float = 0.5, exclude: tuple[str, ...] = ("test_049", "test_114")) -> dict[str, Any]:
    """Slide AUC (bootstrap CI), tile AUC of the attention and instance channels, lesion FROC; plots, JSON.

    The slides evaluated are those of ``slide_scores.csv`` (column ``score``, the slide
    probability), less ``exclude``. Tiles are labelled from the ASAP annotations by the training
    rule (:func:`~cadx.tasks.camelyon16.evaluate.tile_labels_from_truth`: tumour when the centre
    half is at least half tumour, normal when it holds none, else left out):

    - ``attention_tile_auc``: the ``attention`` channel against the tile labels, pooled over the
      tiles of the *tumour* slides (attention ranks tiles within a bag; a normal slide's attention
      sums to one all the same, so its values say nothing across slides);
      ``attention_tile_auc_slide_mean`` is the mean of the per-slide AUCs.
    - ``instance_tile_auc``: the instance probability, pooled over every slide's tiles.
    - ``detection_tile_auc``: ``detection_score`` (attention x slide probability), over every slide.
    - ``froc``: the official CAMELYON16 FROC of the detections found by non-maximum suppression on
      ``detection_score`` (every peak, radius from the grid's ``nms_radius_um``, else 150 um).

    Parameters
    ----------
    pred_dir : path
        What :func:`predict_mil` writes: ``slide_scores.csv`` and ``<slide>.h5`` score grids.
    truth_dir : path
        See :func:`slide_truth`.
    out_dir : path, optional
        Where ``metrics.json``, ``per_slide.csv``, ``roc.png`` and ``froc.png`` go (default
        ``pred_dir``).
    threshold : float
        Operating point of the slide sensitivity and specificity.
    exclude : tuple of str
        Slides left out (CAMELYON16's Test_049 and Test_114, as usual).

    Returns
    -------
    dict
        The metrics written to ``metrics.json``, plus ``per_slide`` rows.

    Raises
    ------
    CadxError
        No ``slide_scores.csv``; a predicted slide the truth does not know, or without a score
        grid; a tumour slide without annotations; slides of one class only.
    """
    pred, truth = Path(pred_dir), Path(truth_dir)
    out = Path(out_dir) if out_dir else pred
    known = slide_truth(truth)
    scores_path = pred / "slide_scores.csv"
    if not scores_path.is_file():
        raise InputFileError(scores_path, "no slide_scores.csv: run `cadx predict mil` first")
    names_read, values = read_slide_scores(scores_path, columns=["score"])
    scores = {n.lower(): float(v) for n, v in zip(names_read, values[:, 0], strict=True)}
    names = sorted(n for n in scores if n not in exclude)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise CadxError(f"{truth}: no label for {len(unknown)} predicted slides: {', '.join(unknown[:5])}")
    y = [known[n][0] for n in names]
    if len(set(y)) < 2:
        raise CadxError(f"{pred}: the slide AUC needs tumour and normal slides (got {len(names)} of one class)")

    hits, per_slide = [], []
    pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {
        k: ([], []) for k in ("attention", "instance", "detection")}
    slide_aucs = []
    for name in names:
        label, ann_dir = known[name]
        grid_path = pred / f"{name}.h5"
        if not grid_path.is_file():
            grid_path = next((p for p in sorted(pred.glob("*.h5")) if p.stem.lower() == name), grid_path)
        grid = read_score_grid_h5(grid_path)
        att, tile_y = tile_labels_from_truth(grid, ann_dir, name, is_tumor=bool(label), channel=ATTENTION_CHANNEL)
        rows, cols = np.nonzero(~np.isnan(grid.channel(ATTENTION_CHANNEL)))  # the order of tile_labels_from_truth
        inst = grid.channel(INSTANCE_CHANNEL)[rows, cols]
        det = grid.channel(DETECTION_CHANNEL)[rows, cols]
        keep = tile_y >= 0
        row: dict[str, Any] = {"slide": name, "label": "Tumor" if label else "Normal", "score": scores[name],
                               "tiles": int(len(tile_y)), "tumor_tiles": int((tile_y == 1).sum()),
                               "attention_auc": float("nan"), "top_tile_tumor": ""}
        if label:
            pooled["attention"][0].append(att[keep])
            pooled["attention"][1].append(tile_y[keep])
            if len(set(tile_y[keep].tolist())) == 2:
                row["attention_auc"] = roc_auc(tile_y[keep], att[keep])
                slide_aucs.append(row["attention_auc"])
            if len(att):
                row["top_tile_tumor"] = {1: "yes", 0: "no", -1: "ignored"}[int(tile_y[int(np.argmax(att))])]
        for key, values_ in (("instance", inst), ("detection", det)):
            pooled[key][0].append(values_[keep])
            pooled[key][1].append(tile_y[keep])
        mask = truth_mask(ann_dir, name, grid.slide_size_wh) if label else None
        if label and mask is None:
            raise InputFileError(ann_dir / "lesion_annotations" / f"{name}.xml",
                                 "no annotation or mask for a tumour slide")
        em = evaluation_mask(mask) if mask is not None else None
        itc = itc_labels(em) if em is not None else set()
        radius = float(grid.attrs.get("nms_radius_um", NMS_RADIUS_UM))
        dets = nms_detections(grid, channel=DETECTION_CHANNEL, threshold=0.0, radius_um=radius)
        h = score_detections(name, dets, em, itc)
        hits.append(h)
        row.update(lesions=h.n_lesions, lesions_detected_at_threshold=int((h.tp_probs >= threshold).sum()))
        per_slide.append(row)

    s = [scores[n] for n in names]
    auc = auc_with_ci(y, s)
    sens, spec = sens_spec(y, s, threshold)
    fps, sensitivity = froc_curve(hits)
    froc, at = froc_score(fps, sensitivity)
    metrics: dict[str, Any] = {
        "slides": len(names), "tumor_slides": int(sum(y)), "normal_slides": int(len(y) - sum(y)),
        "slide_auc": auc.auc, "slide_auc_ci95": [auc.ci_low, auc.ci_high], "slide_threshold": threshold,
        "slide_sensitivity": sens, "slide_specificity": spec,
        "attention_tile_auc": _pooled_auc(*pooled["attention"]),
        "attention_tile_auc_slide_mean": float(np.mean(slide_aucs)) if slide_aucs else float("nan"),
        "instance_tile_auc": _pooled_auc(*pooled["instance"]),
        "detection_tile_auc": _pooled_auc(*pooled["detection"]),
        "tiles": int(sum(len(t) for t in pooled["instance"][1])),
        "froc": froc, "froc_sensitivities": dict(zip([str(r) for r in FROC_FP_RATES], map(float, at), strict=True)),
        "lesions": int(sum(h.n_lesions for h in hits)),
    }
    out.mkdir(parents=True, exist_ok=True)
    fpr, tpr, _ = roc_curve(y, s)
    plot_roc(out / "roc.png", fpr, tpr, auc=auc.auc, title="Slide-level ROC (attention MIL)")
    plot_froc(out / "froc.png", fps, sensitivity, at, FROC_FP_RATES, score=froc)
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    with atomic_path(out / "per_slide.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(per_slide[0]))
        w.writeheader()
        w.writerows(per_slide)
    metrics["per_slide"] = per_slide
    return metrics


def _pooled_auc(scores: list[np.ndarray], labels: list[np.ndarray]) -> float:
    """ROC AUC of the concatenated tiles; NaN when a class is missing."""
    if not labels:
        return float("nan")
    y = np.concatenate(labels)
    if len(set(y.tolist())) < 2:
        return float("nan")
    return roc_auc(y, np.concatenate(scores))


def mil_grid(coords_xy: np.ndarray, *, attention: np.ndarray, instance_probability: np.ndarray,
             slide_probability: float, tile_size_level0_px: int, slide_size_wh: tuple[int, int], mpp: float,
             attrs: dict[str, Any] | None = None) -> ScoreGrid:
    """The score grid of one bag: :data:`MIL_CHANNELS` over non-overlapping tiles (see the module docstring).

    Parameters
    ----------
    coords_xy : ndarray of int, shape (N, 2)
        Level-0 top-left corners of the bag's tiles, on a grid of step ``tile_size_level0_px``.
    attention : ndarray of float, shape (N,)
        Softmax attention (positive, summing to one).
    instance_probability : ndarray of float, shape (N,)
    slide_probability : float
    tile_size_level0_px : int
    slide_size_wh : (int, int)
        Level-0 slide size.
    mpp : float
        Level-0 um/px.
    attrs : dict, optional
        Provenance attributes of the grid.

    Returns
    -------
    ScoreGrid
        NaN where no tile was in the bag.

    Examples
    --------
    Three tiles of 100 px on a 300 x 200 slide; attention 0.5, 0.25, 0.25 scales to 1, 0, 0:

    >>> g = mil_grid(np.array([[0, 0], [100, 0], [200, 100]]), attention=np.array([0.5, 0.25, 0.25]),
    ...              instance_probability=np.array([0.9, 0.2, 0.1]), slide_probability=0.8,
    ...              tile_size_level0_px=100, slide_size_wh=(300, 200), mpp=0.5)
    >>> g.shape_hw, g.channel("attention").tolist()
    ((2, 3), [[1.0, 0.0, nan], [nan, nan, 0.0]])
    >>> [round(float(v), 2) for v in g.channel("detection_score")[0, :2]]
    [0.8, 0.0]
    """
    coords = np.asarray(coords_xy, np.int64).reshape(-1, 2)
    stride = int(tile_size_level0_px)
    rows_n = max(0, (int(slide_size_wh[1]) - stride) // stride + 1)
    cols_n = max(0, (int(slide_size_wh[0]) - stride) // stride + 1)
    att = scale_attention(np.asarray(attention, np.float64))
    values = np.full((len(MIL_CHANNELS), rows_n, cols_n), np.nan, np.float32)
    r, c = coords[:, 1] // stride, coords[:, 0] // stride
    values[0, r, c] = att
    values[1, r, c] = np.asarray(instance_probability, np.float64)
    values[2, r, c] = att * float(slide_probability)
    return ScoreGrid(values, MIL_CHANNELS, stride_level0_px=stride, tile_size_level0_px=stride,
                     slide_size_wh=(int(slide_size_wh[0]), int(slide_size_wh[1])), mpp=float(mpp),
                     attrs=dict(attrs or {}))


def scale_attention(attention: np.ndarray) -> np.ndarray:
    """Softmax attention -> [0, 1] by min-max scaling of its logarithm (all 1 when the values are equal).

    Examples
    --------
    >>> scale_attention(np.array([0.7, 0.2, 0.1])).round(3).tolist()
    [1.0, 0.356, 0.0]
    >>> scale_attention(np.array([0.5, 0.5])).tolist()
    [1.0, 1.0]
    """
    log_a = np.log(np.maximum(np.asarray(attention, np.float64), np.finfo(np.float64).tiny))
    span = float(log_a.max() - log_a.min()) if log_a.size else 0.0
    if span <= 0:
        return np.ones_like(log_a)
    return (log_a - log_a.min()) / span
