"""CT display windows: Hounsfield units to [0, 1] channels, and 2.5D neighbour stacks (numpy only).

A window (centre ``c``, width ``w``, both in HU) maps ``c - w/2`` to 0 and ``c + w/2`` to 1, linearly,
clipping outside. Head CT models take three windows as the three channels of an RGB-like image
(:data:`DEFAULT_WINDOWS`: brain, subdural, bone).

:func:`head_box` finds the square around the head (its largest connected body of non-air pixels), so a
model can see the head at a larger scale than the whole field of view allows; :func:`crop_square` cuts
it out, padding with air where the square leaves the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: (centre, width) in HU of the brain, subdural and bone windows, in channel order.
DEFAULT_WINDOWS: tuple[tuple[float, float], ...] = ((40, 80), (80, 200), (600, 2800))


def window(hu: np.ndarray, *, center_hu: float, width_hu: float) -> np.ndarray:
    """Map Hounsfield units through one window to float32 in [0, 1].

    Parameters
    ----------
    hu : numpy.ndarray
        Any shape, Hounsfield units.
    center_hu, width_hu : float
        Window centre and width in HU; the width must be positive.

    Returns
    -------
    numpy.ndarray
        float32, same shape: ``clip((hu - (center - width/2)) / width, 0, 1)``.

    Examples
    --------
    >>> window(np.array([-100.0, 0.0, 40.0, 80.0, 1000.0]), center_hu=40, width_hu=80).tolist()
    [0.0, 0.0, 0.5, 1.0, 1.0]
    """
    if not width_hu > 0:
        raise ValueError(f"window width must be positive, got {width_hu}")
    low = np.float32(center_hu - width_hu / 2.0)
    out = np.subtract(hu, low, dtype=np.float32)
    out *= np.float32(1.0 / width_hu)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def stack_windows(hu: np.ndarray, windows: Sequence[tuple[float, float]] = DEFAULT_WINDOWS) -> np.ndarray:
    """Stack several windows of one image as channels.

    Parameters
    ----------
    hu : numpy.ndarray
        ``(H, W)`` Hounsfield units.
    windows : sequence of (centre, width)
        In HU; default :data:`DEFAULT_WINDOWS`.

    Returns
    -------
    numpy.ndarray
        ``(H, W, len(windows))`` float32 in [0, 1].

    Examples
    --------
    >>> stack_windows(np.full((2, 2), 40.0)).shape
    (2, 2, 3)
    >>> [round(float(v), 4) for v in stack_windows(np.full((2, 2), 40.0))[0, 0]]
    [0.5, 0.3, 0.3]
    """
    hu = np.asarray(hu)
    out = np.empty((*hu.shape, len(windows)), np.float32)
    for i, (center, width) in enumerate(windows):
        out[..., i] = window(hu, center_hu=center, width_hu=width)
    return out


#: Pixels above this are the patient (skin, bone, brain); air and the scanner's air gap lie below.
BODY_THRESHOLD_HU = -300.0


def head_box(hu: np.ndarray, *, threshold_hu: float = BODY_THRESHOLD_HU, margin: float = 0.04
             ) -> tuple[int, int, int]:
    """The square ``(row0, col0, side)`` around the head on one slice, in pixels.

    The head is the largest 4-connected region above ``threshold_hu`` (the table, head rest and cables
    are smaller regions and are ignored); the square is centred on its bounding box, as wide as its
    longer side plus ``margin`` of it on each side. It may extend past the image (see
    :func:`crop_square`). A slice with no pixel above the threshold gives the whole image.

    Parameters
    ----------
    hu : numpy.ndarray
        ``(H, W)`` Hounsfield units.
    threshold_hu : float
        Body / air threshold, HU.
    margin : float
        Extra border on each side, as a fraction of the box side.

    Returns
    -------
    tuple of int
        ``(row0, col0, side)``: the square is ``hu[row0:row0 + side, col0:col0 + side]``.

    Examples
    --------
    >>> hu = np.full((10, 12), -1000.0)
    >>> hu[2:6, 3:9] = 40.0          # a 4 x 6 head
    >>> hu[9, 0] = 40.0              # a speck of table: ignored
    >>> head_box(hu, margin=0.0)
    (1, 3, 6)
    >>> head_box(np.full((4, 4), -1000.0))
    (0, 0, 4)
    """
    from scipy import ndimage

    hu = np.asarray(hu)
    h, w = hu.shape
    step = max(1, min(h, w) // 128)  # the head is found on a coarse grid (about 128 px), then refined
    coarse = hu[::step, ::step] > threshold_hu
    labels, n = ndimage.label(coarse)
    if n == 0:
        return 0, 0, max(h, w)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    rows, cols = ndimage.find_objects((labels == int(np.argmax(sizes))).astype(np.int32))[0]
    if step > 1:  # exact edges at full resolution, within one coarse cell around the coarse box
        r0, r1 = max(rows.start * step - step, 0), min(rows.stop * step + step, h)
        c0, c1 = max(cols.start * step - step, 0), min(cols.stop * step + step, w)
        body = hu[r0:r1, c0:c1] > threshold_hu
        rr, cc = np.flatnonzero(body.any(axis=1)), np.flatnonzero(body.any(axis=0))
        rows, cols = slice(r0 + rr[0], r0 + rr[-1] + 1), slice(c0 + cc[0], c0 + cc[-1] + 1)
    side0 = max(rows.stop - rows.start, cols.stop - cols.start)
    side = int(round(side0 * (1.0 + 2.0 * margin)))
    row0 = int(round((rows.start + rows.stop - side) / 2.0))
    col0 = int(round((cols.start + cols.stop - side) / 2.0))
    return row0, col0, side


def crop_square(img: np.ndarray, box: tuple[int, int, int], *, fill: float) -> np.ndarray:
    """``img[row0:row0 + side, col0:col0 + side]`` (leading axes), padded with ``fill`` outside the image.

    Examples
    --------
    >>> crop_square(np.arange(4.0).reshape(2, 2), (-1, 0, 3), fill=-1.0).tolist()
    [[-1.0, -1.0, -1.0], [0.0, 1.0, -1.0], [2.0, 3.0, -1.0]]
    """
    row0, col0, side = box
    h, w = img.shape[:2]
    out = np.full((side, side, *img.shape[2:]), fill, dtype=img.dtype)
    r0, r1 = max(row0, 0), min(row0 + side, h)
    c0, c1 = max(col0, 0), min(col0 + side, w)
    if r0 < r1 and c0 < c1:
        out[r0 - row0:r1 - row0, c0 - col0:c1 - col0] = img[r0:r1, c0:c1]
    return out


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 (rounded, clipped), the predictor's input type.

    Examples
    --------
    >>> to_uint8(np.array([0.0, 0.5, 1.0, 1.7])).tolist()
    [0, 128, 255, 255]
    """
    scaled = np.multiply(x, 255.0, dtype=np.float32)
    np.clip(scaled, 0.0, 255.0, out=scaled)
    return np.rint(scaled, out=scaled).astype(np.uint8)


