"""CAMELYON-style ground-truth mask TIFFs from ASAP annotations.

Same geometry as the slide (level-0 size, mpp, pyramid), greyscale, lossless; tumour = 255 and
everything else 0, the values the official FROC script reads (``255 - pixels``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cadx.io.annotations import Annotation, check_within, polygons_in_paint_order
from cadx.io.tiff import write_pyramid_tiff
from cadx.preprocessing.masks import rasterize_polygons

TUMOR_VALUE = 255


def write_annotation_mask_tiff(
    path: str | Path,
    annotations: Sequence[Annotation],
    *,
    size_wh: tuple[int, int],
    mpp: float,
    n_levels: int,
    annotations_path: str | Path = "annotations",
) -> Path:
    """Rasterise annotations tile by tile into a pyramidal mask TIFF (memory flat in slide size).

    ``size_wh`` must be divisible by ``2 ** (n_levels - 1)``; pass the slide's level count for
    slides written by cadx.
    """
    check_within(annotations, size_wh, path=annotations_path)
    polys = polygons_in_paint_order(annotations)
    boxes = [(p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()) for p, _ in polys]

    def render(x0: int, y0: int, w: int, h: int, ds: float) -> np.ndarray:
        x1, y1 = x0 + w * ds, y0 + h * ds
        hits = [poly for poly, b in zip(polys, boxes, strict=True)
                if b[2] >= x0 and b[0] <= x1 and b[3] >= y0 and b[1] <= y1]
        if not hits:
            return np.zeros((h, w), np.uint8)
        return rasterize_polygons(hits, (h, w), downsample=ds, origin_xy=(x0, y0)) * np.uint8(TUMOR_VALUE)

    return write_pyramid_tiff(path, size_wh, render, mpp=mpp, n_levels=n_levels, channels=1, compression="zlib",
                              description="cadx annotation mask: 255 tumour, 0 other")
