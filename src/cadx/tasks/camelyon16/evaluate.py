"""``cadx evaluate camelyon``: score a predictions folder against CAMELYON16 ground truth.

Predictions folder (what ``cadx predict slides`` writes): ``<slide>.csv`` detections (``prob,X,Y``),
``slide_scores.csv`` (``slide,score,...``), and ``<slide>.h5`` score grids (slide size, tile metrics).
Truth folder (CAMELYON16 ``testing`` layout): ``reference.csv`` and either
``lesion_annotations/<slide>.xml`` or ``<slide>_Mask.tif`` masks (also under ``masks/``).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from cadx.datasets.tiles import IGNORE, label_tiles
from cadx.errors import CadxError, InputFileError
from cadx.io.annotations import polygons_in_paint_order, read_asap_xml
from cadx.io.atomic import atomic_path
from cadx.io.h5 import ScoreGrid, read_score_grid_h5
from cadx.io.tables import read_detections_csv, read_reference, read_slide_scores
from cadx.metrics.classification import auc_with_ci, roc_auc, sens_spec
from cadx.metrics.froc import (
    EVAL_LEVEL,
    FROC_FP_RATES,
    evaluation_mask,
    froc_curve,
    froc_score,
    itc_labels,
    score_detections,
)
from cadx.preprocessing.masks import rasterize_polygons
from cadx.tasks.camelyon16.predict import TUMOR_CHANNEL
from cadx.viz.plots import plot_froc, plot_roc
from cadx.wsi.tiling import tumor_fractions

log = logging.getLogger(__name__)


def truth_mask(truth_dir: Path, slide: str, size_wh: tuple[int, int], *, level: int = EVAL_LEVEL) -> np.ndarray | None:
    """Boolean tumour mask at ``2 ** level`` downsample from a ``_Mask.tif`` or the ASAP XML.

    Returns
    -------
    ndarray of bool, shape (ceil(height / 2**level), ceil(width / 2**level)), or None
        None when the slide has neither.
    """
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


def tile_labels_from_truth(grid: ScoreGrid, truth_dir: Path, slide: str, *, is_tumor: bool = False,
                           channel: str = TUMOR_CHANNEL) -> tuple[np.ndarray, np.ndarray]:
    """Score (channel ``channel``) and label (1 tumour, 0 normal, -1 ignored) of each scored tile.

    Tiles are the grid cells scored in ``channel`` (not NaN), in row-major order. Labels follow the
    training rule (:func:`cadx.datasets.tiles.label_tiles`) on the slide's ASAP annotations. A
    normal slide's tiles are all normal; a tumour slide without annotations (mask only) has its
    tiles ignored rather than called normal.
    """
    probs_grid = grid.channel(channel)
    rows, cols = np.nonzero(~np.isnan(probs_grid))
    probs = probs_grid[rows, cols]
    coords = np.stack([cols * grid.stride_level0_px, rows * grid.stride_level0_px], 1)
    xml = truth_dir / "lesion_annotations" / f"{slide}.xml"
    if not xml.exists():
        if is_tumor:
            log.warning("%s: tumour slide without %s: its tiles are left out of tile metrics", slide, xml)
            return probs, np.full(len(probs), IGNORE)
        return probs, label_tiles(None, None, len(probs))
    fr = tumor_fractions(read_asap_xml(xml), coords, grid.tile_size_level0_px, grid.slide_size_wh)
    return probs, label_tiles(fr["tumor_fraction_center"], fr["tumor_fraction"], len(probs))


def _find(pred: Path, name: str, suffix: str) -> Path | None:
    """``<name><suffix>`` in ``pred``, the name matched case-insensitively (reference names are lower case)."""
    exact = pred / f"{name}{suffix}"
    if exact.exists():
        return exact
    return next((p for p in sorted(pred.glob(f"*{suffix}")) if p.stem.lower() == name), None)


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
    score_column : str
        Column of ``slide_scores.csv`` used as the slide score (``score`` or ``rf_score``).
    exclude : tuple of str
        Slides left out, as usual for CAMELYON16 (Test_049, Test_114).

    Returns
    -------
    dict
        The metrics written to ``metrics.json``, plus ``per_slide`` rows.

    Raises
    ------
    CadxError
        A reference slide without a score, a detections file or (tumour slides) a score grid and
        ground truth; or a reference without both tumour and normal slides.
    """
    from sklearn.metrics import roc_curve

    pred, truth = Path(pred_dir), Path(truth_dir)
    out = Path(out_dir) if out_dir else pred
    reference = read_reference(truth / "reference.csv")
    scores_path = pred / "slide_scores.csv"
    if not scores_path.is_file():
        raise InputFileError(scores_path, "no slide_scores.csv: run `cadx predict slides` first")
    score_names, score_values = read_slide_scores(scores_path, columns=[score_column])
    scores = {n.lower(): float(v) for n, v in zip(score_names, score_values[:, 0], strict=True)}
    names = sorted(n for n in reference if n not in exclude and n in scores)
    missing = sorted(set(reference) - set(scores) - set(exclude))
    if missing:
        raise CadxError(f"{pred}: no prediction for {len(missing)} reference slides: {', '.join(missing[:5])}")
    if len({reference[n] for n in names}) < 2:
        raise CadxError(f"{truth / 'reference.csv'}: the slide AUC needs tumour and normal slides")

    hits, per_slide, tile_p, tile_y = [], [], [], []
    for name in names:
        csv_path = _find(pred, name, ".csv")
        if csv_path is None:
            raise InputFileError(pred / f"{name}.csv", "no detections file for a slide in reference.csv "
                                 "(an empty file means no detections)")
        dets = read_detections_csv(csv_path)
        grid_path = _find(pred, name, ".h5")
        grid = read_score_grid_h5(grid_path) if grid_path else None
        mask = None
        if reference[name]:
            if grid is None:
                raise InputFileError(pred / f"{name}.h5", "score grid needed for the slide size of a tumour slide")
            mask = truth_mask(truth, name, grid.slide_size_wh)
            if mask is None:
                raise InputFileError(truth / "lesion_annotations" / f"{name}.xml",
                                     "no annotation or mask for a tumour slide")
        em = evaluation_mask(mask) if mask is not None else None
        itc = itc_labels(em) if em is not None else set()
        h = score_detections(name, dets, em, itc)
        hits.append(h)
        if grid is not None:
            p, y = tile_labels_from_truth(grid, truth, name, is_tumor=bool(reference[name]))
            tile_p.append(p[y >= 0])
            tile_y.append(y[y >= 0])
        per_slide.append({"slide": name, "label": "Tumor" if reference[name] else "Normal", "score": scores[name],
                          "lesions": h.n_lesions, "itc": len(itc),
                          "lesions_detected": int((h.tp_probs >= threshold).sum()),
                          "false_positives_at_threshold": int((np.asarray(h.fp_probs) >= threshold).sum()),
                          "detections": len(dets)})

    y = [reference[n] for n in names]
    s = [scores[n] for n in names]
    auc = auc_with_ci(y, s)
    sens, spec = sens_spec(y, s, threshold)
    fps, sensitivity = froc_curve(hits)
    froc, at = froc_score(fps, sensitivity)
    out.mkdir(parents=True, exist_ok=True)
    fpr, tpr, _ = roc_curve(y, s)
    plot_roc(out / "roc.png", fpr, tpr, auc=auc.auc, title="Slide-level ROC")
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
            metrics.update(tile_auc=roc_auc(ty, tp), tile_sensitivity=float((tp[ty == 1] >= threshold).mean()),
                           tile_specificity=float((tp[ty == 0] < threshold).mean()), tiles=int(len(ty)))
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    with atomic_path(out / "per_slide.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(per_slide[0]))
        w.writeheader()
        w.writerows(per_slide)
    metrics["per_slide"] = per_slide
    return metrics
