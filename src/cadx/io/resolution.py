"""Choosing a pyramid level for a target resolution, from the file's actual downsamples.

CAMELYON16 files carry no objective power and two scanners give 0.243 and 0.226 um/px for "40x",
so levels are chosen by microns per pixel, never by assuming 2x per level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from cadx.errors import SlideError
from cadx.io.slide import SlideReader

#: Default relative tolerance between a level's mpp and the target mpp.
DEFAULT_MPP_TOLERANCE = 0.1


@dataclass(frozen=True)
class ReadPlan:
    """How to obtain ``out_size_px`` square tiles at ``target_mpp`` from a slide.

    Attributes
    ----------
    level : int
        Level to read from.
    level_downsample : float
        That level's downsample, read from the file.
    level_mpp : float
        That level's resolution in um/px.
    target_mpp : float
        Resolution asked for.
    out_size_px : int
        Side of the tile handed to the caller.
    read_size_px : int
        Side of the region read at ``level``; equal to ``out_size_px`` when the level matches the
        target within tolerance, larger when a finer level is read and resized down.
    """

    level: int
    level_downsample: float
    level_mpp: float
    target_mpp: float
    out_size_px: int
    read_size_px: int

    @property
    def needs_resize(self) -> bool:
        """True when tiles are resized from ``read_size_px`` to ``out_size_px``."""
        return self.read_size_px != self.out_size_px

    @property
    def size_level0_px(self) -> int:
        """Side of one tile's footprint in level-0 pixels."""
        return int(round(self.read_size_px * self.level_downsample))

    @property
    def effective_mpp(self) -> float:
        """The resolution the tiles actually have after any resize."""
        return self.level_mpp * self.read_size_px / self.out_size_px

    def to_dict(self) -> dict[str, float | int]:
        """Plain values, for HDF5 attributes and JSON."""
        return asdict(self)


def plan_read(
    slide: SlideReader,
    target_mpp: float,
    out_size_px: int,
    *,
    tolerance: float = DEFAULT_MPP_TOLERANCE,
) -> ReadPlan:
    """Pick the level for ``target_mpp``.

    The coarsest level whose mpp is within ``tolerance`` (relative) of the target is read as is.
    When none matches, the next finer level is read over the same physical area and resized.

    Parameters
    ----------
    slide : SlideReader
        A slide with known mpp.
    target_mpp : float
        Wanted resolution in microns per pixel.
    out_size_px : int
        Tile side at the target resolution.
    tolerance : float
        Relative mismatch accepted without resizing.

    Returns
    -------
    ReadPlan

    Raises
    ------
    SlideError
        If ``target_mpp`` is finer than level 0 beyond the tolerance (cadx never upsamples).
    ValueError
        If ``target_mpp`` or ``out_size_px`` is not positive.

    Examples
    --------
    >>> import numpy as np
    >>> from cadx.io.slide import ArraySlide
    >>> s = ArraySlide(np.zeros((4096, 4096, 3), np.uint8), mpp=0.243, min_level_size_px=512)
    >>> p = plan_read(s, 0.5, 256)
    >>> p.level, p.read_size_px, round(p.level_mpp, 3)
    (1, 256, 0.486)
    >>> p = plan_read(s, 1.0, 256)              # level 2 (0.972 um/px) is within 10%
    >>> p.level, p.read_size_px
    (2, 256)
    >>> p = plan_read(s, 0.7, 256)              # no level matches: read level 1 and resize
    >>> p.level, p.read_size_px
    (1, 369)
    """
    if not target_mpp > 0:
        raise ValueError(f"target_mpp must be positive, got {target_mpp}")
    if out_size_px <= 0:
        raise ValueError(f"out_size_px must be positive, got {out_size_px}")
    mpps = [slide.level_mpp(level) for level in range(slide.level_count)]
    matching = [lv for lv, m in enumerate(mpps) if abs(m - target_mpp) <= tolerance * target_mpp]
    if matching:
        level = max(matching, key=lambda lv: mpps[lv])
        read = out_size_px
    else:
        finer = [lv for lv, m in enumerate(mpps) if m < target_mpp]
        if not finer:
            raise SlideError(
                slide.path,
                f"target {target_mpp:g} um/px is finer than level 0 ({mpps[0]:.4g} um/px); cadx does not upsample",
            )
        level = max(finer, key=lambda lv: mpps[lv])
        read = int(round(out_size_px * target_mpp / mpps[level]))
    return ReadPlan(
        level=level,
        level_downsample=float(slide.level_downsamples[level]),
        level_mpp=float(mpps[level]),
        target_mpp=float(target_mpp),
        out_size_px=int(out_size_px),
        read_size_px=int(read),
    )


