"""One slide-reader interface with two backends: OpenSlide files and in-memory arrays.

Positions at this API are level-0 pixels ``(x, y)`` and sizes ``(width, height)``, as in
openslide-python. Arrays returned are ``(rows, cols, 3)`` RGB ``uint8``. Resolution is explicit:
each level's downsample is read from the file, never assumed to be a power of two.

Every read sizes its buffer from what it returns: whole-slide overviews are decoded in strips from
the coarsest level that suffices, and a file whose smallest level is too large to decode, whose
size or resolution is implausible, or which is not a regular file is refused with a
:class:`~cadx.errors.SlideError` (limits in :mod:`cadx.io.limits`).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import MissingMppError, SlideError
from cadx.io.limits import InputLimits, check_mpp, input_limits, require_regular_file

#: File suffixes opened as plain images (array backend) rather than through OpenSlide.
PLAIN_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})

#: Value used for pixels outside the slide (glass is white).
BACKGROUND_RGB = (255, 255, 255)

#: Pixels of one strip read while building a whole-slide overview (16 MiB of RGBA).
OVERVIEW_STRIP_PX = 2**22


class SlideReader(abc.ABC):
    """Read-only access to a pyramidal image.

    Subclasses fill in :attr:`level_dimensions`, :attr:`level_downsamples`, :attr:`mpp_xy_or_none`,
    :attr:`vendor` and :meth:`_read_level`; the checks and conversions live here once.
    """

    path: Path
    vendor: str
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp_xy_or_none: tuple[float, float] | None
    properties: dict[str, str]
    _limits: InputLimits | None = None

    @property
    def limits(self) -> InputLimits:
        """Sizes beyond which reads are refused: given at opening, else the ``CADX_MAX_*`` environment."""
        return self._limits if self._limits is not None else input_limits()

    @property
    def name(self) -> str:
        """Slide name: the file name without its suffix (``tumor_001``)."""
        return self.path.stem

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self.level_dimensions)

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 size ``(width, height)`` in pixels."""
        return self.level_dimensions[0]

    @property
    def mpp_xy(self) -> tuple[float, float]:
        """Level-0 resolution ``(x, y)`` in microns per pixel.

        Raises
        ------
        MissingMppError
            If the file has none and none was given to :func:`open_slide`.
        """
        if self.mpp_xy_or_none is None:
            raise MissingMppError(self.path)
        return self.mpp_xy_or_none

    @property
    def mpp(self) -> float:
        """Level-0 resolution in microns per pixel (mean of x and y)."""
        mx, my = self.mpp_xy
        return (mx + my) / 2.0

    def level_mpp(self, level: int) -> float:
        """Resolution of ``level`` in microns per pixel, from the file's own downsample."""
        return self.mpp * self.level_downsamples[self.check_level(level)]

    def read_region(
        self, location_xy: Sequence[int], level: int, size_wh: Sequence[int]
    ) -> np.ndarray:
        """Read an RGB region.

        Parameters
        ----------
        location_xy : (int, int)
            Top-left corner in **level-0** pixels.
        level : int
            Pyramid level to read from.
        size_wh : (int, int)
            Output size ``(width, height)`` in pixels **of that level**.

        Returns
        -------
        ndarray of uint8, shape (height, width, 3)
            RGB pixels. Parts outside the slide are white.

        Raises
        ------
        SlideError
            If the region lies entirely outside the slide, the size is not positive or larger than
            ``limits.max_read_px``, or the file cannot be decoded there (a truncated or corrupt file).
        """
        level = self.check_level(level)
        x, y = (int(v) for v in location_xy)
        w, h = (int(v) for v in size_wh)
        if w <= 0 or h <= 0:
            raise SlideError(self.path, f"region size must be positive, got (width, height)=({w}, {h})")
        if w * h > self.limits.max_read_px:
            raise SlideError(
                self.path,
                f"a region of {w}x{h} px is more than the {self.limits.max_read_px:,} px cadx reads at once "
                "(CADX_MAX_READ_PX)",
            )
        ds = self.level_downsamples[level]
        w0, h0 = self.dimensions
        if x >= w0 or y >= h0 or x + w * ds <= 0 or y + h * ds <= 0:
            raise SlideError(
                self.path,
                f"region at level-0 (x, y)=({x}, {y}) of size {w}x{h} at level {level} lies outside "
                f"the slide ({w0}x{h0} px at level 0)",
            )
        out = self._read_level((x, y), level, (w, h))
        if out.shape != (h, w, 3) or out.dtype != np.uint8:  # pragma: no cover - backend bug
            raise AssertionError(f"backend returned {out.shape} {out.dtype}, wanted {(h, w, 3)} uint8")
        return out

    def get_thumbnail(self, max_size_wh: Sequence[int]) -> np.ndarray:
        """An RGB overview no larger than ``max_size_wh``, aspect ratio kept (see :meth:`read_resampled`)."""
        w0, h0 = self.dimensions
        scale = max(w0 / max_size_wh[0], h0 / max_size_wh[1], 1.0)
        return self.read_resampled((max(1, round(w0 / scale)), max(1, round(h0 / scale))))

    def read_resampled(self, size_wh: Sequence[int]) -> np.ndarray:
        """The whole slide resampled to ``size_wh`` by area averaging (thumbnails, tissue overviews).

        The coarsest level at least as large as ``size_wh`` is decoded in horizontal strips of
        about :data:`OVERVIEW_STRIP_PX` pixels, each box-filtered into its rows of the output, so
        memory is bounded by the output plus one strip, whatever the slide's size.

        Parameters
        ----------
        size_wh : (int, int)
            Output ``(width, height)``; never larger than level 0 (cadx does not upsample).

        Returns
        -------
        ndarray of uint8, shape (height, width, 3)

        Raises
        ------
        SlideError
            If the output, or the level it would be read from, holds more than
            ``limits.max_read_px`` pixels (a large file without a pyramid).

        Examples
        --------
        >>> import numpy as np
        >>> s = ArraySlide(np.full((1000, 600, 3), 200, np.uint8), mpp=0.5)
        >>> s.read_resampled((60, 100)).shape
        (100, 60, 3)
        """
        from PIL import Image

        out_w, out_h = (int(v) for v in size_wh)
        w0, h0 = self.dimensions
        if not (0 < out_w <= w0 and 0 < out_h <= h0):
            raise ValueError(f"size_wh must be within 1..{w0} x 1..{h0} px (level 0), got {out_w}x{out_h}")
        limit = self.limits.max_read_px
        if out_w * out_h > limit:
            raise SlideError(self.path, f"an overview of {out_w}x{out_h} px is more than the {limit:,} px cadx "
                                        "reads at once (CADX_MAX_READ_PX); ask for a coarser one")
        level = self.best_level_for_downsample(min(w0 / out_w, h0 / out_h))
        lw, lh = self.level_dimensions[level]
        if lw * lh > limit:
            where = ("the file has no pyramid, only its full-resolution level" if self.level_count == 1
                     else f"its coarsest usable level ({level}) is")
            raise SlideError(
                self.path,
                f"{where} {lw}x{lh} px, more than the {limit:,} px cadx decodes for an overview "
                "(CADX_MAX_READ_PX); convert it to a pyramidal TIFF (e.g. `vips tiffsave IN OUT.tif --tile "
                "--pyramid`)",
            )
        ds = self.level_downsamples[level]
        sx, sy = lw / out_w, lh / out_h  # level pixels per output pixel
        rows_per_strip = max(1, int(OVERVIEW_STRIP_PX / (lw * sy)))
        out = np.empty((out_h, out_w, 3), np.uint8)
        for r0 in range(0, out_h, rows_per_strip):
            r1 = min(out_h, r0 + rows_per_strip)
            y0, y1 = int(math.floor(r0 * sy)), min(lh, int(math.ceil(r1 * sy)))
            # ceil: a level-0 y that maps back onto level row y0 despite float downsamples.
            strip = self.read_region((0, int(math.ceil(y0 * ds))), level, (lw, y1 - y0))
            if (sx, sy) == (1.0, 1.0):
                out[r0:r1] = strip
            else:
                box = (0.0, r0 * sy - y0, float(lw), r1 * sy - y0)
                out[r0:r1] = np.asarray(Image.fromarray(strip).resize((out_w, r1 - r0), Image.Resampling.BOX, box))
        return out

    def best_level_for_downsample(self, downsample: float) -> int:
        """The coarsest level whose downsample does not exceed ``downsample`` (a tiny tolerance)."""
        best = 0
        for level, ds in enumerate(self.level_downsamples):
            if ds <= downsample * (1 + 1e-6):
                best = level
        return best

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the file handle (no-op for arrays)."""

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mpp = "unknown" if self.mpp_xy_or_none is None else f"{self.mpp:.4g}"
        return (
            f"{type(self).__name__}({str(self.path)!r}, levels={self.level_count}, "
            f"dimensions={self.dimensions}, mpp={mpp})"
        )

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary: levels, dimensions, downsamples, mpp, vendor."""
        return {
            "path": str(self.path),
            "name": self.name,
            "vendor": self.vendor,
            "level_count": self.level_count,
            "level_dimensions": [list(d) for d in self.level_dimensions],
            "level_downsamples": list(self.level_downsamples),
            "mpp_x": None if self.mpp_xy_or_none is None else self.mpp_xy_or_none[0],
            "mpp_y": None if self.mpp_xy_or_none is None else self.mpp_xy_or_none[1],
            "objective_power": self.properties.get("openslide.objective-power"),
        }

    def check_level(self, level: int) -> int:
        """Return ``level`` as an int, or raise :class:`SlideError` if the slide lacks it."""
        if not 0 <= int(level) < self.level_count:
            raise SlideError(self.path, f"level {level} does not exist (the slide has {self.level_count})")
        return int(level)

    @abc.abstractmethod
    def _read_level(self, location_xy: tuple[int, int], level: int, size_wh: tuple[int, int]) -> np.ndarray:
        """Backend read; arguments already validated."""