def neighbour_stack(volume: np.ndarray, index: int, *, offsets: Sequence[int] = (-1, 0, 1)) -> np.ndarray:
    """Slices around ``index`` as channels (2.5D input), clamped at the ends of the series.

    Parameters
    ----------
    volume : numpy.ndarray
        ``(z, H, W)`` (e.g. HU or one window) or ``(z, H, W, C)``, slices in order along the normal.
    index : int
        The centre slice, ``0 <= index < z``.
    offsets : sequence of int
        Slice offsets, in channel order; slices beyond the ends repeat the first / last slice.

    Returns
    -------
    numpy.ndarray
        ``(H, W, len(offsets))`` for a 3-D volume; ``(H, W, len(offsets) * C)`` (offset-major) for 4-D.

    Examples
    --------
    >>> v = np.arange(3, dtype=np.float32)[:, None, None] * np.ones((3, 2, 2), np.float32)
    >>> neighbour_stack(v, 0)[0, 0].tolist(), neighbour_stack(v, 2)[0, 0].tolist()
    ([0.0, 0.0, 1.0], [1.0, 2.0, 2.0])
    """
    n = volume.shape[0]
    if not 0 <= index < n:
        raise IndexError(f"slice {index} outside a series of {n}")
    picks = [min(max(index + o, 0), n - 1) for o in offsets]
    if volume.ndim == 3:
        return np.stack([volume[i] for i in picks], axis=-1)
    return np.concatenate([volume[i] for i in picks], axis=-1)
