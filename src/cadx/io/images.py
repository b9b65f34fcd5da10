"""Plain images (JPEG, PNG, TIFF, BMP) read as upright 8-bit RGB.

Minimal version for ``cadx explain``; the dermoscopy reader (D1) replaces it with the full one.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cadx.errors import InputFileError
from cadx.io.limits import input_limits, require_regular_file

#: File suffixes read as images (lower case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


def read_rgb(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """An image file as ``(H, W, 3)`` uint8 RGB, upright by its EXIF orientation.

    Parameters
    ----------
    path : str or Path
    max_pixels : int, optional
        Largest ``H * W`` decoded (default: ``input_limits().max_image_px``).

    Raises
    ------
    InputFileError
        Not a regular file, empty, not an image, truncated, or larger than ``max_pixels``.
    """
    from PIL import Image, ImageOps

    path = require_regular_file(path)
    if path.stat().st_size == 0:
        raise InputFileError(path, "is empty (0 bytes)")
    limit = max_pixels or input_limits().max_image_px
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > limit:
                    raise InputFileError(path, f"{im.width} x {im.height} px is more than the limit of {limit} px")
                im = ImageOps.exif_transpose(im)
                if im.mode not in ("RGB", "L"):
                    im = im.convert("RGBA").convert("RGB") if "A" in im.getbands() else im.convert("RGB")
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InputFileError(path, f"more pixels than the limit of {limit} px") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputFileError(path, f"not a readable image ({exc})") from None
    return rgb


def find_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named in ``inputs``: files as given, directories expanded to their images (sorted).

    Raises
    ------
    InputFileError
        An input does not exist.
    """
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()))
        elif p.exists():
            found.append(p)
        else:
            raise InputFileError(p, "no such file or directory")
    return found