def read_tile(slide: SlideReader, location_xy: Sequence[int], plan: ReadPlan) -> np.ndarray:
    """Read one square tile following ``plan``.

    Parameters
    ----------
    slide : SlideReader
    location_xy : (int, int)
        Top-left corner in level-0 pixels.
    plan : ReadPlan

    Returns
    -------
    ndarray of uint8, shape (out_size_px, out_size_px, 3)
    """
    tile = slide.read_region(location_xy, plan.level, (plan.read_size_px, plan.read_size_px))
    if plan.needs_resize:
        from PIL import Image

        tile = np.asarray(
            Image.fromarray(tile).resize((plan.out_size_px, plan.out_size_px), Image.Resampling.BILINEAR)
        )
    return tile


def read_overview(slide: SlideReader, target_mpp: float) -> tuple[np.ndarray, float]:
    """Read the whole slide at about ``target_mpp`` (for tissue masks), never finer than level 0.

    Uses :meth:`SlideReader.read_resampled`: the coarsest level not coarser than the target is
    decoded in strips and box-filtered, so memory is bounded by the overview's size, and a slide
    without a small enough level is refused with a :class:`~cadx.errors.SlideError`.

    Parameters
    ----------
    slide : SlideReader
        A slide with known mpp.
    target_mpp : float
        Wanted resolution in um/px; a value finer than level 0 gives level 0's resolution.

    Returns
    -------
    image : ndarray of uint8, shape (H, W, 3)
    mpp : float
        The overview's actual resolution (um/px), computed from its integer size.

    Examples
    --------
    >>> import numpy as np
    >>> from cadx.io.slide import ArraySlide
    >>> img, mpp = read_overview(ArraySlide(np.zeros((600, 1000, 3), np.uint8), mpp=0.25), 16.0)
    >>> img.shape, round(mpp, 3)
    ((9, 16, 3), 16.146)
    """
    if not target_mpp > 0:
        raise ValueError(f"target_mpp must be positive, got {target_mpp}")
    w0, h0 = slide.dimensions
    ds_wanted = max(target_mpp / slide.mpp, 1.0)
    out_w, out_h = max(1, int(round(w0 / ds_wanted))), max(1, int(round(h0 / ds_wanted)))
    image = slide.read_resampled((out_w, out_h))
    return image, slide.mpp * (w0 / out_w + h0 / out_h) / 2.0


def read_tile_with_context(
    slide: SlideReader, location_xy: Sequence[int], plan: ReadPlan, context_plan: ReadPlan
) -> np.ndarray:
    """A tile and, stacked behind it, a coarser tile with the same centre (multi-scale input).

    Returns
    -------
    ndarray of uint8, shape (out_size_px, out_size_px, 6)
        Channels 0-2 the tile at ``plan``, channels 3-5 the context at ``context_plan`` (parts
        beyond the slide's edge are white).
    """
    x, y = (int(v) for v in location_xy)
    cx, cy = x + plan.size_level0_px // 2, y + plan.size_level0_px // 2
    half = context_plan.size_level0_px // 2
    context = read_tile(slide, (cx - half, cy - half), context_plan)
    return np.concatenate([read_tile(slide, (x, y), plan), context], axis=2)