class OpenSlideReader(SlideReader):
    """A slide read through OpenSlide (TIFF, SVS, NDPI, MRXS, ...).

    Parameters
    ----------
    path : str or Path
        The slide file.
    mpp : float, optional
        Level-0 resolution to use when the file records none (or to override it).
    limits : InputLimits, optional
        Sizes beyond which reads are refused (default: :func:`~cadx.io.limits.input_limits`).

    Raises
    ------
    SlideError
        Not a regular file, not a slide, or implausible: a side beyond ``limits.max_side_px`` or a
        resolution outside :data:`~cadx.io.limits.MPP_RANGE_UM` (unless ``mpp`` is given).
    """

    def __init__(self, path: str | Path, *, mpp: float | None = None, limits: InputLimits | None = None) -> None:
        import openslide

        self.path = require_regular_file(path, SlideError)
        self._limits = limits
        try:
            self._osr = openslide.OpenSlide(str(self.path))
        except openslide.OpenSlideUnsupportedFormatError:
            raise SlideError(self.path, "not a slide format OpenSlide can read") from None
        except openslide.OpenSlideError as exc:
            raise SlideError(self.path, f"cannot open slide ({exc})") from None
        self.properties = dict(self._osr.properties)
        self.vendor = self.properties.get("openslide.vendor", "unknown")
        self.level_dimensions = tuple(tuple(int(v) for v in d) for d in self._osr.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in self._osr.level_downsamples)
        try:
            _check_dimensions(self.path, self.level_dimensions, limits or input_limits())
            self.mpp_xy_or_none = _mpp_from_properties(self.properties, mpp, self.path)
        except SlideError:
            self._osr.close()
            raise

    def _read_level(self, location_xy: tuple[int, int], level: int, size_wh: tuple[int, int]) -> np.ndarray:
        import openslide

        try:
            rgba = np.asarray(self._osr.read_region(location_xy, level, size_wh))
        except openslide.OpenSlideError as exc:
            raise SlideError(self.path, f"cannot decode pixels (truncated or corrupt file?): {exc}") from None
        return _rgba_over_white(rgba)

    def close(self) -> None:
        self._osr.close()


