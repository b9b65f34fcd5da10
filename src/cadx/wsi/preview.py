"""Pictures of slides people look at: tissue mask, tile grid, score-grid overlays.

This module reads the slide's thumbnail and hands it to the one renderer, :mod:`cadx.viz.overlay`,
which owns scaling and drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cadx.io.h5 import ScoreGrid
from cadx.io.images import write_png
from cadx.io.slide import SlideReader
from cadx.preprocessing.tissue import TissueMask
from cadx.viz.overlay import DEFAULT_CMAP, draw_boxes, draw_outlines, overlay_grid, overlay_mask, thumbnail_scale

_write_png = write_png


def write_mask_preview(path: str | Path, slide: SlideReader, tissue: TissueMask, *, max_size_px: int = 1024) -> Path:
    """PNG: the slide thumbnail with the tissue mask tinted and outlined."""
    thumb = slide.get_thumbnail((max_size_px, max_size_px))
    return _write_png(path, overlay_mask(thumb, tissue.mask))


def write_mask_png(path: str | Path, tissue: TissueMask) -> Path:
    """PNG of the binary mask (255 = tissue) with its resolution in the PNG text chunk."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("mpp", f"{tissue.mpp:.6f}")
    info.add_text("method", tissue.method)
    return _write_png(path, tissue.mask.astype(np.uint8) * 255, pnginfo=info)


def tiling_preview(slide: SlideReader, tissue: TissueMask, coords_xy: np.ndarray, size_level0_px: int,
                   *, max_size_px: int = 1024) -> np.ndarray:
    """RGB picture: thumbnail, tissue outline (green), kept tiles (blue squares)."""
    thumb = slide.get_thumbnail((max_size_px, max_size_px))
    img = overlay_mask(thumb, tissue.mask, alpha=0.0)
    return draw_boxes(img, coords_xy, size_level0_px, scale=thumbnail_scale(thumb.shape[:2], slide.dimensions))


def write_tiling_preview(path: str | Path, slide: SlideReader, result: object, *, max_size_px: int = 1024) -> Path:
    """PNG of :func:`tiling_preview` for a :class:`~cadx.wsi.tiling.TilingResult`."""
    img = tiling_preview(slide, result.tissue, result.coords_xy, result.grid.size_level0_px,  # type: ignore[attr-defined]
                         max_size_px=max_size_px)
    return _write_png(path, img)


def score_overlay(slide: SlideReader, grid: ScoreGrid, *, channel: str | None = None, max_size_px: int = 1024,
                  outlines: Sequence[np.ndarray] | None = None, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """RGB picture: one channel of a score grid over the slide's thumbnail, optional outlines.

    Parameters
    ----------
    slide : SlideReader
    grid : ScoreGrid
        Scores in [0, 1] (probabilities); NaN cells leave the thumbnail as is.
    channel : str, optional
        Channel to show (default: the grid's only channel).
    max_size_px : int
        Longest side of the picture.
    outlines : sequence of ndarray, optional
        Level-0 ``(x, y)`` polygons (e.g. ground-truth lesions), drawn in black.
    cmap : str
        A perceptually ordered matplotlib colour map.
    """
    thumb = slide.get_thumbnail((max_size_px, max_size_px))
    scale = thumbnail_scale(thumb.shape[:2], slide.dimensions)
    img = overlay_grid(thumb, grid.channel(channel), scale=scale, stride_level0_px=grid.stride_level0_px,
                       tile_size_level0_px=grid.tile_size_level0_px, cmap=cmap)
    if outlines:
        img = draw_outlines(img, outlines, scale=scale)
    return img


def write_overlay_png(path: str | Path, slide: SlideReader, grid: ScoreGrid, *, channel: str | None = None,
                      max_size_px: int = 1024, outlines: Sequence[np.ndarray] | None = None,
                      cmap: str = DEFAULT_CMAP) -> Path:
    """PNG of :func:`score_overlay` (atomic)."""
    return _write_png(path, score_overlay(slide, grid, channel=channel, max_size_px=max_size_px, outlines=outlines,
                                          cmap=cmap))
