"""``cadx evaluate camelyon``: score a predictions folder against CAMELYON16 ground truth.

Predictions folder (what ``cadx predict slides`` writes): ``<slide>.csv`` detections (``prob,X,Y``),
``slide_scores.csv`` (``slide,score,...``), and ``<slide>.h5`` heatmaps (for tile-level metrics).
Truth folder (CAMELYON16 ``testing`` layout): ``reference.csv`` and either
``lesion_annotations/<slide>.xml`` or ``<slide>_Mask.tif`` masks (also under ``masks/``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import CadxError, InputFileError
from cadx.evaluation.camelyon import (
    EVAL_LEVEL,
    FROC_FP_RATES,
    auc_with_ci,
    evaluation_mask,
    froc_curve,
    froc_score,
    itc_labels,
    score_detections,
    sens_spec,
)
from cadx.evaluation.plots import plot_froc, plot_roc
from cadx.inference.detections import read_detections_csv
from cadx.io.annotations import polygons_in_paint_order, read_asap_xml
from cadx.io.atomic import atomic_path
from cadx.io.heatmap_h5 import Heatmap, read_heatmap_h5
from cadx.preprocessing.masks import rasterize_polygons
from cadx.wsi.tiling import tumor_fractions


def read_reference(path: str | Path) -> dict[str, int]:
    """``reference.csv`` -> {slide: 1 tumour / 0 normal}; names are matched case-insensitively."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no reference.csv (CAMELYON16 testing layout)")
    out = {}
    with open(path, newline="") as fh:
        for row in csv.reader(fh):
            if not row or row[0].lower() in ("image", "name", "slide"):
                continue
            if len(row) < 2 or row[1].strip().lower() not in ("tumor", "normal"):
                raise InputFileError(path, f"row {row!r}: expected name,Tumor|Normal,...")
            out[row[0].strip().lower()] = int(row[1].strip().lower() == "tumor")
    return out


def truth_mask(truth_dir: Path, slide: str, size_wh: tuple[int, int], *, level: int = EVAL_LEVEL) -> np.ndarray | None:
    """Boolean tumour mask at ``2 ** level`` downsample from a ``_Mask.tif`` or the ASAP XML."""
    ds = 2**level
    shape = (math.ceil(size_wh[1] / ds), math.ceil(size_wh[0] / ds))
    for cand in (truth_dir / f"{slide}_Mask.tif", truth_dir / "masks" / f"{slide}_Mask.tif"):
        if cand.exists():
            from cadx.io.slide import open_slide

            with open_slide(cand) as m:
                lvl = m.best_level_for_downsample(ds)
                factor = ds / m.level_downsamples[lvl]
                img = m.read_region((0, 0), lvl, m.level_dimensions[lvl])[:, :, 0] > 127
                if factor > 1:
                    from PIL import Image

                    img = np.asarray(Image.fromarray(img.astype(np.uint8) * 255).resize(
                        (shape[1], shape[0]), Image.Resampling.BOX)) > 0
                return img[: shape[0], : shape[1]]
    xml = truth_dir / "lesion_annotations" / f"{slide}.xml"
    if xml.exists():
        return rasterize_polygons(polygons_in_paint_order(read_asap_xml(xml)), shape, downsample=ds).astype(bool)
    return None


def tile_labels_from_truth(heatmap: Heatmap, truth_dir: Path, slide: str) -> tuple[np.ndarray, np.ndarray]:
    """Predicted probability and label (1 tumour, 0 normal, -1 ambiguous) of each predicted tile."""
    rows, cols = np.nonzero(~np.isnan(heatmap.probs))
    probs = heatmap.probs[rows, cols]
    coords = np.stack([cols * heatmap.stride_level0_px, rows * heatmap.stride_level0_px], 1)
    xml = truth_dir / "lesion_annotations" / f"{slide}.xml"
    if not xml.exists():
        return probs, np.zeros(len(probs), int)
    fr = tumor_fractions(read_asap_xml(xml), coords, heatmap.tile_size_level0_px, heatmap.slide_size_wh)
    labels = np.full(len(probs), -1)
    labels[fr["tumor_fraction"] <= 0] = 0
    labels[fr["tumor_fraction_center"] >= 0.5] = 1
    return probs, labels


