"""Tile grids over a slide from a low-resolution mask.

Positions are level-0 ``(x, y)`` of each tile's top-left corner. Mask-covered fractions are
computed exactly (area-weighted, sub-pixel) from an integral image, so memory depends on the mask
size only, never on the level-0 area.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TileGrid:
    """Tiles kept on a slide.

    Attributes
    ----------
    coords_xy : ndarray of int64, shape (N, 2)
        Level-0 top-left corners ``(x, y)``, row-major order (by y, then x).
    tissue_fraction : ndarray of float32, shape (N,)
        Fraction of each tile's footprint covered by the mask.
    size_level0_px : int
        Tile side in level-0 pixels.
    stride_level0_px : int
        Distance between neighbouring tiles in level-0 pixels.
    grid_shape_hw : (int, int)
        Number of candidate positions (rows, cols) before filtering.
    """

    coords_xy: np.ndarray
    tissue_fraction: np.ndarray
    size_level0_px: int
    stride_level0_px: int
    grid_shape_hw: tuple[int, int]

    def __len__(self) -> int:
        return len(self.coords_xy)


def grid_positions(
    size_wh: Sequence[int], *, tile_size_px: int, stride_px: int
) -> tuple[np.ndarray, tuple[int, int]]:
    """All top-left positions of tiles lying fully inside an image of ``size_wh``.

    Returns
    -------
    coords_xy : ndarray of int64, shape (rows * cols, 2)
    grid_shape_hw : (rows, cols)

    Examples
    --------
    >>> xy, shape = grid_positions((1000, 600), tile_size_px=200, stride_px=200)
    >>> shape, xy[:3].tolist()
    ((3, 5), [[0, 0], [200, 0], [400, 0]])
    """
    if tile_size_px <= 0 or stride_px <= 0:
        raise ValueError(f"tile size and stride must be positive, got {tile_size_px}, {stride_px}")
    w, h = int(size_wh[0]), int(size_wh[1])
    ncols = max(0, (w - tile_size_px) // stride_px + 1)
    nrows = max(0, (h - tile_size_px) // stride_px + 1)
    xs = np.arange(ncols, dtype=np.int64) * stride_px
    ys = np.arange(nrows, dtype=np.int64) * stride_px
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1), (nrows, ncols)


def integral_image(mask: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row and column: ``I[r, c] = mask[:r, :c].sum()``."""
    table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.float64)
    np.cumsum(np.cumsum(mask, axis=0, dtype=np.float64), axis=1, out=table[1:, 1:])
    return table


def box_fractions(
    table: np.ndarray,
    coords_xy: np.ndarray,
    size_level0_px: float,
    *,
    mask_downsample: float,
    inset_frac: float = 0.0,
) -> np.ndarray:
    """Mean mask value over square level-0 boxes, exact to the sub-pixel.

    Parameters
    ----------
    table : ndarray
        :func:`integral_image` of the mask.
    coords_xy : ndarray, shape (N, 2)
        Level-0 top-left corners.
    size_level0_px : float
        Box side in level-0 pixels.
    mask_downsample : float
        Level-0 pixels per mask pixel.
    inset_frac : float
        Shrink each box by this fraction of its side on every edge (0.25 keeps the central half).

    Returns
    -------
    ndarray of float32, shape (N,)
    """
    coords = np.asarray(coords_xy, dtype=np.float64).reshape(-1, 2)
    inset = inset_frac * size_level0_px
    side = size_level0_px - 2 * inset
    x0 = (coords[:, 0] + inset) / mask_downsample
    y0 = (coords[:, 1] + inset) / mask_downsample
    x1 = x0 + side / mask_downsample
    y1 = y0 + side / mask_downsample
    total = (
        _bilinear(table, y1, x1) - _bilinear(table, y0, x1) - _bilinear(table, y1, x0) + _bilinear(table, y0, x0)
    )
    area = (x1 - x0) * (y1 - y0)
    return (total / area).astype(np.float32)


def tile_grid(
    mask: np.ndarray,
    *,
    mask_downsample: float,
    slide_size_wh: Sequence[int],
    tile_size_level0_px: int,
    stride_level0_px: int | None = None,
    min_fraction: float = 0.5,
) -> TileGrid:
    """Tiles whose footprint is at least ``min_fraction`` covered by ``mask``.

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
        Tissue mask covering the whole slide at ``mask_downsample``.
    mask_downsample : float
        Level-0 pixels per mask pixel.
    slide_size_wh : (int, int)
        Level-0 slide size.
    tile_size_level0_px : int
        Tile side in level-0 pixels.
    stride_level0_px : int, optional
        Step between tiles (default: the tile size, no overlap).
    min_fraction : float
        Minimum covered fraction to keep a tile (0 keeps every tile that touches the mask).

    Returns
    -------
    TileGrid

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((6, 10), bool); m[:3, :5] = True      # top-left quarter of a 1000x600 slide
    >>> g = tile_grid(m, mask_downsample=100, slide_size_wh=(1000, 600), tile_size_level0_px=200)
    >>> g.coords_xy.tolist()   # tiles at least half covered: (400, 0) and (*, 200) are exactly half
    [[0, 0], [200, 0], [400, 0], [0, 200], [200, 200]]
    >>> tile_grid(m, mask_downsample=100, slide_size_wh=(1000, 600), tile_size_level0_px=200,
    ...           min_fraction=0.75).coords_xy.tolist()
    [[0, 0], [200, 0]]
    """
    stride = int(stride_level0_px or tile_size_level0_px)
    coords, grid_shape = grid_positions(slide_size_wh, tile_size_px=int(tile_size_level0_px), stride_px=stride)
    fractions = box_fractions(
        integral_image(np.asarray(mask, dtype=bool)), coords, tile_size_level0_px, mask_downsample=mask_downsample
    )
    keep = fractions >= min_fraction if min_fraction > 0 else fractions > 0
    return TileGrid(
        coords_xy=coords[keep],
        tissue_fraction=fractions[keep],
        size_level0_px=int(tile_size_level0_px),
        stride_level0_px=stride,
        grid_shape_hw=grid_shape,
    )


def _bilinear(table: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of the integral image: the exact integral of a piecewise-constant mask."""
    rmax, cmax = table.shape[0] - 1, table.shape[1] - 1
    rows = np.clip(rows, 0, rmax)
    cols = np.clip(cols, 0, cmax)
    r0 = np.minimum(np.floor(rows).astype(np.int64), rmax - 1 if rmax > 0 else 0)
    c0 = np.minimum(np.floor(cols).astype(np.int64), cmax - 1 if cmax > 0 else 0)
    r1 = np.minimum(r0 + 1, rmax)
    c1 = np.minimum(c0 + 1, cmax)
    fr = rows - r0
    fc = cols - c0
    top = table[r0, c0] * (1 - fc) + table[r0, c1] * fc
    bottom = table[r1, c0] * (1 - fc) + table[r1, c1] * fc
    return top * (1 - fr) + bottom * fr
