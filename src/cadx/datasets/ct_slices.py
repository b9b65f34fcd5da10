"""CT slices as model input: HU -> windows -> uint8 -> normalised tensors, with 2.5D neighbours.

A slice's input is ``(S, S, C)`` uint8 with ``C = len(windows) * (2 * context_slices + 1)``: for each
slice of the context (the previous ones, the slice itself, the next ones, sorted by position along
the series' normal, clamped at the ends of the series) the windows in order. The same function
(:func:`ct_input`) builds training and prediction input, so they cannot drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cadx.preprocessing.augment import to_model_input
from cadx.preprocessing.ct_window import crop_square, head_box, stack_windows, to_uint8

log = logging.getLogger(__name__)


def resize_uint8(img: np.ndarray, size_px: int) -> np.ndarray:
    """``(H, W, C)`` uint8 -> ``(size_px, size_px, C)`` uint8, bilinear per channel (no-op when equal).

    Examples
    --------
    >>> resize_uint8(np.full((4, 4, 2), 7, np.uint8), 2)[..., 1].tolist()
    [[7, 7], [7, 7]]
    """
    if img.shape[0] == size_px and img.shape[1] == size_px:
        return img
    from PIL import Image

    out = np.empty((size_px, size_px, img.shape[-1]), np.uint8)
    c = 0
    while c < img.shape[-1]:  # three channels at a time as one RGB image (PIL's fastest path), then single ones
        k = 3 if img.shape[-1] - c >= 3 else 1
        part = np.ascontiguousarray(img[..., c:c + k] if k == 3 else img[..., c])
        resized = np.asarray(Image.fromarray(part, "RGB" if k == 3 else "L").resize((size_px, size_px),
                                                                                 Image.Resampling.BILINEAR))
        out[..., c:c + k] = resized if k == 3 else resized[..., None]
        c += k
    return out


def ct_input(hus: Sequence[np.ndarray], *, windows: Sequence[Sequence[float]], image_size: int,
             crop: str = "none") -> np.ndarray:
    """The model input of one slice from the HU images of its context.

    Parameters
    ----------
    hus : sequence of ndarray (H, W) float
        Hounsfield units of the context slices, in position order (the slice itself in the middle).
    windows : sequence of (centre, width) in HU
    image_size : int
        Side of the square the model sees, px.
    crop : {"none", "head"}
        ``"head"``: cut every context slice to the square around the head on the middle slice
        (:func:`input_box`) before resizing, so the head fills the input; ``"none"``: the whole image.

    Each window is mapped to uint8 at the slice's resolution, then resampled bilinearly to
    ``image_size``.

    Returns
    -------
    ndarray, (image_size, image_size, len(hus) * len(windows)) uint8

    Examples
    --------
    >>> hu = np.array([[-1000.0, 40.0], [80.0, 2000.0]])
    >>> x = ct_input([hu], windows=((40, 80),), image_size=2)
    >>> x[..., 0].tolist()
    [[0, 128], [255, 255]]
    >>> big = np.full((8, 8), -1000.0); big[2:4, 2:4] = 80.0
    >>> ct_input([big], windows=((40, 80),), image_size=2, crop="head")[..., 0].tolist()
    [[255, 255], [255, 255]]
    """
    box = input_box(hus[len(hus) // 2], crop)
    if box is not None:
        hus = [crop_square(np.asarray(hu, np.float32), box, fill=-1000.0) for hu in hus]
    # windows to uint8 at full resolution, then one resampling per uint8 channel (about 5x faster than
    # resampling float channels; the input differs by at most one grey level)
    parts = [resize_uint8(to_uint8(stack_windows(hu, windows)), image_size) for hu in hus]
    return np.concatenate(parts, axis=-1)


#: ``ct_input`` crops: the whole image, or the square around the head.
CROPS = ("none", "head")


def input_box(hu: np.ndarray, crop: str = "none") -> tuple[int, int, int] | None:
    """The ``(row0, col0, side)`` square of a slice that :func:`ct_input` resizes (None: the whole image).

    Examples
    --------
    >>> input_box(np.zeros((4, 4)), "none") is None
    True
    """
    if crop not in CROPS:
        raise ValueError(f"crop: expected one of {CROPS}, got {crop!r}")
    return head_box(hu) if crop == "head" else None


def map_to_slice(values: np.ndarray, box: tuple[int, int, int] | None, shape_hw: tuple[int, int]) -> np.ndarray:
    """A map over the model input ``(S, S)`` (e.g. Grad-CAM) back onto the slice's ``(H, W)`` pixels.

    Zero outside the cropped square; ``box=None`` (no crop) resizes to ``shape_hw``.

    Examples
    --------
    >>> m = map_to_slice(np.ones((2, 2)), (1, 1, 2), (4, 4))
    >>> m.astype(int).tolist()
    [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    """
    h, w = shape_hw
    if box is None:
        return _resize_map(values, (h, w))
    row0, col0, side = box
    square = _resize_map(values, (side, side))
    out = np.zeros((h, w), np.float32)
    r0, r1, c0, c1 = max(row0, 0), min(row0 + side, h), max(col0, 0), min(col0 + side, w)
    if r0 < r1 and c0 < c1:
        out[r0:r1, c0:c1] = square[r0 - row0:r1 - row0, c0 - col0:c1 - col0]
    return out


def _resize_map(values: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D float map to ``(H, W)``."""
    values = np.asarray(values, np.float32)
    if values.shape == tuple(shape_hw):
        return values
    from PIL import Image

    return np.asarray(Image.fromarray(values, mode="F").resize(shape_hw[::-1], Image.Resampling.BILINEAR), np.float32)


def context_indices(series: Sequence[str], z_mm: Sequence[float], context_slices: int) -> np.ndarray:
    """For each slice, the indices of its context within its series, sorted by position.

    Parameters
    ----------
    series : sequence of str
        Series of each slice.
    z_mm : sequence of float
        Position along the slice normal (NaN sorts last).
    context_slices : int
        Neighbours on each side (0: the slice alone).

    Returns
    -------
    ndarray of int64, (N, 2 * context_slices + 1)
        Row ``i`` holds the previous slices, ``i`` itself, the next slices; at either end of a series
        the end slice repeats.

    Examples
    --------
    >>> context_indices(["a", "a", "b", "a"], [10.0, 0.0, 3.0, 5.0], 1).tolist()
    [[3, 0, 0], [1, 1, 3], [2, 2, 2], [1, 3, 0]]
    """
    s = np.asarray([str(v) for v in series])
    z = np.asarray(z_mm, np.float64)
    c = int(context_slices)
    out = np.zeros((s.size, 2 * c + 1), np.int64)
    for name in np.unique(s):
        members = np.flatnonzero(s == name)
        order = members[np.lexsort((members, np.where(np.isnan(z[members]), np.inf, z[members])))]
        for rank, i in enumerate(order):
            pos = np.clip(np.arange(rank - c, rank + c + 1), 0, order.size - 1)
            out[i] = order[pos]
    return out


class HorizontalFlip:
    """Left-right flip with probability ``p`` (a head is close to mirror-symmetric).

    Examples
    --------
    >>> img = np.arange(4, dtype=np.uint8).reshape(1, 4, 1)
    >>> HorizontalFlip(p=1.0)(img, np.random.default_rng(0))[0, :, 0].tolist()
    [3, 2, 1, 0]
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return img[:, ::-1].copy() if rng.random() < self.p else img


class CtSliceDataset:
    """A map-style dataset over CT slices: returns ``(CHW float32, labels (K,) float32)``.

    Parameters
    ----------
    paths : sequence of path
        Every slice file that a context may name.
    labels : ndarray, (N, K)
        Per slice in ``paths``.
    context : ndarray of int, (N, 2c + 1)
        From :func:`context_indices`.
    windows : sequence of (centre, width) HU
    image_size : int
    mean, std : sequence of float
        Per input channel (the model's config).
    transform : callable, optional
        ``transform(img, rng) -> img`` on the uint8 input (augmentation).
    seed : int
    cache : bool
        Keep each slice's input in memory after its first read.
    crop : {"none", "head"}
        See :func:`ct_input`.

    Notes
    -----
    Items are ``index`` or ``(index, draw)``; the augmentation is seeded by ``(seed, index, draw)``.
    An unreadable slice raises :class:`~cadx.errors.InputFileError` naming the file.
    """

    def __init__(self, paths: Sequence[str | Path], labels: np.ndarray, *, context: np.ndarray,
                 windows: Sequence[Sequence[float]], image_size: int, mean: Sequence[float], std: Sequence[float],
                 transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
                 seed: int = 0, cache: bool = False, crop: str = "none") -> None:
        self.paths = [Path(p) for p in paths]
        self.labels = np.asarray(labels, np.float32)
        self.context = np.asarray(context, np.int64)
        if not len(self.paths) == len(self.labels) == len(self.context):
            raise ValueError(f"{len(self.paths)} paths, {len(self.labels)} labels, {len(self.context)} contexts")
        self.windows = tuple(tuple(float(v) for v in w) for w in windows)
        self.image_size = int(image_size)
        self.crop = crop
        self.mean, self.std = tuple(mean), tuple(std)
        self.transform = transform
        self.seed = seed
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> np.ndarray:
        """The uint8 input ``(S, S, C)`` of slice ``index``, before augmentation."""
        img = self._cache.get(index)
        if img is None:
            from cadx.io.dicom import read_ct_slice

            hus = [read_ct_slice(self.paths[j]).hu for j in self.context[index]]
            img = ct_input(hus, windows=self.windows, image_size=self.image_size, crop=self.crop)
            if self.cache:
                self._cache[index] = img
        return img

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        index, draw = (int(item[0]), int(item[1])) if isinstance(item, (tuple, list)) else (int(item), 0)
        img = self.image(index)
        if self.transform is not None:
            img = self.transform(img, np.random.default_rng([self.seed, index, draw]))
        return to_model_input(img[None], self.mean, self.std)[0], self.labels[index]
