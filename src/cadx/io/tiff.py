"""Streaming writer for pyramidal, tiled TIFFs that OpenSlide reads as ``generic-tiff``.

One top-level page per level (OpenSlide ignores SubIFD pyramids), 256-px tiles, resolution in
centimetres, level-0 size divisible by ``2 ** (n_levels - 1)`` so every level has an exact
integer downsample (shared/ENVIRONMENT.md). Tiles are rendered on demand by a callback, a few at a
time in worker threads, so memory does not grow with the slide's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import numpy as np

from cadx.io.atomic import atomic_path
from cadx.parallel.prefetch import prefetch_map

#: ``render(x0, y0, width, height, downsample) -> (height, width, C) uint8``; x0/y0 in level-0 px.
RenderFn = Callable[[int, int, int, int, float], np.ndarray]


def pyramid_level_count(size_wh: tuple[int, int], *, min_level_size_px: int = 512, max_levels: int | None = None,
                        exact: bool = False) -> int:
    """Number of 2x levels until the short side would drop below ``min_level_size_px``.

    Parameters
    ----------
    size_wh : (int, int)
        Level-0 ``(width, height)``.
    min_level_size_px : int
        Smallest short side a level may have.
    max_levels : int, optional
        Never more levels than this (e.g. the source slide's level count).
    exact : bool
        Also stop before a level whose downsample does not divide both sides, so every level has
        an exact integer size (what :func:`write_pyramid_tiff` requires of a given size).

    Examples
    --------
    >>> pyramid_level_count((4096, 4096)), pyramid_level_count((4096, 4096), max_levels=2)
    (4, 2)
    >>> pyramid_level_count((3000, 2048)), pyramid_level_count((3000, 2048), exact=True)
    (3, 3)
    >>> pyramid_level_count((3002, 2048), exact=True)  # 3002 is not divisible by 4
    2
    """
    w, h = (int(v) for v in size_wh)
    n = 1
    while min(w, h) // 2**n >= min_level_size_px and (max_levels is None or n < max_levels) and (
            not exact or (w % 2**n == 0 and h % 2**n == 0)):
        n += 1
    return n


def write_pyramid_tiff(
    path: str | Path,
    size_wh: tuple[int, int],
    render: RenderFn,
    *,
    mpp: float,
    n_levels: int,
    channels: int = 3,
    tile_size_px: int = 256,
    compression: str = "jpeg",
    jpeg_quality: int = 90,
    description: str = "",
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write a pyramidal tiled TIFF, atomically.

    Parameters
    ----------
    path : str or Path
        Destination (``.tif``); written to a temporary file and renamed when complete.
    size_wh : (int, int)
        Level-0 ``(width, height)``; each must be divisible by ``2 ** (n_levels - 1)``.
    render : callable
        ``render(x0, y0, width, height, downsample)`` returns the pixels of the region whose
        top-left is level-0 ``(x0, y0)``, sampled every ``downsample`` level-0 pixels.
    mpp : float
        Level-0 microns per pixel, stored as resolution in pixels per centimetre.
    n_levels : int
        Pyramid levels, downsamples 1, 2, 4, ...
    channels : int
        3 (RGB) or 1 (greyscale masks).
    compression : str
        ``"jpeg"`` for RGB images, ``"zlib"`` (lossless) for label masks.
    workers : int
        Threads rendering tiles ahead of the writer.
    progress : callable, optional
        Called with the number of tiles written since the last call.

    Returns
    -------
    Path
    """
    import tifffile

    w0, h0 = (int(v) for v in size_wh)
    step = 2 ** (n_levels - 1)
    if w0 % step or h0 % step:
        raise ValueError(
            f"level-0 size {w0}x{h0} must be divisible by {step} for {n_levels} exact 2x levels"
        )
    res = 1e4 / mpp  # pixels per centimetre
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=True) as tw:
        for level in range(n_levels):
            ds = 2**level
            lw, lh = w0 // ds, h0 // ds
            shape = (lh, lw, channels) if channels > 1 else (lh, lw)
            tw.write(
                _tiles(render, lw, lh, ds, tile_size_px, channels, workers, progress),
                shape=shape,
                dtype=np.uint8,
                tile=(tile_size_px, tile_size_px),
                compression=compression,
                compressionargs={"level": jpeg_quality} if compression == "jpeg" else None,
                photometric="rgb" if channels > 1 else "minisblack",
                resolution=(res / ds, res / ds),
                resolutionunit="CENTIMETER",
                subfiletype=0 if level == 0 else 1,
                description=description if level == 0 else None,
                metadata=None,
                software="cadx",
                # Encode in a few threads over a small window: tifffile's default buffers hundreds
                # of MB of tiles (ThreadPoolExecutor.map is not lazy), which breaks streaming.
                maxworkers=max(1, workers),
                buffersize=8 * tile_size_px * tile_size_px * channels,
            )
    return Path(path)


def _tiles(
    render: RenderFn,
    level_w: int,
    level_h: int,
    ds: int,
    tile: int,
    channels: int,
    workers: int,
    progress: Callable[[int], None] | None,
) -> Iterator[np.ndarray]:
    """Render tiles in row-major order with a bounded look-ahead of ``2 * workers`` tiles."""

    def job(col: int, row: int) -> np.ndarray:
        w = min(tile, level_w - col)
        h = min(tile, level_h - row)
        px = np.asarray(render(col * ds, row * ds, w, h, float(ds)), dtype=np.uint8)
        if channels == 1 and px.ndim == 3:
            px = px[:, :, 0]
        if (h, w) != (tile, tile):
            full = np.zeros((tile, tile) + px.shape[2:], np.uint8)
            full[:h, :w] = px
            px = full
        return px

    positions = [(c, r) for r in range(0, level_h, tile) for c in range(0, level_w, tile)]
    tiles = prefetch_map(lambda pos: job(*pos), positions, workers=workers, ahead=2 * max(1, workers))
    with closing(tiles) as results:
        for _, px in results:
            if progress is not None:
                progress(1)
            yield px
