"""One renderer for everything drawn over an image: score grids, masks, outlines, tile boxes.

Images are RGB ``uint8`` arrays ``(rows, cols, 3)``. Whatever is drawn is given in level-0 pixels
of a slide together with ``scale``, the image's pixels per level-0 pixel (see
:func:`thumbnail_scale`); this module knows nothing about slides or files.

Score grids are coloured with a perceptually ordered colour map (``viridis`` by default: its
lightness rises monotonically, so a brighter cell is always a higher score, unlike ``jet``), and
are transparent where a cell holds NaN (not scored).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Default colour map of score grids (perceptually uniform, readable in greyscale and by most
#: colour-blind viewers).
DEFAULT_CMAP = "viridis"
#: Ground-truth outlines: red, a colour absent from viridis, from H&E and from pen marks.
OUTLINE_RGB = (255, 0, 0)


def thumbnail_scale(image_shape_hw: Sequence[int], slide_size_wh: Sequence[int]) -> float:
    """Image pixels per level-0 pixel for an overview of a slide (from the widths).

    Examples
    --------
    >>> thumbnail_scale((60, 100), (1000, 600))
    0.1
    """
    return image_shape_hw[1] / slide_size_wh[0]


def colourise(values: np.ndarray, *, cmap: str = DEFAULT_CMAP, vmin: float = 0.0, vmax: float = 1.0,
              alpha: float = 0.55) -> np.ndarray:
    """RGBA colours of a 2-D array of scores; fully transparent where NaN.

    Parameters
    ----------
    values : ndarray of float, shape (rows, cols)
    cmap : str
        A matplotlib colour map name (``viridis``, ``magma``, ``inferno``, ...).
    vmin, vmax : float
        Scores mapped to the two ends of the colour map (values outside are clipped).
    alpha : float
        Opacity of scored cells.

    Returns
    -------
    ndarray of float, shape (rows, cols, 4), in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> rgba = colourise(np.array([[0.0, np.nan, 1.0]]))
    >>> rgba[0, :, 3].tolist()
    [0.55, 0.0, 0.55]
    >>> bool(rgba[0, 2, :3].sum() > rgba[0, 0, :3].sum())  # viridis: 1.0 is lighter than 0.0
    True
    """
    import matplotlib

    values = np.asarray(values, np.float64)
    valid = ~np.isnan(values)
    span = (vmax - vmin) or 1.0
    norm = np.clip((np.nan_to_num(values, nan=vmin) - vmin) / span, 0.0, 1.0)
    rgba = matplotlib.colormaps[cmap](norm)
    rgba[..., 3] = valid * alpha
    return rgba


def grid_layer(rgba_cells: np.ndarray, *, image_shape_hw: Sequence[int], scale: float, stride_level0_px: float,
               tile_size_level0_px: float) -> np.ndarray:
    """Place one RGBA colour per grid cell over an image of a slide.

    Cell ``(row, col)`` describes the tile whose level-0 top-left corner is
    ``(col * stride, row * stride)`` and whose side is ``tile_size``. It is painted as a
    ``stride``-wide square centred on that tile, i.e. shifted by half a tile minus half a stride:
    overlapping tiles then tile the picture without gaps or overlaps. Cells are enlarged by
    nearest-neighbour resizing of the whole grid to the area it covers.

    Parameters
    ----------
    rgba_cells : ndarray of float, shape (rows, cols, 4), in [0, 1]
    image_shape_hw : (int, int)
    scale : float
        Image pixels per level-0 pixel.
    stride_level0_px, tile_size_level0_px : float

    Returns
    -------
    ndarray of float32, shape (H, W, 4)
        Transparent outside the grid.
    """
    from PIL import Image

    h, w = int(image_shape_hw[0]), int(image_shape_hw[1])
    rows, cols = rgba_cells.shape[:2]
    cover_w = max(int(round(cols * stride_level0_px * scale)), 1)
    cover_h = max(int(round(rows * stride_level0_px * scale)), 1)
    cells = (np.asarray(rgba_cells) * 255).astype(np.uint8)
    up = np.asarray(Image.fromarray(cells, "RGBA").resize((cover_w, cover_h), Image.Resampling.NEAREST))
    off = int(round((tile_size_level0_px - stride_level0_px) / 2 * scale))
    layer = np.zeros((h, w, 4), np.float32)
    ch, cw = max(0, min(up.shape[0], h - off)), max(0, min(up.shape[1], w - off))
    layer[off:off + ch, off:off + cw] = up[:ch, :cw] / 255.0
    return layer


def blend(image: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Alpha-composite an RGBA ``layer`` (float, [0, 1]) over an RGB ``uint8`` image of the same size."""
    a = layer[..., 3:4]
    out = image.astype(np.float32) / 255.0 * (1 - a) + layer[..., :3] * a
    return (out * 255 + 0.5).clip(0, 255).astype(np.uint8)


