"""Dermoscopy-style image preprocessing: border crop, colour constancy, resize and centre crop.

Shim for the dermoscopy work (helper D1 owns and replaces this module): the agreed names only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def crop_dark_border(img: np.ndarray, *, threshold: int = 20) -> np.ndarray:
    """Crop rows and columns whose mean brightness is below ``threshold`` at the image edges."""
    bright = img.mean(axis=2) >= threshold
    rows, cols = np.flatnonzero(bright.mean(axis=1) > 0.5), np.flatnonzero(bright.mean(axis=0) > 0.5)
    if len(rows) < 2 or len(cols) < 2:
        return img
    return img[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def shades_of_gray(img: np.ndarray, *, p: float = 6) -> np.ndarray:
    """Shades-of-Gray colour constancy: scale channels so their Minkowski p-norm means are equal."""
    x = img.astype(np.float64)
    norm = np.power(np.mean(np.power(x, p), axis=(0, 1)), 1.0 / p) + 1e-6
    gain = norm.mean() / norm
    return np.clip(x * gain + 0.5, 0, 255).astype(np.uint8)


def resize_short_side(img: np.ndarray, size_px: int) -> np.ndarray:
    """Resize keeping the aspect so the shorter side is ``size_px``."""
    from PIL import Image

    h, w = img.shape[:2]
    s = size_px / min(h, w)
    size_wh = (max(size_px, round(w * s)), max(size_px, round(h * s)))
    return np.asarray(Image.fromarray(img).resize(size_wh, Image.BILINEAR))


def center_crop(img: np.ndarray, size_px: int) -> np.ndarray:
    """The central ``size_px`` square."""
    h, w = img.shape[:2]
    top, left = (h - size_px) // 2, (w - size_px) // 2
    return img[top:top + size_px, left:left + size_px]


@dataclass(frozen=True)
class ImagePreprocess:
    """``img (H, W, 3) uint8 -> (size_px, size_px, 3) uint8``: border crop, colour constancy, resize, crop."""

    size_px: int = 224
    colour_constancy: bool = True
    crop_border: bool = True

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if self.crop_border:
            img = crop_dark_border(img)
        if self.colour_constancy:
            img = shades_of_gray(img)
        return np.ascontiguousarray(center_crop(resize_short_side(img, self.size_px), self.size_px))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImagePreprocess:
        return cls(**d)
