"""SHIM for C1's CT windows (C1 replaces this file)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: (centre, width) HU: brain, subdural, bone.
DEFAULT_WINDOWS = ((40, 80), (80, 200), (600, 2800))


def window(hu: np.ndarray, *, center_hu: float, width_hu: float) -> np.ndarray:
    """HU mapped linearly to [0, 1] over ``center +- width / 2`` (float32)."""
    lo = center_hu - width_hu / 2.0
    return np.clip((np.asarray(hu, np.float32) - lo) / float(width_hu), 0.0, 1.0).astype(np.float32)


def stack_windows(hu: np.ndarray, windows: Sequence[Sequence[float]] = DEFAULT_WINDOWS) -> np.ndarray:
    """(H, W, len(windows)) float32 in [0, 1]."""
    return np.stack([window(hu, center_hu=c, width_hu=w) for c, w in windows], axis=-1)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 (rounded)."""
    return np.clip(np.rint(np.asarray(x, np.float32) * 255.0), 0, 255).astype(np.uint8)


def neighbour_stack(volume: np.ndarray, index: int, *, offsets: Sequence[int] = (-1, 0, 1)) -> np.ndarray:
    """(H, W, len(offsets)) slices ``index + offset`` of a (z, y, x) volume, clamped at the ends."""
    z = volume.shape[0]
    return np.stack([volume[min(max(index + o, 0), z - 1)] for o in offsets], axis=-1)
