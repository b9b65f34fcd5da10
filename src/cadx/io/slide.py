"""One slide-reader interface with two backends: OpenSlide files and in-memory arrays.

Positions at this API are level-0 pixels ``(x, y)`` and sizes ``(width, height)``, as in
openslide-python. Arrays returned are ``(rows, cols, 3)`` RGB ``uint8``. Resolution is explicit:
each level's downsample is read from the file, never assumed to be a power of two.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import MissingMppError, SlideError

#: File suffixes opened as plain images (array backend) rather than through OpenSlide.
PLAIN_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})

#: Value used for pixels outside the slide (glass is white).
BACKGROUND_RGB = (255, 255, 255)


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
            If the region lies entirely outside the slide, the size is not positive, or the file
            cannot be decoded there (a truncated or corrupt file).
        """
        level = self.check_level(level)
        x, y = (int(v) for v in location_xy)
        w, h = (int(v) for v in size_wh)
        if w <= 0 or h <= 0:
            raise SlideError(self.path, f"region size must be positive, got (width, height)=({w}, {h})")
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
        """An RGB overview no larger than ``max_size_wh``, aspect ratio kept.

        Reads the coarsest level that is still at least as large as asked, then resizes with
        area averaging, so memory is bounded by the thumbnail, not the slide.
        """
        from PIL import Image

        w0, h0 = self.dimensions
        scale = max(w0 / max_size_wh[0], h0 / max_size_wh[1], 1.0)
        target_wh = (max(1, round(w0 / scale)), max(1, round(h0 / scale)))
        level = self.best_level_for_downsample(scale)
        lw, lh = self.level_dimensions[level]
        img = self.read_region((0, 0), level, (lw, lh))
        if (lw, lh) == target_wh:
            return img
        return np.asarray(Image.fromarray(img).resize(target_wh, Image.Resampling.BOX))

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
    """

    def __init__(self, path: str | Path, *, mpp: float | None = None) -> None:
        import openslide

        self.path = Path(path)
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
        self.mpp_xy_or_none = _mpp_from_properties(self.properties, mpp)

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
        if mpp is None:
            self.mpp_xy_or_none = None
        elif isinstance(mpp, (int, float)):
            self.mpp_xy_or_none = (float(mpp), float(mpp))
        else:
            self.mpp_xy_or_none = (float(mpp[0]), float(mpp[1]))
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


def open_slide(path: str | Path, *, mpp: float | None = None) -> SlideReader:
    """Open a whole-slide image or a plain image with one API.

    Parameters
    ----------
    path : str or Path
        A slide (any format OpenSlide reads: TIFF, SVS, NDPI, MRXS, ...) or a PNG/JPEG image.
    mpp : float, optional
        Level-0 microns per pixel, for files that do not record it (plain images, some TIFFs).
        When given it overrides the file's value.

    Returns
    -------
    SlideReader

    Raises
    ------
    SlideError
        If the path does not exist or is not a readable slide.

    Examples
    --------
    >>> import cadx
    >>> with cadx.open_slide("tests/data/cmu_small_region.svs") as s:  # doctest: +SKIP
    ...     s.level_count, s.mpp
    (1, 0.499)
    """
    path = Path(path)
    if not path.exists():
        raise SlideError(path, "no such file")
    if path.is_dir():
        raise SlideError(path, "is a directory, not a slide file")
    if path.suffix.lower() in PLAIN_IMAGE_SUFFIXES:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                image = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise SlideError(path, f"not a readable image ({exc})") from None
        return ArraySlide(image, mpp=mpp, path=path)
    return OpenSlideReader(path, mpp=mpp)


def _mpp_from_properties(props: dict[str, str], override: float | None) -> tuple[float, float] | None:
    if override is not None:
        if not override > 0:
            raise ValueError(f"mpp must be positive, got {override}")
        return (float(override), float(override))
    try:
        mx = float(props["openslide.mpp-x"])
        my = float(props["openslide.mpp-y"])
    except (KeyError, ValueError):
        return None
    if not (mx > 0 and my > 0):
        return None
    return (mx, my)


def _rgba_over_white(rgba: np.ndarray) -> np.ndarray:
    """Composite openslide-python's (non-premultiplied) RGBA over white."""
    rgb = rgba[:, :, :3]
    alpha = rgba[:, :, 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha[:, :, None].astype(np.uint32)
    return ((rgb.astype(np.uint32) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def _halve(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    blocks = image[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).astype(np.uint16)
    return ((blocks.sum(axis=(1, 3)) + 2) // 4).astype(np.uint8)
