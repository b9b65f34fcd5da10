"""From a heatmap to the challenge's outputs: lesion detections and a slide score.

- Detections: non-maximum suppression on the probability grid (threshold, suppression radius in
  microns), one ``prob,X,Y`` row per detection in level-0 pixels: the CAMELYON16 submission format.
- Slide score: the maximum tile probability, and heatmap features for a random forest, as the
  challenge winner did (Wang et al. 2016).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cadx.io.annotations import Detection
from cadx.io.atomic import atomic_path
from cadx.io.heatmap_h5 import Heatmap

#: Order of :func:`slide_features`.
FEATURE_NAMES = ("max", "top5_mean", "mean", "area_mm2_p50", "area_mm2_p90", "largest_mm2_p50",
                 "n_regions_p50", "largest_mean_p50")


def nms_detections(heatmap: Heatmap, *, threshold: float = 0.1, radius_um: float = 150.0) -> list[Detection]:
    """Greedy non-maximum suppression on the grid.

    Repeatedly takes the most probable remaining cell (above ``threshold``), reports the centre of
    its tile, and suppresses every cell whose centre lies within ``radius_um``.

    Returns
    -------
    list of Detection
        Sorted by decreasing probability; coordinates in level-0 pixels.
    """
    probs = np.nan_to_num(heatmap.probs, nan=-1.0)
    rows, cols = np.nonzero(probs >= threshold)
    if rows.size == 0:
        return []
    order = np.argsort(-probs[rows, cols], kind="stable")
    rows, cols = rows[order], cols[order]
    r_cells = radius_um / heatmap.cell_um
    alive = np.ones(rows.size, bool)
    out: list[Detection] = []
    for i in range(rows.size):
        if not alive[i]:
            continue
        x, y = heatmap.center_xy(rows[i], cols[i])
        out.append(Detection(float(probs[rows[i], cols[i]]), float(x), float(y)))
        d2 = (rows - rows[i]) ** 2 + (cols - cols[i]) ** 2
        alive &= d2 > r_cells**2
    return out


def write_detections_csv(path: str | Path, detections: Sequence[Detection]) -> Path:
    """CAMELYON16 submission CSV: ``prob,X,Y`` per line, no header (what the official script reads)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        for d in detections:
            w.writerow([f"{d.prob:.6f}", f"{d.x:.1f}", f"{d.y:.1f}"])
    return Path(path)


def read_detections_csv(path: str | Path) -> list[Detection]:
    """Read a ``prob,X,Y`` CSV (a header line, if any, is skipped)."""
    out = []
    with open(path) as fh:
        for row in csv.reader(fh):
            if not row:
                continue
            try:
                out.append(Detection(float(row[0]), float(row[1]), float(row[2])))
            except ValueError:
                if out:
                    raise
    return out


def slide_features(heatmap: Heatmap) -> np.ndarray:
    """Heatmap summary features (see :data:`FEATURE_NAMES`) for a slide-level classifier."""
    from scipy import ndimage as ndi

    p = np.nan_to_num(heatmap.probs, nan=0.0)
    flat = np.sort(p.ravel())[::-1]
    cell_mm2 = (heatmap.cell_um / 1000.0) ** 2
    lab, n = ndi.label(p >= 0.5, structure=np.ones((3, 3)))
    sizes = np.bincount(lab.ravel())[1:] if n else np.zeros(0)
    largest = int(np.argmax(sizes)) + 1 if n else 0
    valid = ~np.isnan(heatmap.probs)
    return np.array([
        flat[0] if flat.size else 0.0,
        flat[:5].mean() if flat.size else 0.0,
        float(p[valid].mean()) if valid.any() else 0.0,
        float((p >= 0.5).sum() * cell_mm2),
        float((p >= 0.9).sum() * cell_mm2),
        float(sizes.max() * cell_mm2) if n else 0.0,
        float(n),
        float(p[lab == largest].mean()) if n else 0.0,
    ], dtype=np.float64)
