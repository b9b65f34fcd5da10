"""Tile and photograph augmentation and normalisation in numpy.

Tiles are ``(H, W, 3)`` uint8 RGB (or ``(H, W, 6)``: a tile and its context tile). Geometric: the 8
flips/rotations of the square (dihedral group). Colour: brightness, contrast, saturation and hue
jitter, as Liu et al. (2017) use for stain variation. Translation jitter is applied when the tile is
read (see ``cadx.datasets.tiles``). Transforms are plain callables: configured in ``__init__``,
applied by ``transform(tile, rng)`` with an explicit :class:`numpy.random.Generator`, so the caller
decides where the randomness comes from (and can make it reproducible).

Photographs (dermoscopy) have no fixed scale or orientation either: :class:`ImageAugment` adds a
random scale crop (resized back to the input's shape) to the symmetries and a milder colour jitter
(colour is diagnostic in dermoscopy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cadx.preprocessing.images import resize


def dihedral(tile: np.ndarray, k: int) -> np.ndarray:
    """The ``k``-th of the 8 symmetries of the square (k in 0..7): rotation k % 4, flip if k >= 4.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(4).reshape(2, 2)
    >>> dihedral(t, 1).tolist(), dihedral(t, 4).tolist()
    ([[1, 3], [0, 2]], [[1, 0], [3, 2]])
    """
    out = np.rot90(tile, k % 4, axes=(0, 1))
    if k >= 4:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


@dataclass(frozen=True)
class ColorJitter:
    """Random brightness, contrast, saturation and hue changes, configured once, applied per tile.

    Parameters
    ----------
    brightness : float
        Additive change drawn from [-b, b] (fraction of full scale).
    contrast, saturation : float
        Multiplicative factor drawn from [1 - c, 1 + c].
    hue : float
        Hue rotation drawn from [-h, h] (fraction of the colour circle).
    """

    brightness: float = 0.25
    contrast: float = 0.75
    saturation: float = 0.25
    hue: float = 0.04

    def __call__(self, tile: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = tile.astype(np.float32) / 255.0
        x = x + rng.uniform(-self.brightness, self.brightness)
        mean = x.mean()
        x = (x - mean) * rng.uniform(1 - self.contrast, 1 + self.contrast) + mean
        grey = x.mean(axis=2, keepdims=True)
        x = (x - grey) * rng.uniform(1 - self.saturation, 1 + self.saturation) + grey
        if self.hue:
            x = _rotate_hue(x, rng.uniform(-self.hue, self.hue) * 2 * np.pi)
        return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class TileAugment:
    """The training augmentation: one of the 8 dihedral symmetries, then colour jitter.

    Every 3-channel group (a tile and its context tile) gets the same symmetry and the same colour
    change.

    Parameters
    ----------
    color : ColorJitter, optional
        ``None``: no colour change.
    symmetries : bool
        Apply a random rotation/flip of the square.

    Examples
    --------
    >>> import numpy as np
    >>> tile = np.random.default_rng(0).integers(0, 256, (4, 4, 6), dtype=np.uint8)
    >>> aug = TileAugment()
    >>> a = aug(tile, np.random.default_rng(1))
    >>> a.shape, np.array_equal(a, aug(tile, np.random.default_rng(1)))
    ((4, 4, 6), True)
    """

    color: ColorJitter | None = ColorJitter()
    symmetries: bool = True

    def __call__(self, tile: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.symmetries:
            tile = dihedral(tile, int(rng.integers(8)))
        if self.color is None:
            return tile
        groups = []
        for c in range(0, tile.shape[2], 3):  # same colour change for the tile and its context
            state = rng.bit_generator.state
            groups.append(self.color(tile[:, :, c:c + 3], rng))
            if c + 3 < tile.shape[2]:
                rng.bit_generator.state = state
        return np.concatenate(groups, axis=2)


@dataclass(frozen=True)
class TileMaskAugment:
    """Segmentation augmentation: the same symmetry for a tile and its mask, colour jitter on the tile only.

    Parameters
    ----------
    color : ColorJitter, optional
        ``None``: no colour change.
    symmetries : bool
        Apply one random rotation/flip of the square (:func:`dihedral`) to both.

    Examples
    --------
    >>> import numpy as np
    >>> tile = np.zeros((4, 4, 3), np.uint8); tile[0, :2] = 255
    >>> mask = (tile[:, :, 0] > 0).astype(np.float32)
    >>> t, m = TileMaskAugment(color=None)(tile, mask, np.random.default_rng(3))
    >>> t.shape, m.shape, np.array_equal(m > 0, t[:, :, 0] > 0), np.array_equal(m, mask)
    ((4, 4, 3), (4, 4), True, False)
    """

    color: ColorJitter | None = ColorJitter()
    symmetries: bool = True

    def __call__(self, tile: np.ndarray, mask: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if self.symmetries:
            k = int(rng.integers(8))
            tile, mask = dihedral(tile, k), dihedral(mask, k)
        if self.color is not None:
            tile = self.color(tile, rng)
        return tile, mask


def random_scale_crop(
    img: np.ndarray,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float] = (0.6, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """A random crop of ``scale`` times the area and ``ratio`` width/height, resized to the input's shape.

    The crop's area fraction is drawn uniformly from ``scale``, its aspect ratio log-uniformly
    from ``ratio`` (clipped to fit), its position uniformly (torchvision's RandomResizedCrop).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((20, 30, 3), np.uint8)
    >>> random_scale_crop(img, np.random.default_rng(0)).shape
    (20, 30, 3)
    """
    h, w = img.shape[:2]
    area = rng.uniform(*scale) * h * w
    aspect = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
    cw = int(np.clip(round(np.sqrt(area * aspect)), 1, w))
    ch = int(np.clip(round(np.sqrt(area / aspect)), 1, h))
    r0 = int(rng.integers(0, h - ch + 1))
    c0 = int(rng.integers(0, w - cw + 1))
    return resize(img[r0:r0 + ch, c0:c0 + cw], (h, w))


@dataclass(frozen=True)
class ImageAugment:
    """Training augmentation for photographs: random scale crop, flip/rotation, colour jitter.

    The output has the input's shape and dtype. Square images get one of the 8 symmetries of the
    square (:func:`dihedral`); others one of the 4 that keep the shape (identity, half turn, the
    two flips).

    Parameters
    ----------
    scale : tuple of float, optional
        Area fraction range of :func:`random_scale_crop`; ``None``: no crop.
    ratio : tuple of float
        Aspect-ratio range of the crop.
    symmetries : bool
        Apply a random flip/rotation.
    color : ColorJitter, optional
        ``None``: no colour change. The default is milder than :class:`ColorJitter`'s (built for
        stain variation): colour carries the diagnosis in dermoscopy.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    >>> aug = ImageAugment()
    >>> a = aug(img, np.random.default_rng(1))
    >>> a.shape, a.dtype, np.array_equal(a, aug(img, np.random.default_rng(1)))
    ((16, 16, 3), dtype('uint8'), True)
    """

    scale: tuple[float, float] | None = (0.6, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    symmetries: bool = True
    color: ColorJitter | None = ColorJitter(brightness=0.1, contrast=0.2, saturation=0.2, hue=0.02)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.scale is not None:
            img = random_scale_crop(img, rng, scale=self.scale, ratio=self.ratio)
        if self.symmetries:
            square = img.shape[0] == img.shape[1]
            img = dihedral(img, int(rng.integers(8)) if square else 2 * int(rng.integers(4)))
        if self.color is not None:
            img = self.color(img, rng)
        return img


def _rotate_hue(x: np.ndarray, angle: float) -> np.ndarray:
    """Rotate colours about the grey axis (a linear hue shift in RGB)."""
    c, s = np.cos(angle), np.sin(angle)
    k = 1.0 / 3.0
    sq = np.sqrt(k)
    m = np.array(
        [
            [c + (1 - c) * k, k * (1 - c) - sq * s, k * (1 - c) + sq * s],
            [k * (1 - c) + sq * s, c + k * (1 - c), k * (1 - c) - sq * s],
            [k * (1 - c) - sq * s, k * (1 - c) + sq * s, c + k * (1 - c)],
        ],
        dtype=np.float32,
    )
    return x @ m.T


def to_model_input(tiles: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, H, W)`` float32, scaled to [0, 1] then normalised.

    Examples
    --------
    >>> import numpy as np
    >>> x = to_model_input(np.full((1, 2, 2, 3), 255, np.uint8), (0.5,) * 3, (0.5,) * 3)
    >>> x.shape, float(x.max())
    ((1, 3, 2, 2), 1.0)
    """
    x = tiles.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    m = np.asarray(mean, np.float32)[None, :, None, None]
    s = np.asarray(std, np.float32)[None, :, None, None]
    return np.ascontiguousarray((x - m) / s)