def overlay_grid(image: np.ndarray, values: np.ndarray, *, scale: float, stride_level0_px: float,
                 tile_size_level0_px: float, cmap: str = DEFAULT_CMAP, vmin: float = 0.0, vmax: float = 1.0,
                 alpha: float = 0.55) -> np.ndarray:
    """A score grid coloured and blended over an image of its slide (unchanged where NaN).

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W, 3)
        An overview of the slide (e.g. a thumbnail).
    values : ndarray of float, shape (rows, cols)
        One channel of a score grid; NaN where not scored.
    scale : float
        Image pixels per level-0 pixel.
    stride_level0_px, tile_size_level0_px : float
        The grid's geometry (see :func:`grid_layer`).
    cmap, vmin, vmax, alpha
        See :func:`colourise`.

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)

    Examples
    --------
    A 1000 x 600 px slide, a 100 x 60 thumbnail (scale 0.1), 200-px tiles every 100 px: cell
    (1, 2) is centred on its tile, 10 x 10 thumbnail pixels from (row 15, col 25).

    >>> import numpy as np
    >>> grid = np.full((5, 9), np.nan)
    >>> grid[1, 2] = 0.9
    >>> out = overlay_grid(np.full((60, 100, 3), 255, np.uint8), grid, scale=0.1, stride_level0_px=100,
    ...                    tile_size_level0_px=200)
    >>> rows, cols = np.nonzero((out != 255).any(axis=2))
    >>> (int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max()))
    (15, 24, 25, 34)
    """
    layer = grid_layer(colourise(values, cmap=cmap, vmin=vmin, vmax=vmax, alpha=alpha), image_shape_hw=image.shape[:2],
                       scale=scale, stride_level0_px=stride_level0_px, tile_size_level0_px=tile_size_level0_px)
    return blend(image, layer)


def overlay_map(image: np.ndarray, values_hw: np.ndarray, *, cmap: str = DEFAULT_CMAP,
                alpha: float = 0.5) -> np.ndarray:
    """A dense map of scores in [0, 1] (e.g. a class activation map) coloured and blended over an image.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W, 3)
    values_hw : ndarray of float, shape (rows, cols)
        One value per pixel, 0 and 1 at the ends of the colour map (outside: clipped; NaN:
        transparent). A map of another size is resized to ``(H, W)``: bilinearly, or by nearest
        neighbour when it holds NaN.
    cmap : str
        A matplotlib colour map name.
    alpha : float
        Opacity of the map.

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)

    Examples
    --------
    Over black, at half opacity, 1.0 is half of viridis' yellow and 0.0 half of its dark purple:

    >>> import numpy as np
    >>> out = overlay_map(np.zeros((1, 2, 3), np.uint8), np.array([[0.0, 1.0]]))
    >>> out[0].tolist()
    [[34, 1, 42], [127, 116, 18]]
    """
    from PIL import Image

    values = np.asarray(values_hw, np.float32)
    h, w = image.shape[:2]
    if values.shape != (h, w):
        resample = Image.Resampling.NEAREST if np.isnan(values).any() else Image.Resampling.BILINEAR
        values = np.asarray(Image.fromarray(values).resize((w, h), resample))
    return blend(image, colourise(values, cmap=cmap, alpha=alpha))


def overlay_mask(image: np.ndarray, mask: np.ndarray, *, colour: Sequence[int] = (0, 200, 0), alpha: float = 0.3,
                 outline: bool = True) -> np.ndarray:
    """Tint a boolean ``mask`` (any resolution, same aspect) over an image and draw its outline.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W, 3)
    mask : ndarray of bool, shape (rows, cols)
        Resized to ``(H, W)`` by nearest neighbour.
    colour : (int, int, int)
    alpha : float
        Tint opacity (0: outline only).
    outline : bool
        Paint the mask's inner boundary pixels in ``colour``.

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)
    """
    from PIL import Image
    from skimage.segmentation import find_boundaries

    h, w = image.shape[:2]
    m = Image.fromarray(np.asarray(mask).astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST)
    m = np.asarray(m) > 0
    out = image.astype(np.float32)
    col = np.array(colour, np.float32)
    out[m] = (1 - alpha) * out[m] + alpha * col
    if outline:
        out[find_boundaries(m, mode="inner")] = col
    return out.round().clip(0, 255).astype(np.uint8)


def draw_outlines(image: np.ndarray, polygons_xy: Sequence[np.ndarray], *, scale: float,
                  colour: Sequence[int] = OUTLINE_RGB, width: int = 2) -> np.ndarray:
    """Closed polygon outlines (level-0 ``(x, y)`` vertices) drawn over an image.

    The default colour, red, is in neither the score colour map nor H&E, and differs from the
    black pen marks and scanner borders found on slides.

    Examples
    --------
    >>> import numpy as np
    >>> square = np.array([[50, 50], [150, 50], [150, 150], [50, 150]])
    >>> img = draw_outlines(np.full((20, 20, 3), 255, np.uint8), [square], scale=0.1, width=1)
    >>> img[5, 5].tolist(), img[10, 10].tolist(), img[5, 10].tolist()
    ([255, 0, 0], [255, 255, 255], [255, 0, 0])
    """
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(img)
    for poly in polygons_xy:
        pts = [(float(x) * scale, float(y) * scale) for x, y in np.asarray(poly, np.float64)]
        if pts:
            draw.line(pts + pts[:1], fill=tuple(int(c) for c in colour), width=width)
    return np.asarray(img)


def draw_boxes(image: np.ndarray, corners_xy: np.ndarray, size_level0_px: float, *, scale: float,
               colour: Sequence[int] = (30, 60, 220)) -> np.ndarray:
    """Square outlines (level-0 top-left corners, level-0 side) drawn over an image, e.g. tiles."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(img)
    s = size_level0_px * scale
    for x, y in np.asarray(corners_xy, dtype=np.float64).reshape(-1, 2):
        draw.rectangle([x * scale, y * scale, x * scale + s, y * scale + s], outline=tuple(int(c) for c in colour))
    return np.asarray(img)
