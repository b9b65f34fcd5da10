"""Read photographs (dermoscopy, clinical pictures) as upright 8-bit RGB arrays, and find them in folders.

Every decoding problem ends in one :class:`~cadx.errors.InputFileError` naming the file: a
folder or named pipe, an empty file, a file that is not an image, a truncated JPEG or PNG, or an
image with more pixels than cadx decodes whole (a "decompression bomb": a few bytes on disk that
claim gigapixels). The size is checked from the header, before any pixel is decoded.

Only the formats of :data:`IMAGE_SUFFIXES` are decoded (JPEG, PNG, TIFF, BMP); Pillow's other
plugins are never tried, so a file named ``.jpg`` that is really PostScript is refused rather than
handed to Ghostscript.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import InputFileError
from cadx.io.limits import input_limits, require_regular_file

#: File name endings :func:`find_images` collects (compared case-insensitively).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")

#: Pillow formats :func:`read_rgb` decodes (the JPEG plugin also opens the multi-picture MPO files
#: some cameras write).
_FORMATS = ("JPEG", "PNG", "TIFF", "BMP")

#: Pillow modes holding one channel of 16-bit (or wider) integers.
_WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def read_rgb(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file into an upright ``(H, W, 3)`` uint8 RGB array.

    The EXIF orientation tag is applied, so the array shows the picture as the camera's viewer
    does (orientation 6, "rotate 90 clockwise", comes back with its width and height swapped).
    Colour modes are converted to 8-bit RGB: CMYK (Adobe-inverted JPEGs included) through Pillow's
    conversion, grey (``L``) and palette (``P``) expanded, alpha (``LA``, ``RGBA``, ``PA``)
    dropped, 16-bit grey scaled by 255/65535 (rounded) rather than clipped, 16-bit RGB reduced to its
    high byte (Pillow's decoding).

    Parameters
    ----------
    path : str or Path
        A JPEG, PNG, TIFF (first page) or BMP file.
    max_pixels : int, optional
        Most pixels (width x height) decoded; default
        :func:`cadx.io.limits.input_limits` ``().max_image_px`` (environment ``CADX_MAX_IMAGE_PX``).
        Pillow's own decompression-bomb limit is overruled by this one when lower; when higher,
        Pillow's error (beyond about 179 Mpx) is reported the same way.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8, rows top to bottom as displayed.

    Raises
    ------
    InputFileError
        ``path`` is missing, not a regular file, empty, not an image of a supported format,
        truncated or corrupt, or holds more than ``max_pixels`` pixels. The message names the file.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> tmp = Path(tempfile.mkdtemp())
    >>> Image.fromarray(np.full((2, 3), 200, np.uint8)).save(tmp / "grey.png")
    >>> rgb = read_rgb(tmp / "grey.png")
    >>> rgb.shape, rgb.dtype, rgb[0, 0].tolist()
    ((2, 3, 3), dtype('uint8'), [200, 200, 200])
    >>> read_rgb(tmp / "grey.png", max_pixels=5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cadx.errors.InputFileError: ...grey.png: a 3x2 px image is more than the 5 px cadx decodes whole...
    """
    # The plugins of _FORMATS are imported to register them (Pillow loads TIFF lazily).
    from PIL import (  # noqa: F401
        BmpImagePlugin,
        Image,
        ImageOps,
        JpegImagePlugin,
        PngImagePlugin,
        TiffImagePlugin,
        UnidentifiedImageError,
    )

    path = require_regular_file(path)
    limit = int(max_pixels) if max_pixels is not None else input_limits().max_image_px
    if path.stat().st_size == 0:
        raise InputFileError(path, "is empty (0 bytes), not an image")
    try:
        with warnings.catch_warnings():
            # Pillow warns above ~89 Mpx; cadx's own limit (checked below, before decoding) decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=_FORMATS) as im:
                w, h = im.size
                if w <= 0 or h <= 0:
                    raise InputFileError(path, f"the file records an empty image ({w}x{h} px)")
                if w * h > limit:
                    raise InputFileError(
                        path,
                        f"a {w}x{h} px image is more than the {limit:,} px cadx decodes whole "
                        "(CADX_MAX_IMAGE_PX); refused as a possible decompression bomb",
                    )
                im.load()
                upright = ImageOps.exif_transpose(im)
                return _to_rgb8(upright, path)
    except Image.DecompressionBombError as exc:
        raise InputFileError(path, f"refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise InputFileError(
            path, "not an image cadx reads (JPEG, PNG, TIFF or BMP), or its header is damaged"
        ) from None
    except (OSError, SyntaxError, EOFError) as exc:
        raise InputFileError(path, f"cannot decode the image: truncated or corrupt ({exc})") from None


