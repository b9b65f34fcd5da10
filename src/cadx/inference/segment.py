"""A whole slide through a segmentation model: a pyramidal tumour-probability TIFF, memory flat in slide size.

Tissue tiles overlapping by ``overlap_px`` are read ahead by threads
(:func:`~cadx.inference.slide.read_tile_batches`), the model maps each to ``(1, H, W)``
probabilities, each map is averaged down to the output resolution and blended with a smooth window
(:mod:`cadx.preprocessing.stitch`: no seams). Finished rows go band by band to a raw ``uint8``
scratch file beside the output, from which the pyramid is written; neither the full-resolution map
nor the slide is ever held in memory.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cadx import __version__
from cadx.errors import CadxError
from cadx.inference.predictor import Predictor
from cadx.inference.slide import read_tile_batches
from cadx.io.slide import SlideReader
from cadx.io.tiff import pyramid_level_count, write_pyramid_tiff
from cadx.preprocessing.stitch import Stitcher, blend_window
from cadx.wsi.tiling import tile_slide

log = logging.getLogger(__name__)

#: What a probability-mask TIFF's ImageDescription starts with (JSON follows).
MASK_DESCRIPTION_PREFIX = "cadx segmentation: "


@dataclass
class SegmentationResult:
    """Where a slide's probability TIFF went and how it was made.

    Attributes
    ----------
    path : Path
        The pyramidal TIFF: greyscale ``uint8`` tumour probability x 255 (0 outside tissue tiles).
    size_wh : (int, int)
        Its level-0 size (the slide's size / ``downsample``, rounded up and padded so that every
        pyramid level has an exact 2x size).
    downsample : float
        Slide level-0 pixels per mask pixel.
    mpp : float
        Mask level-0 um/px (``slide.mpp * downsample``).
    n_levels : int
    attrs : dict
        What the TIFF's description records (JSON after :data:`MASK_DESCRIPTION_PREFIX`).
    seconds : dict
        ``total``, ``tiling``, ``model``, ``write``, ``tiles``, ``tiles_per_s``, ``stream_tiles_per_s``.
    """

    path: Path
    size_wh: tuple[int, int]
    downsample: float
    mpp: float
    n_levels: int
    attrs: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def segment_slide(
    slide: SlideReader,
    predictor: Predictor,
    out_path: str | Path,
    *,
    mpp: float,
    tile_size_px: int,
    overlap_px: int | None = None,
    out_downsample: int = 4,
    min_tissue: float = 0.1,
    batch_size: int = 16,
    read_workers: int | None = None,
    prefetch_batches: int = 3,
    min_level_size_px: int = 256,
    attrs: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> SegmentationResult:
    """Segment a slide's tissue into a pyramidal probability TIFF (OpenSlide, QuPath and ASAP read it).

    Parameters
    ----------
    slide : SlideReader
    predictor : Predictor
        ``predict((N, H, W, 3) uint8) -> (N, 1, H, W)`` tumour probabilities.
    out_path : path
        The TIFF to write (atomically).
    mpp, tile_size_px : float, int
        The tile specification the model was trained with.
    overlap_px : int, optional
        Overlap of neighbouring tiles at the tile resolution, blended with
        :func:`~cadx.preprocessing.stitch.blend_window` (default: a quarter of the tile).
    out_downsample : int
        Tile pixels per mask pixel: the mask is ``out_downsample`` times coarser than the tiles
        (each map is averaged over ``out_downsample`` x ``out_downsample`` blocks). Must divide
        the tile size and the overlap.
    min_tissue : float
        Minimum tissue fraction of a tile to be segmented; other pixels are 0.
    batch_size, read_workers, prefetch_batches
        See :func:`~cadx.inference.slide.read_tile_batches`.
    min_level_size_px : int
        Pyramid levels stop before the short side drops below this.
    attrs : dict, optional
        More to record in the TIFF's description (model id, ...).
    progress : callable, optional
        Called with the number of tiles done after each batch.

    Returns
    -------
    SegmentationResult

    Raises
    ------
    ValueError
        ``out_downsample`` does not divide the tile size and overlap, or the overlap is not in
        ``[0, tile_size_px // 2]``.
    CadxError
        The model's output is not an ``(N, 1, H, W)`` probability map of the tile's size.

    Examples
    --------
    >>> import tempfile, types
    >>> from cadx.io.slide import ArraySlide, open_slide
    >>> class Half:  # a stand-in segmenter: probability 0.5 everywhere
    ...     config = types.SimpleNamespace(architecture="half")
    ...     def predict(self, x):
    ...         return np.full((len(x), 1, *x.shape[1:3]), 0.5, np.float32)
    >>> slide = ArraySlide(np.full((512, 768, 3), (200, 120, 180), np.uint8), mpp=0.5, min_level_size_px=64)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     r = segment_slide(slide, Half(), f"{tmp}/mask.tif", mpp=0.5, tile_size_px=128, min_level_size_px=64)
    ...     with open_slide(r.path) as m:
    ...         levels, mpp, value = m.level_dimensions, m.mpp, m.read_region((40, 40), 0, (1, 1))[0, 0, 0]
    >>> r.downsample, levels, round(mpp, 3), int(value)
    (4.0, ((192, 128), (96, 64)), 2.0, 128)
    """
    t0 = time.perf_counter()
    k = int(out_downsample)
    overlap_px = tile_size_px // 4 if overlap_px is None else int(overlap_px)
    if k < 1 or tile_size_px % k or overlap_px % k:
        raise ValueError(f"out_downsample {k} must divide the tile size {tile_size_px} and the overlap {overlap_px}")
    if not 0 <= overlap_px <= tile_size_px // 2:
        raise ValueError(f"overlap must be in [0, {tile_size_px // 2}], got {overlap_px}")
    tiling = tile_slide(slide, target_mpp=mpp, tile_size_px=tile_size_px, overlap_px=overlap_px, min_tissue=min_tissue)
    t_tiling = time.perf_counter() - t0
    coords = tiling.coords_xy
    stride0 = tiling.grid.stride_level0_px
    tile_out, stride_out = tile_size_px // k, (tile_size_px - overlap_px) // k
    downsample = stride0 / stride_out  # slide level-0 px per mask px: tile origins land exactly on mask pixels
    w0, h0 = slide.dimensions
    need_wh = (int(np.ceil(w0 / downsample)), int(np.ceil(h0 / downsample)))
    n_levels = pyramid_level_count(need_wh, min_level_size_px=min_level_size_px)
    step = 2 ** (n_levels - 1)
    size_wh = (-(-need_wh[0] // step) * step, -(-need_wh[1] // step) * step)
    window = blend_window(tile_out, overlap_px // k)
    out_path = Path(out_path)
    out_mpp = float(slide.mpp * downsample)
    record = {"slide": slide.name, "slide_path": str(slide.path), "slide_size_wh": [int(w0), int(h0)],
              "slide_mpp": float(slide.mpp), "downsample": float(downsample), "mpp": out_mpp,
              "values": "tumour probability x 255", "model": predictor.config.architecture,
              "target_mpp": float(mpp), "tile_size_px": int(tile_size_px), "overlap_px": overlap_px,
              "out_downsample": k, "min_tissue": float(min_tissue), "level": tiling.plan.level,
              "tiles": len(coords), "cadx_version": __version__, **(attrs or {})}

    t_model = 0.0
    fd, scratch = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "r+b") as raw:
            raw.truncate(size_wh[0] * size_wh[1])

            def sink(row0: int, rows: np.ndarray) -> None:
                q = np.zeros((rows.shape[0], size_wh[0]), np.uint8)
                q[:, : rows.shape[1]] = np.nan_to_num(rows * 255.0 + 0.5, nan=0.0).clip(0, 255).astype(np.uint8)
                os.pwrite(raw.fileno(), q.tobytes(), row0 * size_wh[0])

            stitcher = Stitcher((need_wh[1], need_wh[0]), fill=0.0, sink=sink)
            reads = read_tile_batches(slide, tiling, batch_size=batch_size, read_workers=read_workers,
                                      prefetch_batches=prefetch_batches)
            with closing(reads) as results:
                for sl, tiles in results:
                    tm = time.perf_counter()
                    out = np.asarray(predictor.predict(tiles), np.float32)
                    t_model += time.perf_counter() - tm
                    maps = _check_maps(out, len(tiles), tile_size_px)
                    if k > 1:
                        maps = maps.reshape(len(maps), tile_out, k, tile_out, k).mean(axis=(2, 4))
                    for (x, y), m in zip(coords[sl], maps, strict=True):
                        stitcher.add(m, (int(y) // stride0 * stride_out, int(x) // stride0 * stride_out), window)
                    if progress is not None:
                        progress(len(tiles))
            stitcher.close()
            tw = time.perf_counter()
            write_pyramid_tiff(out_path, size_wh, _raw_render(raw.fileno(), size_wh[0]), mpp=out_mpp,
                               n_levels=n_levels, channels=1, compression="zlib",
                               description=MASK_DESCRIPTION_PREFIX + json.dumps(record))
            t_write = time.perf_counter() - tw
    finally:
        Path(scratch).unlink(missing_ok=True)
    total = time.perf_counter() - t0
    stream = total - t_tiling - t_write
    n = len(coords)
    return SegmentationResult(
        path=out_path, size_wh=size_wh, downsample=float(downsample), mpp=out_mpp, n_levels=n_levels, attrs=record,
        seconds={"total": total, "tiling": t_tiling, "model": t_model, "write": t_write, "tiles": n,
                 "tiles_per_s": n / total if total else 0.0,
                 "stream_tiles_per_s": n / stream if stream > 0 else 0.0,
                 "model_tiles_per_s": n / t_model if t_model else 0.0})


def read_mask_attrs(path: str | Path) -> dict[str, Any]:
    """What a probability TIFF written by :func:`segment_slide` records (its description's JSON).

    Raises
    ------
    InputFileError
        Not such a TIFF.
    """
    import tifffile

    from cadx.errors import InputFileError

    try:
        with tifffile.TiffFile(path) as tf:
            desc = tf.pages[0].description or ""
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise InputFileError(path, f"not a readable TIFF ({exc})") from None
    if not desc.startswith(MASK_DESCRIPTION_PREFIX):
        raise InputFileError(path, "not a cadx segmentation mask (no cadx description)")
    try:
        return dict(json.loads(desc[len(MASK_DESCRIPTION_PREFIX):]))
    except ValueError:
        raise InputFileError(path, "unreadable cadx description") from None


def _check_maps(out: np.ndarray, n: int, size: int) -> np.ndarray:
    if out.ndim != 4 or out.shape[0] != n or out.shape[1] != 1 or out.shape[2:] != (size, size):
        raise CadxError(f"the model's output {tuple(out.shape)} is not a (N, 1, {size}, {size}) probability map: "
                        "not a segmentation model")
    return out[:, 0]


def _raw_render(fd: int, width: int) -> Callable[[int, int, int, int, float], np.ndarray]:
    """A :func:`~cadx.io.tiff.write_pyramid_tiff` renderer over a row-major ``uint8`` file ``width`` wide.

    Coarser levels sample the centre pixel of each ``ds`` x ``ds`` block (reads stay one tile's
    rows, whatever the level).
    """

    def render(x0: int, y0: int, w: int, h: int, ds: float) -> np.ndarray:
        d = int(ds)
        off = d // 2
        out = np.empty((h, w), np.uint8)
        span = (w - 1) * d + 1
        for i in range(h):
            row = np.frombuffer(os.pread(fd, span, (y0 + off + i * d) * width + x0 + off), np.uint8)
            if len(row) < span:  # cannot happen for sizes divisible by ds; keep reads safe anyway
                row = np.pad(row, (0, span - len(row)))
            out[i] = row[::d]
        return out

    return render
