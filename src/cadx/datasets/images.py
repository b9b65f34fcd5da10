"""Datasets of whole images (dermoscopy photographs, ...): read, preprocess, augment, normalise.

The image twin of :class:`cadx.datasets.tiles.TileDataset`: items are ``index`` or
``(index, draw)``, and the augmentation of an item is seeded by ``(seed, index, draw)`` alone, so it
is the same in every process and worker, and a resumed run sees exactly the images an uninterrupted
one would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cadx.io.images import read_rgb
from cadx.preprocessing.augment import to_model_input

log = logging.getLogger(__name__)


class ImageDataset:
    """A map-style dataset over image files: returns ``(CHW float32, label)``.

    Parameters
    ----------
    paths : sequence of path
    labels : sequence of int
        Class index per image.
    preprocess : callable
        ``preprocess(img (H, W, 3) uint8) -> (S, S, 3) uint8``, e.g.
        :class:`cadx.preprocessing.images.ImagePreprocess`; the same at training and prediction.
    transform : callable, optional
        ``transform(img, rng) -> img`` applied after ``preprocess`` (augmentation, e.g.
        :class:`cadx.preprocessing.augment.ImageAugment`); ``None``: none.
    mean, std : sequence of float
        Normalisation of the model (from ``model.cadx_config``).
    seed : int
    cache : bool
        Keep each preprocessed image in memory after its first read (per process); the decode and
        colour constancy then run once per image instead of once per draw. Use it when
        ``len(paths) * S * S * 3`` bytes fit in memory.

    Notes
    -----
    Items are ``index`` or ``(index, draw)``: ``draw`` (e.g. the sample's number in the training
    stream) gives the same image a different augmentation each time it is drawn; it is 0 when left
    out. Unreadable images raise :class:`~cadx.errors.InputFileError` naming the file.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from PIL import Image
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.png"
    >>> Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(path)
    >>> shift = lambda im, rng: np.roll(im, int(rng.integers(4)), axis=1)
    >>> ds = ImageDataset([path], [1], preprocess=lambda im: im, transform=shift, mean=(0.5,) * 3, std=(0.5,) * 3)
    >>> x, y = ds[0, 5]
    >>> x.shape, y, np.array_equal(x, ds[0, 5][0])
    ((3, 4, 4), 1, True)
    """

    def __init__(self, paths: Sequence[str | Path], labels: Sequence[int], *,
                 preprocess: Callable[[np.ndarray], np.ndarray],
                 transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
                 mean: Sequence[float], std: Sequence[float], seed: int = 0, cache: bool = False) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"paths ({len(paths)}) and labels ({len(labels)}) differ in length")
        self.paths = [Path(p) for p in paths]
        self.labels = np.asarray(labels, np.int64)
        self.preprocess = preprocess
        self.transform = transform
        self.mean, self.std = tuple(mean), tuple(std)
        self.seed = seed
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> np.ndarray:
        """The preprocessed image ``index``, ``(S, S, 3)`` uint8, before augmentation."""
        img = self._cache.get(index)
        if img is None:
            img = self.preprocess(read_rgb(self.paths[index]))
            if self.cache:
                self._cache[index] = img
        return img

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[np.ndarray, int]:
        index, draw = (int(item[0]), int(item[1])) if isinstance(item, (tuple, list)) else (int(item), 0)
        img = self.image(index)
        if self.transform is not None:
            img = self.transform(img, np.random.default_rng([self.seed, index, draw]))
        return to_model_input(img[None], self.mean, self.std)[0], int(self.labels[index])


def sample_stream(labels: Sequence[int], *, num_samples: int, seed: int = 0, balanced: bool = True) -> np.ndarray:
    """The indices a training run draws, fixed by the seed.

    Parameters
    ----------
    labels : sequence of int
        Class index per item.
    num_samples : int
        Length of the stream (steps x batch size).
    seed : int
    balanced : bool
        ``True``: each draw picks a class uniformly among those present, then an item of that class
        (class-balanced sampling, with replacement). ``False``: epochs, each a fresh permutation of
        all items.

    Returns
    -------
    ndarray of int64, (num_samples,)

    Examples
    --------
    >>> s = sample_stream([0] * 90 + [1] * 10, num_samples=2000, seed=0)
    >>> round(float((s >= 90).mean()), 1)
    0.5
    >>> sorted(sample_stream([0, 0, 1], num_samples=3, seed=0, balanced=False).tolist())
    [0, 1, 2]
    """
    y = np.asarray(labels, np.int64)
    rng = np.random.default_rng(seed)
    if not balanced:
        epochs = -(-num_samples // max(len(y), 1))
        return np.concatenate([rng.permutation(len(y)) for _ in range(epochs)])[:num_samples].astype(np.int64)
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    cls = rng.integers(len(by_class), size=num_samples)
    pick = rng.random(num_samples)
    out = np.empty(num_samples, np.int64)
    for c, members in enumerate(by_class):
        at = cls == c
        out[at] = members[(pick[at] * len(members)).astype(np.int64)]
    return out