def _to_rgb8(im, path: Path) -> np.ndarray:
    """A decoded Pillow image as ``(H, W, 3)`` uint8 RGB (see :func:`read_rgb` for the rules)."""
    mode = im.mode
    if mode in _WIDE_GREY_MODES:
        grey = np.asarray(im).astype(np.float64)
        grey8 = np.rint(np.clip(grey, 0, 65535) * (255.0 / 65535.0)).astype(np.uint8)
        return np.repeat(grey8[:, :, None], 3, axis=2)
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(im))
    if mode in ("P", "PA"):
        im = im.convert("RGBA")
    try:
        rgb = im.convert("RGB")
    except ValueError as exc:
        raise InputFileError(path, f"colour mode {mode!r} cannot be converted to RGB ({exc})") from None
    return np.ascontiguousarray(np.asarray(rgb))


def find_images(inputs: str | os.PathLike | Iterable[str | os.PathLike], *, recursive: bool = True) -> list[Path]:
    """The image files named by ``inputs``: files as given, folders searched for :data:`IMAGE_SUFFIXES`.

    Parameters
    ----------
    inputs : path or iterable of paths
        Image files (kept whatever their suffix, in the order given; :func:`read_rgb` judges
        them) and folders (their images in sorted order; hidden files such as macOS's ``._x.jpg``
        are skipped).
    recursive : bool
        Search sub-folders too.

    Returns
    -------
    list of Path
        Without duplicates, in the order found.

    Raises
    ------
    InputFileError
        An input that does not exist, or a folder holding no image.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> tmp = Path(tempfile.mkdtemp())
    >>> for name in ("b.JPG", "a.png", "notes.txt", ".hidden.jpg"):
    ...     (tmp / name).write_bytes(b"x")
    1
    1
    1
    1
    >>> [p.name for p in find_images(tmp)]
    ['a.png', 'b.JPG']
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = path.rglob("*") if recursive else path.glob("*")
            hits = sorted(
                p for p in pattern
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not hits:
                raise InputFileError(path, f"folder holds no image ({', '.join(IMAGE_SUFFIXES)})")
        elif path.exists():
            hits = [path]
        else:
            raise InputFileError(path, "no such file or folder")
        for p in hits:
            if p not in seen:
                seen.add(p)
                found.append(p)
    return found


def write_png(path: str | Path, image: np.ndarray, *, pnginfo: Any = None) -> Path:
    """Write a uint8 image (``(H, W)`` or ``(H, W, 3|4)``) as PNG, atomically; returns ``path``.

    Parameters
    ----------
    path : str or Path
    image : ndarray of uint8
    pnginfo : PIL.PngImagePlugin.PngInfo, optional
        Text chunks to store (e.g. the resolution a mask was made at).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_png(pathlib.Path(tempfile.mkdtemp()) / "a.png", np.zeros((2, 3, 3), np.uint8))
    >>> read_rgb(p).shape
    (2, 3, 3)
    """
    from PIL import Image

    from cadx.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG", pnginfo=pnginfo)
    return Path(path)
