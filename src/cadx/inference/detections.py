"""From a probability grid to lesion detections and slide-level features.

- Detections: non-maximum suppression on one channel of a score grid (threshold, suppression
  radius in microns), one detection per peak at its tile's level-0 centre (written as the
  CAMELYON16 ``prob,X,Y`` format by :func:`cadx.io.tables.write_detections_csv`).
- Slide features: the maximum tile probability and heatmap summaries for a random forest, as the
  CAMELYON16 winner did (Wang et al. 2016).
"""

from __future__ import annotations

import numpy as np

from cadx.io.annotations import Detection
from cadx.io.h5 import ScoreGrid

#: Order of :func:`slide_features`.
FEATURE_NAMES = ("max", "top5_mean", "mean", "area_mm2_p50", "area_mm2_p90", "largest_mm2_p50",
                 "n_regions_p50", "largest_mean_p50")


def nms_detections(grid: ScoreGrid, *, channel: str | None = None, threshold: float = 0.1,
                   radius_um: float = 150.0) -> list[Detection]:
    """Greedy non-maximum suppression on one channel of a score grid.

    Repeatedly takes the most probable remaining cell (at or above ``threshold``), reports the
    centre of its tile, and suppresses every cell whose centre lies within ``radius_um``.

    Parameters
    ----------
    grid : ScoreGrid
    channel : str, optional
        Channel of probabilities (default: the grid's only channel).
    threshold : float
        Lowest probability reported.
    radius_um : float
        Suppression radius in microns (cell distances use ``grid.cell_um``).

    Returns
    -------
    list of Detection
        Sorted by decreasing probability; coordinates in level-0 pixels.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.full((1, 4, 4), 0.05, np.float32)
    >>> p[0, 1, 1], p[0, 1, 2], p[0, 3, 3] = 0.9, 0.8, 0.6
    >>> g = ScoreGrid(p, ("tumor_probability",), 100, 100, (400, 400), mpp=1.0)
    >>> [(round(d.prob, 2), d.x, d.y) for d in nms_detections(g, threshold=0.5, radius_um=150)]
    [(0.9, 150.0, 150.0), (0.6, 350.0, 350.0)]
    """
    probs = np.nan_to_num(grid.channel(channel), nan=-1.0)
    rows, cols = np.nonzero(probs >= threshold)
    if rows.size == 0:
        return []
    order = np.argsort(-probs[rows, cols], kind="stable")
    rows, cols = rows[order], cols[order]
    r_cells = radius_um / grid.cell_um
    alive = np.ones(rows.size, bool)
    out: list[Detection] = []
    for i in range(rows.size):
        if not alive[i]:
            continue
        x, y = grid.center_xy(rows[i], cols[i])
        out.append(Detection(float(probs[rows[i], cols[i]]), float(x), float(y)))
        d2 = (rows - rows[i]) ** 2 + (cols - cols[i]) ** 2
        alive &= d2 > r_cells**2
    return out


def slide_features(grid: ScoreGrid, *, channel: str | None = None) -> np.ndarray:
    """Summary features of one probability channel (see :data:`FEATURE_NAMES`) for a slide classifier.

    Returns
    -------
    ndarray of float64, shape (len(FEATURE_NAMES),)
        Areas in mm2 (cell area from ``grid.cell_um``), region counts 8-connected.
    """
    from scipy import ndimage as ndi

    probs = grid.channel(channel)
    p = np.nan_to_num(probs, nan=0.0)
    flat = np.sort(p.ravel())[::-1]
    cell_mm2 = (grid.cell_um / 1000.0) ** 2
    lab, n = ndi.label(p >= 0.5, structure=np.ones((3, 3)))
    sizes = np.bincount(lab.ravel())[1:] if n else np.zeros(0)
    largest = int(np.argmax(sizes)) + 1 if n else 0
    valid = ~np.isnan(probs)
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
