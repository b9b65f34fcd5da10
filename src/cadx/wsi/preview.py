"""Pictures people look at: thumbnails with the tissue outline, the tile grid, mask overlays."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cadx.io.atomic import atomic_path
from cadx.io.slide import SlideReader
from cadx.preprocessing.tissue import TissueMask


def _resize_mask(mask: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(shape_hw[::-1], Image.Resampling.NEAREST)) > 0


def mask_overlay(thumbnail: np.ndarray, mask: np.ndarray, *, colour: Sequence[int] = (0, 200, 0),
                 alpha: float = 0.3, outline: bool = True) -> np.ndarray:
    """Tint ``mask`` (any resolution) over an RGB thumbnail and draw its outline."""
    from skimage.segmentation import find_boundaries

    m = _resize_mask(mask, thumbnail.shape[:2])
    out = thumbnail.astype(np.float32)
    col = np.array(colour, np.float32)
    out[m] = (1 - alpha) * out[m] + alpha * col
    if outline:
        edge = find_boundaries(m, mode="inner")
        out[edge] = col
    return out.round().clip(0, 255).astype(np.uint8)


def write_mask_preview(path: str | Path, slide: SlideReader, tissue: TissueMask, *, max_size_px: int = 1024) -> Path:
    """PNG: the slide thumbnail with the tissue mask tinted and outlined."""
    from PIL import Image

    thumb = slide.get_thumbnail((max_size_px, max_size_px))
    with atomic_path(path) as tmp:
        Image.fromarray(mask_overlay(thumb, tissue.mask)).save(tmp, format="PNG")
    return Path(path)


def write_mask_png(path: str | Path, tissue: TissueMask) -> Path:
    """PNG of the binary mask (255 = tissue) with its resolution in the PNG text chunk."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("mpp", f"{tissue.mpp:.6f}")
    info.add_text("method", tissue.method)
    with atomic_path(path) as tmp:
        Image.fromarray(tissue.mask.astype(np.uint8) * 255).save(tmp, format="PNG", pnginfo=info)
    return Path(path)


def tiling_preview(slide: SlideReader, tissue: TissueMask, coords_xy: np.ndarray, size_level0_px: int,
                   *, max_size_px: int = 1024) -> np.ndarray:
    """RGB picture: thumbnail, tissue outline (green), kept tiles (blue rectangles)."""
    from PIL import Image, ImageDraw

    thumb = slide.get_thumbnail((max_size_px, max_size_px))
    img = Image.fromarray(mask_overlay(thumb, tissue.mask, alpha=0.0))
    scale = thumb.shape[1] / slide.dimensions[0]
    draw = ImageDraw.Draw(img)
    s = size_level0_px * scale
    for x, y in np.asarray(coords_xy, dtype=np.float64):
        draw.rectangle([x * scale, y * scale, x * scale + s, y * scale + s], outline=(30, 60, 220))
    return np.asarray(img)


def write_tiling_preview(path: str | Path, slide: SlideReader, result: object, *, max_size_px: int = 1024) -> Path:
    """PNG of :func:`tiling_preview` for a :class:`~cadx.wsi.tiling.TilingResult`."""
    from PIL import Image

    img = tiling_preview(slide, result.tissue, result.coords_xy, result.grid.size_level0_px,  # type: ignore[attr-defined]
                         max_size_px=max_size_px)
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")
    return Path(path)
