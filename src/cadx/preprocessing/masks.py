"""Rasterise polygons (level-0 coordinates) onto label masks at any downsample."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rasterize_polygons(
    polygons: Sequence[tuple[np.ndarray, int]],
    shape_hw: Sequence[int],
    *,
    downsample: float = 1.0,
    origin_xy: Sequence[float] = (0.0, 0.0),
    dtype: np.dtype | type = np.uint8,
) -> np.ndarray:
    """Paint polygons, in order, onto a mask.

    Parameters
    ----------
    polygons : sequence of (coords_xy, value)
        ``coords_xy`` is an (N, 2) array of level-0 ``(x, y)`` vertices; later polygons overwrite
        earlier ones (so CAMELYON ``_2`` holes go last with value 0).
    shape_hw : (int, int)
        Output shape ``(rows, cols)``.
    downsample : float
        Level-0 pixels per output pixel.
    origin_xy : (float, float)
        Level-0 position of the output's top-left corner (for windows of a large slide).
    dtype : numpy dtype
        Output dtype.

    Returns
    -------
    ndarray, shape ``shape_hw``
        Pixel ``(r, c)`` takes the value of the last polygon containing its centre, which lies at
        level-0 ``(origin_x + (c + 0.5) * downsample, origin_y + (r + 0.5) * downsample)``.

    Examples
    --------
    >>> import numpy as np
    >>> square = np.array([[0, 0], [100, 0], [100, 100], [0, 100]], float)
    >>> hole = np.array([[40, 40], [60, 40], [60, 60], [40, 60]], float)
    >>> m = rasterize_polygons([(square, 1), (hole, 0)], (120, 120))
    >>> int(m.sum())
    9600
    """
    out = np.zeros(tuple(int(v) for v in shape_hw), dtype=dtype)
    ox, oy = float(origin_xy[0]), float(origin_xy[1])
    h, w = out.shape
    for coords_xy, value in polygons:
        xy = np.asarray(coords_xy, dtype=np.float64)
        cols = (xy[:, 0] - ox) / downsample - 0.5
        rows = (xy[:, 1] - oy) / downsample - 0.5
        if cols.max() < -1 or rows.max() < -1 or cols.min() > w or rows.min() > h:
            continue
        inside = polygon_mask(rows, cols, out.shape)
        if inside is not None:
            out[inside] = value
    return out


#: Elements of the temporary arrays the polygon fill holds at once (32 MiB of int64).
FILL_CHUNK_ELEMENTS = 2**22


def polygon_mask(rows: np.ndarray, cols: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray | None:
    """Even-odd scanline fill: True where a pixel centre ``(r, c)`` lies inside the polygon.

    Vertices are in pixel units (pixel centres at integers). Each edge contributes one crossing
    per pixel row it spans; crossings are handled in blocks of rows and edges so that temporary
    memory stays below :data:`FILL_CHUNK_ELEMENTS` elements besides the mask, however many
    vertices the polygon has. Time is linear in the crossings plus the mask's size. Returns None
    when no row is crossed.

    Examples
    --------
    >>> import numpy as np
    >>> m = polygon_mask(np.array([0.0, 0.0, 3.0]), np.array([0.0, 3.0, 0.0]), (4, 4))
    >>> m.astype(int).tolist()
    [[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    """
    h, w = (int(v) for v in shape_hw)
    r1, c1 = np.asarray(rows, np.float64), np.asarray(cols, np.float64)
    r2, c2 = np.roll(r1, -1), np.roll(c1, -1)
    lo = max(int(np.ceil(min(r1.min(), h))), 0)
    hi = min(int(np.floor(r1.max())), h - 1)
    if hi < lo:
        return None
    # Edge e crosses the integer rows rr with min(r1, r2) <= rr < max(r1, r2) (horizontal: none).
    first = np.maximum(np.ceil(np.minimum(r1, r2)), lo)
    last = np.minimum(np.ceil(np.maximum(r1, r2)) - 1, hi)
    crossing = np.nonzero(last >= first)[0]
    if crossing.size == 0:
        return None
    first, last = first[crossing].astype(np.int64), last[crossing].astype(np.int64)
    r1, c1, r2, c2 = r1[crossing], c1[crossing], r2[crossing], c2[crossing]
    mask = np.zeros((h, w), bool)
    rows_per_block = max(1, FILL_CHUNK_ELEMENTS // (w + 1))
    for a in range(lo, hi + 1, rows_per_block):
        b = min(a + rows_per_block, hi + 1)
        sel = np.nonzero((first < b) & (last >= a))[0]
        if sel.size == 0:
            continue
        f, n = np.maximum(first[sel], a), np.minimum(last[sel], b - 1) - np.maximum(first[sel], a) + 1
        toggles = np.zeros((b - a) * (w + 1), np.int64)
        ends = np.cumsum(n)
        # Split the edges into batches of at most FILL_CHUNK_ELEMENTS crossings (one edge at least).
        start = 0
        while start < sel.size:
            base = ends[start - 1] if start else 0
            stop = max(start + 1, int(np.searchsorted(ends, base + FILL_CHUNK_ELEMENTS, side="right")))
            e, fe, ne = sel[start:stop], f[start:stop], n[start:stop]
            offset = np.arange(int(ne.sum())) - np.repeat(np.cumsum(ne) - ne, ne)
            rr = (np.repeat(fe, ne) + offset).astype(np.float64)
            ei = np.repeat(e, ne)
            xc = c1[ei] + (rr - r1[ei]) * (c2[ei] - c1[ei]) / (r2[ei] - r1[ei])
            col = np.clip(np.ceil(xc), 0, w).astype(np.int64)
            toggles += np.bincount((rr.astype(np.int64) - a) * (w + 1) + col, minlength=toggles.size)
            start = stop
        parity = np.cumsum(toggles.reshape(b - a, w + 1)[:, :w], axis=1) & 1
        mask[a:b] = parity.astype(bool)
    return mask


def polygons_from_mask(
    mask: np.ndarray,
    *,
    downsample: float = 1.0,
    origin_xy: Sequence[float] = (0.0, 0.0),
    min_vertices: int = 3,
) -> list[tuple[np.ndarray, int]]:
    """Outlines of a boolean mask as level-0 polygons: the inverse of :func:`rasterize_polygons`.

    Contours run between foreground and background pixel centres (marching squares at 0.5,
    :func:`skimage.measure.find_contours` on the mask padded with background, so every contour
    closes). Each foreground pixel's centre lies inside its outline and each background pixel's
    outside, so rasterising the result at the same ``downsample`` and ``origin_xy`` gives the mask
    back (regions touching only at a corner are the exception marching squares leaves ambiguous).

    Parameters
    ----------
    mask : ndarray of bool, shape (rows, cols)
    downsample : float
        Level-0 pixels per mask pixel.
    origin_xy : (float, float)
        Level-0 position of the mask's top-left corner.
    min_vertices : int
        Contours with fewer vertices are dropped.

    Returns
    -------
    list of (coords_xy, value)
        Level-0 ``(x, y)`` vertices (float64, (N, 2), the closing vertex not repeated); value 1
        for an outer boundary, 0 for a hole. Outer boundaries come first, so the list paints back
        in order (an island inside a hole is painted over by the hole).

    Examples
    --------
    >>> m = np.zeros((6, 6), bool); m[1:5, 1:5] = True; m[2:4, 2:4] = False
    >>> polys = polygons_from_mask(m, downsample=10)
    >>> [(len(p), v) for p, v in polys]
    [(16, 1), (8, 0)]
    >>> bool((rasterize_polygons(polys, m.shape, downsample=10) == m).all())
    True
    """
    from skimage import measure

    m = np.pad(np.asarray(mask, bool), 1).astype(np.uint8)
    ox, oy = float(origin_xy[0]), float(origin_xy[1])
    outer: list[tuple[np.ndarray, int]] = []
    holes: list[tuple[np.ndarray, int]] = []
    for c in measure.find_contours(m, 0.5):
        rc = c[:-1] if len(c) > 1 and np.array_equal(c[0], c[-1]) else c
        if len(rc) < min_vertices:
            continue
        x = ox + (rc[:, 1] - 1 + 0.5) * downsample
        y = oy + (rc[:, 0] - 1 + 0.5) * downsample
        # Shoelace area in (x, y): find_contours winds around foreground one way, holes the other.
        area = 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
        (outer if area > 0 else holes).append((np.stack([x, y], 1), 1 if area > 0 else 0))
    return outer + holes
