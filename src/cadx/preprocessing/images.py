"""Photographs (dermoscopy) to model input: crop the dermoscope's dark border, fix the colour, resize.

All functions take and return ``(H, W, 3)`` uint8 RGB arrays, rows top to bottom. The usual ISIC
recipe, :class:`ImagePreprocess`, chains them: crop the black vignette, resize the short side,
Shades-of-Gray colour constancy, centre crop to a square.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from cadx.errors import ConfigError
from cadx.preprocessing.colour import shades_of_gray


def crop_dark_border(img: np.ndarray, *, threshold: int = 30, min_fraction: float = 0.02) -> np.ndarray:
    """Crop a dermoscope's dark vignette: keep the bounding box of the rows and columns with content.

    A row (column) has content when more than ``min_fraction`` of its pixels are brighter than
    ``threshold`` (mean of R, G, B), so a few bright specks (noise, a hair's highlight) in a black
    corner do not count. For a bright disc of radius ``R`` on black in a picture ``W`` px wide the
    box is the disc's, less the rim where the disc's chord is shorter than ``min_fraction * W``:
    about ``(min_fraction * W) ** 2 / (8 * R)`` px (0.1 px for a 1000 px disc filling the picture).
    Dark lesions in the middle of the picture do not matter: their rows also hold skin.

    Parameters
    ----------
    img : numpy.ndarray
        ``(H, W, 3)`` uint8 RGB.
    threshold : int
        Brightness (0-255) above which a pixel is content.
    min_fraction : float
        Fraction of a row (column) that must be content.

    Returns
    -------
    numpy.ndarray
        A view ``img[r0:r1, c0:c1]``; ``img`` itself when nothing is cropped or when no row has
        content (an all-dark picture is left for the caller to judge).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((10, 12, 3), np.uint8)
    >>> img[2:8, 3:11] = 200
    >>> crop_dark_border(img).shape
    (6, 8, 3)
    """
    _check_rgb(img)
    # mean over RGB > threshold, as an integer sum > 3 * threshold (the same test, ~15x faster)
    total = img[..., 0].astype(np.uint16)
    total += img[..., 1]
    total += img[..., 2]
    bright = total > 3 * threshold
    rows = np.flatnonzero(bright.mean(axis=1) > min_fraction)
    cols = np.flatnonzero(bright.mean(axis=0) > min_fraction)
    if rows.size == 0 or cols.size == 0:
        return img
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if (r0, r1, c0, c1) == (0, img.shape[0], 0, img.shape[1]):
        return img
    return img[r0:r1, c0:c1]


def resize(img: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """Resize to ``shape_hw`` = ``(rows, cols)`` with Pillow's bicubic filter (antialiased when shrinking).

    Parameters
    ----------
    img : numpy.ndarray
        ``(H, W, 3)`` uint8 RGB or ``(H, W)`` uint8.
    shape_hw : tuple of int
        Output rows and columns, each >= 1.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols, 3)`` (or ``(rows, cols)``) uint8; ``img`` itself if the shape already matches.

    Examples
    --------
    >>> import numpy as np
    >>> resize(np.full((4, 6, 3), 9, np.uint8), (2, 3)).tolist()[0][0]
    [9, 9, 9]
    """
    from PIL import Image

    rows, cols = (int(v) for v in shape_hw)
    if rows < 1 or cols < 1:
        raise ValueError(f"output shape must be positive, got {shape_hw}")
    if img.shape[:2] == (rows, cols):
        return img
    if img.dtype != np.uint8:
        raise ValueError(f"expected uint8, got {img.dtype}")
    out = Image.fromarray(np.ascontiguousarray(img)).resize((cols, rows), Image.Resampling.BICUBIC)
    return np.asarray(out)


def resize_short_side(img: np.ndarray, size_px: int) -> np.ndarray:
    """Resize so the shorter side is ``size_px``, keeping the aspect ratio (long side rounded).

    Examples
    --------
    >>> import numpy as np
    >>> resize_short_side(np.zeros((450, 600, 3), np.uint8), 224).shape
    (224, 299, 3)
    """
    _check_rgb(img)
    h, w = img.shape[:2]
    scale = size_px / min(h, w)
    return resize(img, (max(size_px, round(h * scale)), max(size_px, round(w * scale))))


def center_crop(img: np.ndarray, size_px: int) -> np.ndarray:
    """The central ``size_px`` x ``size_px`` square (offsets rounded down).

    Raises
    ------
    ValueError
        If the image is smaller than ``size_px`` on either side (resize it first).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.arange(5 * 4).reshape(5, 4, 1).repeat(3, axis=2).astype(np.uint8)
    >>> center_crop(img, 2)[:, :, 0].tolist()
    [[5, 6], [9, 10]]
    """
    _check_rgb(img)
    h, w = img.shape[:2]
    if h < size_px or w < size_px:
        raise ValueError(f"image of {h}x{w} px is smaller than the {size_px} px crop")
    r0, c0 = (h - size_px) // 2, (w - size_px) // 2
    return img[r0:r0 + size_px, c0:c0 + size_px]


@dataclass(frozen=True)
class ImagePreprocess:
    """Photograph to square model input: crop the dark border, resize, colour constancy, centre crop.

    Steps in order: :func:`crop_dark_border` (if ``crop_border``), :func:`resize_short_side` to
    ``size_px``, :func:`~cadx.preprocessing.colour.shades_of_gray` with norm ``p`` (if
    ``colour_constancy``; after resizing, so it costs the same for any camera), :func:`center_crop`.
    Saved in checkpoints as :meth:`to_dict` so prediction repeats exactly what training did.

    Parameters
    ----------
    size_px : int
        Output side.
    colour_constancy : bool
        Apply Shades of Gray.
    crop_border : bool
        Crop the dermoscope's dark vignette.
    p : float
        Shades-of-Gray norm (6: the ISIC default).
    border_threshold : int
        Brightness below which a pixel belongs to the border (see :func:`crop_dark_border`).

    Examples
    --------
    >>> import numpy as np
    >>> prep = ImagePreprocess(size_px=32)
    >>> out = prep(np.full((60, 80, 3), (180, 120, 100), np.uint8))
    >>> out.shape, out.dtype, out[0, 0].tolist()
    ((32, 32, 3), dtype('uint8'), [138, 138, 138])
    >>> ImagePreprocess.from_dict(prep.to_dict()) == prep
    True
    """

    size_px: int = 224
    colour_constancy: bool = True
    crop_border: bool = True
    p: float = 6.0
    border_threshold: int = 30

    def __post_init__(self) -> None:
        if int(self.size_px) != self.size_px or self.size_px < 1:
            raise ConfigError(f"image preprocessing: size_px must be a positive integer, got {self.size_px!r}")
        if not (isinstance(self.p, (int, float)) and self.p >= 1):
            raise ConfigError(f"image preprocessing: p must be a number >= 1 (or inf), got {self.p!r}")

    def __call__(self, img: np.ndarray) -> np.ndarray:
        _check_rgb(img)
        if self.crop_border:
            img = crop_dark_border(img, threshold=self.border_threshold)
        img = resize_short_side(img, self.size_px)
        if self.colour_constancy:
            img = shades_of_gray(img, p=self.p)
        return np.ascontiguousarray(center_crop(img, self.size_px))

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (``p = inf`` is written as the string ``"inf"``)."""
        d = asdict(self)
        d["p"] = "inf" if math.isinf(self.p) else float(self.p)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImagePreprocess:
        """Inverse of :meth:`to_dict`; an unknown key or a bad value is a :class:`~cadx.errors.ConfigError`."""
        if not isinstance(d, dict):
            raise ConfigError(f"image preprocessing: expected a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(
                f"image preprocessing: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values = dict(d)
        if "p" in values:
            try:
                values["p"] = float(values["p"])
            except (TypeError, ValueError):
                raise ConfigError(f"image preprocessing: p must be a number, got {values['p']!r}") from None
        for key in ("colour_constancy", "crop_border"):
            if key in values and not isinstance(values[key], bool):
                raise ConfigError(f"image preprocessing: {key} must be true or false, got {values[key]!r}")
        for key in ("size_px", "border_threshold"):
            if key in values and (isinstance(values[key], bool) or not isinstance(values[key], int)):
                raise ConfigError(f"image preprocessing: {key} must be an integer, got {values[key]!r}")
        return cls(**values)


def _check_rgb(img: np.ndarray) -> None:
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {img.shape} dtype {img.dtype}")
