"""Plain images (JPEG, PNG, TIFF, BMP) as RGB arrays.

Shim for the dermoscopy work (helper D1 owns and replaces this module): the agreed names only.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cadx.errors import InputFileError
from cadx.io.limits import input_limits, require_regular_file

#: File suffixes :func:`find_images` collects from folders.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


def read_rgb(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image as ``(H, W, 3)`` uint8 RGB, upright by its EXIF orientation.

    Raises
    ------
    InputFileError
        Not a regular file, empty, not an image, truncated, or more than ``max_pixels`` pixels
        (default :func:`cadx.io.limits.input_limits` ``.max_image_px``).
    """
    import warnings

    from PIL import Image, ImageOps

    path = require_regular_file(path)
    if path.stat().st_size == 0:
        raise InputFileError(path, "empty file (0 bytes)")
    limit = max_pixels or input_limits().max_image_px
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > limit:
                    raise InputFileError(path, f"{im.width} x {im.height} px is more than {limit} px")
                im = ImageOps.exif_transpose(im)
                return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputFileError(path, f"not a readable image ({type(exc).__name__}: {str(exc)[:120]})") from None


def find_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files among ``inputs``: files as given, folders searched (sorted) for :data:`IMAGE_SUFFIXES`."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out