class ArraySlide(SlideReader):
    """An in-memory slide with the same API as :class:`OpenSlideReader`.

    Used for plain images (PNG/JPEG), masks and tests. Coarser levels are built by 2x2 box
    averaging until the short side drops below ``min_level_size_px``.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W, 3) or (H, W)
        Level-0 pixels; greyscale is expanded to RGB.
    mpp : float or (float, float), optional
        Level-0 resolution in microns per pixel.
    path : str or Path
        A name for messages and :attr:`name`.
    min_level_size_px : int
        Stop adding levels when the next one would be smaller than this.
    limits : InputLimits, optional
        Sizes beyond which reads are refused (default: :func:`~cadx.io.limits.input_limits`).

    Examples
    --------
    >>> import numpy as np
    >>> s = ArraySlide(np.zeros((600, 1000, 3), np.uint8), mpp=0.5, min_level_size_px=256)
    >>> s.level_dimensions
    ((1000, 600), (500, 300))
    >>> s.read_region((10, 20), 0, (4, 3)).shape
    (3, 4, 3)
    """

    def __init__(
        self,
        image: np.ndarray,
        *,
        mpp: float | tuple[float, float] | None = None,
        path: str | Path = "array",
        min_level_size_px: int = 512,
        limits: InputLimits | None = None,
    ) -> None:
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
            raise SlideError(path, f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        image = image[:, :, :3]
        self.path = Path(path)
        self.vendor = "array"
        self.properties = {}
        self._limits = limits
        if mpp is None:
            self.mpp_xy_or_none = None
        else:
            mx, my = (mpp, mpp) if isinstance(mpp, (int, float)) else mpp
            self.mpp_xy_or_none = (check_mpp(mx, path, source="given", error=SlideError),
                                   check_mpp(my, path, source="given", error=SlideError))
        levels = [np.ascontiguousarray(image)]
        while min(levels[-1].shape[:2]) // 2 >= min_level_size_px:
            levels.append(_halve(levels[-1]))
        self._levels = levels
        h0, w0 = image.shape[:2]
        self.level_dimensions = tuple((lv.shape[1], lv.shape[0]) for lv in levels)
        self.level_downsamples = tuple(
            (w0 / lv.shape[1] + h0 / lv.shape[0]) / 2.0 for lv in levels
        )

    def _read_level(self, location_xy: tuple[int, int], level: int, size_wh: tuple[int, int]) -> np.ndarray:
        arr = self._levels[level]
        ds = self.level_downsamples[level]
        w, h = size_wh
        col0 = int(math.floor(location_xy[0] / ds))
        row0 = int(math.floor(location_xy[1] / ds))
        out = np.empty((h, w, 3), np.uint8)
        out[:] = BACKGROUND_RGB
        r0, c0 = max(row0, 0), max(col0, 0)
        r1, c1 = min(row0 + h, arr.shape[0]), min(col0 + w, arr.shape[1])
        if r1 > r0 and c1 > c0:
            out[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = arr[r0:r1, c0:c1]
        return out


def open_slide(path: str | Path, *, mpp: float | None = None, limits: InputLimits | None = None) -> SlideReader:
    """Open a whole-slide image or a plain image with one API.

    Parameters
    ----------
    path : str or Path
        A slide (any format OpenSlide reads: TIFF, SVS, NDPI, MRXS, ...) or a PNG/JPEG image.
    mpp : float, optional
        Level-0 microns per pixel, for files that do not record it (plain images, some TIFFs).
        When given it overrides the file's value.
    limits : InputLimits, optional
        Sizes beyond which the file or a read is refused (default:
        :func:`~cadx.io.limits.input_limits`, i.e. the ``CADX_MAX_*`` environment variables).

    Returns
    -------
    SlideReader

    Raises
    ------
    SlideError
        If the path does not exist, is not a regular file (a named pipe would block), is not a
        readable slide, or is implausible: a side beyond ``limits.max_side_px``, a plain image
        beyond ``limits.max_image_px``, a resolution outside 0.01-100 um/px.

    Examples
    --------
    >>> import cadx
    >>> with cadx.open_slide("tests/data/cmu_small_region.svs") as s:  # doctest: +SKIP
    ...     s.level_count, s.mpp
    (1, 0.499)
    """
    path = require_regular_file(path, SlideError)
    if path.suffix.lower() in PLAIN_IMAGE_SUFFIXES:
        image = _read_plain_image(path, limits or input_limits())
        return ArraySlide(image, mpp=mpp, path=path, limits=limits)
    return OpenSlideReader(path, mpp=mpp, limits=limits)


def _read_plain_image(path: Path, limits: InputLimits) -> np.ndarray:
    """Decode a PNG/JPEG/BMP as RGB after checking its header's size against ``limits``."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow warns above ~89 Mpx; cadx's own limit below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                _check_dimensions(path, (im.size,), limits)
                w, h = im.size
                if w * h > limits.max_image_px:
                    raise SlideError(
                        path,
                        f"a plain image of {w}x{h} px is more than the {limits.max_image_px:,} px cadx decodes "
                        "whole (CADX_MAX_IMAGE_PX); convert it to a pyramidal TIFF (e.g. `vips tiffsave IN "
                        "OUT.tif --tile --pyramid`)",
                    )
                return np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError as exc:
        raise SlideError(path, f"refused as a decompression bomb ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise SlideError(path, f"not a readable image ({exc})") from None


def _check_dimensions(path: Path, level_dimensions: Sequence[Sequence[int]], limits: InputLimits) -> None:
    """Raise :class:`SlideError` for a level-0 size that is empty or beyond ``limits.max_side_px``."""
    w, h = (int(v) for v in level_dimensions[0])
    if w <= 0 or h <= 0:
        raise SlideError(path, f"the file records an empty image ({w}x{h} px)")
    if max(w, h) > limits.max_side_px:
        raise SlideError(
            path,
            f"the file claims {w}x{h} px, beyond the plausible {limits.max_side_px:,} px per side "
            "(CADX_MAX_SLIDE_SIDE_PX)",
        )


def _mpp_from_properties(props: dict[str, str], override: float | None, path: Path) -> tuple[float, float] | None:
    """Level-0 ``(mpp_x, mpp_y)``: ``override`` if given, else the file's, else None (not recorded)."""
    if override is not None:
        v = check_mpp(override, path, source="given", error=SlideError)
        return (v, v)
    try:
        mx = float(props["openslide.mpp-x"])
        my = float(props["openslide.mpp-y"])
    except (KeyError, ValueError):
        return None
    if not (mx > 0 and my > 0):  # 0 or missing: no resolution recorded
        return None
    return (check_mpp(mx, path, source="recorded in the file", error=SlideError),
            check_mpp(my, path, source="recorded in the file", error=SlideError))


def _rgba_over_white(rgba: np.ndarray) -> np.ndarray:
    """Composite openslide-python's (non-premultiplied) RGBA over white."""
    rgb = rgba[:, :, :3]
    alpha = rgba[:, :, 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    # uint16 is enough: 255 * a + 255 * (255 - a) + 127 <= 65152.
    a = alpha[:, :, None].astype(np.uint16)
    return ((rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def _halve(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    blocks = image[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).astype(np.uint16)
    return ((blocks.sum(axis=(1, 3)) + 2) // 4).astype(np.uint8)
