"""``cadx evaluate mil``: slide AUC, tile AUC of the attention and instance maps, FROC, against CAMELYON16 truth.

Predictions folder: what :func:`~cadx.tasks.camelyon16.mil_predict.predict_mil` writes
(``slide_scores.csv`` and ``<slide>.h5`` score grids). Truth: a CAMELYON16 root or testing folder
(:func:`~cadx.tasks.camelyon16.layout.slide_truth`); the annotations were never seen in training.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import CadxError, InputFileError
from cadx.inference.detections import nms_detections
from cadx.io.atomic import atomic_path
from cadx.io.h5 import read_score_grid_h5
from cadx.io.tables import read_slide_scores
from cadx.metrics.classification import auc_with_ci, roc_auc, roc_curve, sens_spec
from cadx.metrics.froc import FROC_FP_RATES, evaluation_mask, froc_curve, froc_score, itc_labels, score_detections
from cadx.tasks.camelyon16.evaluate import tile_labels_from_truth, truth_mask
from cadx.tasks.camelyon16.layout import slide_truth
from cadx.tasks.camelyon16.mil_predict import ATTENTION_CHANNEL, DETECTION_CHANNEL, INSTANCE_CHANNEL, NMS_RADIUS_UM
from cadx.viz.plots import plot_froc, plot_roc

log = logging.getLogger(__name__)


# --- evaluation ----------------------------------------------------------------------------------


def evaluate_mil(pred_dir: str | Path, truth_dir: str | Path, *, out_dir: str | Path | None = None,
                 threshold: float = 0.5, exclude: Sequence[str] = ("test_049", "test_114"),
                 slides: Sequence[str] | None = None) -> dict[str, Any]:
    """Slide AUC (bootstrap CI), tile AUC of the attention and instance channels, lesion FROC; plots, JSON.

    The slides evaluated are those of ``slide_scores.csv`` (column ``score``, the slide
    probability), or only ``slides`` (e.g. one cross-validation fold), less ``exclude``. Tiles are
    labelled from the ASAP annotations by the training rule
    (:func:`~cadx.tasks.camelyon16.evaluate.tile_labels_from_truth`: tumour when the centre half is
    at least half tumour, normal when it holds none, else left out):

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
    exclude : sequence of str
        Slides left out (CAMELYON16's Test_049 and Test_114, as usual).
    slides : sequence of str, optional
        Evaluate only these slides (each must have a score).

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
    if slides is not None:
        missing = sorted({s.lower() for s in slides} - set(scores))
        if missing:
            raise CadxError(f"{scores_path}: no score for {', '.join(missing[:5])}")
    chosen = set(scores) if slides is None else {s.lower() for s in slides}
    names = sorted(n for n in chosen if n not in {e.lower() for e in exclude})
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


