"""Preparing a photograph for a model: square crop at a fixed size.

Minimal version for ``cadx explain``; the dermoscopy preprocessing (D1) replaces it with the full
one (dark-border crop, colour constancy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def resize_short_side(img: np.ndarray, size_px: int) -> np.ndarray:
    """Resize ``(H, W, 3)`` uint8 so that its shorter side is ``size_px`` (bilinear)."""
    from PIL import Image

    h, w = img.shape[:2]
    scale = size_px / min(h, w)
    new_wh = (max(size_px, round(w * scale)), max(size_px, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(new_wh, Image.Resampling.BILINEAR))


def center_crop(img: np.ndarray, size_px: int) -> np.ndarray:
    """The central ``size_px`` x ``size_px`` square of an image at least that large."""
    h, w = img.shape[:2]
    top, left = (h - size_px) // 2, (w - size_px) // 2
    return img[top:top + size_px, left:left + size_px]


@dataclass(frozen=True)
class ImagePreprocess:
    """``img (H, W, 3) uint8 -> (size_px, size_px, 3) uint8``; recorded in checkpoints by ``to_dict``."""

    size_px: int = 224
    colour_constancy: bool = True
    crop_border: bool = True

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(center_crop(resize_short_side(img, self.size_px), self.size_px))

    def to_dict(self) -> dict[str, Any]:
        """Plain types only."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImagePreprocess:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)