def evaluate_camelyon(pred_dir: str | Path, truth_dir: str | Path, *, out_dir: str | Path | None = None,
                      threshold: float = 0.5, score_column: str = "score",
                      exclude: tuple[str, ...] = ("test_049", "test_114")) -> dict[str, Any]:
    """Slide AUC (bootstrap CI), sensitivity/specificity, lesion FROC, tile-level AUC; plots and JSON.

    Parameters
    ----------
    pred_dir, truth_dir : path
        See the module docstring.
    out_dir : path, optional
        Where ``metrics.json``, ``per_slide.csv``, ``roc.png`` and ``froc.png`` go (default
        ``pred_dir``).
    threshold : float
        Operating point for slide sensitivity/specificity and tile sensitivity.
    exclude : tuple of str
        Slides left out, as usual for CAMELYON16 (Test_049, Test_114).
    """
    from sklearn.metrics import roc_auc_score

    pred, truth = Path(pred_dir), Path(truth_dir)
    out = Path(out_dir) if out_dir else pred
    reference = read_reference(truth / "reference.csv")
    scores_path = pred / "slide_scores.csv"
    if not scores_path.is_file():
        raise InputFileError(scores_path, "no slide_scores.csv: run `cadx predict slides` first")
    with open(scores_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or score_column not in rows[0]:
        raise InputFileError(scores_path, f"no '{score_column}' column")
    scores = {r["slide"].lower(): float(r[score_column]) for r in rows}
    names = sorted(n for n in reference if n not in exclude and n in scores)
    missing = sorted(set(reference) - set(scores) - set(exclude))
    if missing:
        raise CadxError(f"{pred}: no prediction for {len(missing)} reference slides: {', '.join(missing[:5])}")

    hits, per_slide, tile_p, tile_y = [], [], [], []
    for name in names:
        csv_path = pred / f"{name}.csv"
        if not csv_path.exists():
            csv_path = next((p for p in pred.glob("*.csv") if p.stem.lower() == name), csv_path)
        dets = read_detections_csv(csv_path) if csv_path.exists() else []
        hm_path = next((p for p in pred.glob("*.h5") if p.stem.lower() == name), None)
        hm = read_heatmap_h5(hm_path) if hm_path else None
        mask = None
        if reference[name]:
            if hm is None:
                raise InputFileError(pred / f"{name}.h5", "heatmap needed for the slide size of a tumour slide")
            mask = truth_mask(truth, name, hm.slide_size_wh)
            if mask is None:
                raise InputFileError(truth / "lesion_annotations" / f"{name}.xml", "no annotation or mask for a tumour slide")
        em = evaluation_mask(mask) if mask is not None else None
        itc = itc_labels(em) if em is not None else set()
        h = score_detections(name, dets, em, itc)
        hits.append(h)
        if hm is not None:
            p, y = tile_labels_from_truth(hm, truth, name)
            tile_p.append(p[y >= 0])
            tile_y.append(y[y >= 0])
        per_slide.append({"slide": name, "label": "Tumor" if reference[name] else "Normal", "score": scores[name],
                          "lesions": h.n_lesions, "itc": len(itc), "lesions_detected": int((h.tp_probs >= threshold).sum()),
                          "false_positives_at_threshold": int((np.asarray(h.fp_probs) >= threshold).sum()),
                          "detections": len(dets)})

    y = [reference[n] for n in names]
    s = [scores[n] for n in names]
    auc = auc_with_ci(y, s)
    sens, spec = sens_spec(y, s, threshold)
    fps, sensitivity = froc_curve(hits)
    froc, at = froc_score(fps, sensitivity)
    out.mkdir(parents=True, exist_ok=True)
    plot_roc(out / "roc.png", y, s, title="Slide-level ROC")
    plot_froc(out / "froc.png", fps, sensitivity, at, FROC_FP_RATES, score=froc)
    metrics: dict[str, Any] = {
        "slides": len(names), "tumor_slides": int(sum(y)), "normal_slides": int(len(y) - sum(y)),
        "slide_auc": auc.auc, "slide_auc_ci95": [auc.ci_low, auc.ci_high],
        "slide_threshold": threshold, "slide_sensitivity": sens, "slide_specificity": spec,
        "froc": froc, "froc_sensitivities": dict(zip([str(r) for r in FROC_FP_RATES], map(float, at), strict=True)),
        "lesions": int(sum(h.n_lesions for h in hits)),
    }
    if tile_p:
        tp, ty = np.concatenate(tile_p), np.concatenate(tile_y)
        if len(set(ty.tolist())) == 2:
            metrics.update(tile_auc=float(roc_auc_score(ty, tp)), tile_sensitivity=float((tp[ty == 1] >= threshold).mean()),
                           tile_specificity=float((tp[ty == 0] < threshold).mean()), tiles=int(len(ty)))
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    with atomic_path(out / "per_slide.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(per_slide[0]))
        w.writeheader()
        w.writerows(per_slide)
    metrics["per_slide"] = per_slide
    return metrics
