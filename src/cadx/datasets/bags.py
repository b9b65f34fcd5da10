"""Bags of tile features, one per slide, for multiple-instance learning.

A :class:`BagDataset` item is ``(features, label, name)``: the slide's tile features ``(N, D)``
float32 tensor (rows in the order of the features file), its slide label (0 normal, 1 tumour) and
its name. Bags come from CLAM-layout features files (:func:`cadx.io.h5.read_features_h5`, one HDF5
per slide) or from arrays already in memory (:meth:`BagDataset.from_arrays`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import ConfigError, InputFileError

__all__ = ["BagDataset"]


class BagDataset:
    """Slides as bags of tile features with one label each.

    Parameters
    ----------
    paths : sequence of Path
        One features file per slide (CLAM layout: datasets ``features`` and ``coords``); the bag's
        name is the file name without its suffix.
    labels : sequence of int
        One slide label per file (0 normal, 1 tumour).
    in_memory : bool
        Read every file now and keep the features (fast epochs; 400 slides of 10k x 1024 float32 tiles
        take 16 GB); ``False`` reads a bag from its file each time it is used.

    Raises
    ------
    ConfigError
        Labels and paths differ in number, a label is negative, or names repeat.
    InputFileError
        A file is not a features file, or holds no tiles (when read). Bad arrays given to
        :meth:`from_arrays` raise :class:`~cadx.errors.ConfigError` when used.

    Examples
    --------
    >>> bags = BagDataset.from_arrays([np.ones((3, 4)), np.zeros((5, 4))], [1, 0], ["t1", "n1"])
    >>> x, label, name = bags[1]
    >>> tuple(x.shape), x.dtype, label, name, len(bags), bags.feature_dim
    ((5, 4), torch.float32, 0, 'n1', 2, 4)
    >>> bags.subset([1]).names
    ('n1',)
    """

    def __init__(self, paths: Sequence[str | Path], labels: Sequence[int], *, in_memory: bool = True) -> None:
        files = [Path(p) for p in paths]
        self._setup(lambda i: _read_bag(files[i]), labels, [p.stem for p in files], len(files))
        self._files = files
        if in_memory:
            self._cache = {i: self._load(i) for i in range(len(files))}

    @classmethod
    def from_arrays(cls, features_list: Sequence[Any], labels: Sequence[int],
                    names: Sequence[str] | None = None) -> BagDataset:
        """Bags from arrays ``(N_i, D)``; any sequence works, also one that makes each bag when indexed.

        The arrays are not copied (float32 ones are shared with the tensors of the items).
        ``names`` default to ``bag_0``, ``bag_1``, ...
        """
        self = cls.__new__(cls)
        n = len(features_list)
        self._setup(lambda i: features_list[i], labels, [f"bag_{i}" for i in range(n)] if names is None else names, n)
        return self

    def _setup(self, source: Callable[[int], Any], labels: Sequence[int], names: Sequence[str], n: int) -> None:
        y = np.asarray(labels)
        if y.shape != (n,) or len(names) != n:
            raise ConfigError(f"bags: {n} bags, {y.size} labels and {len(names)} names; give one of each per bag")
        if n and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0):
            raise ConfigError(f"bags: labels must be integers >= 0 (got {y.dtype} from {y.min()})")
        if len(set(names)) != n:
            raise ConfigError("bags: names must be unique (one bag per slide)")
        self._source = source
        self._all_labels = y.astype(np.int64)
        self._all_names = tuple(str(s) for s in names)
        self._index = np.arange(n)
        self._cache: dict[int, np.ndarray] = {}
        self._files: list[Path] | None = None

    def _load(self, i: int) -> np.ndarray:
        if i in self._cache:
            return self._cache[i]
        x = np.asarray(self._source(i))
        if x.ndim != 2 or x.shape[0] == 0 or not (np.issubdtype(x.dtype, np.floating)
                                                   or np.issubdtype(x.dtype, np.integer)):
            problem = f"bag features must be a numeric (N, D) array with N >= 1, got {x.dtype} {x.shape}"
            if self._files is not None:
                raise InputFileError(self._files[i], problem)
            raise ConfigError(f"bags: bag {self._all_names[i]!r}: {problem}")
        return np.ascontiguousarray(x, dtype=np.float32)

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> tuple[Any, int, str]:
        """``(features (N, D) float32 tensor, label, name)`` of bag ``i``."""
        import torch

        j = int(self._index[i])
        return torch.from_numpy(self._load(j)), int(self._all_labels[j]), self._all_names[j]

    def features(self, i: int) -> np.ndarray:
        """Bag ``i``'s features as a numpy ``(N, D)`` float32 array."""
        return self._load(int(self._index[i]))

    @property
    def labels(self) -> np.ndarray:
        """``(len,)`` int64 slide labels."""
        return self._all_labels[self._index]

    @property
    def names(self) -> tuple[str, ...]:
        """Slide names, in item order."""
        return tuple(self._all_names[j] for j in self._index)

    @property
    def feature_dim(self) -> int:
        """D, read from the first bag.

        Raises
        ------
        ConfigError
            The dataset is empty.
        """
        if not len(self):
            raise ConfigError("bags: no bags")
        return int(self.features(0).shape[1])

    def subset(self, indices: Sequence[int] | np.ndarray) -> BagDataset:
        """The bags at ``indices`` (positions in this dataset), sharing files, arrays and cache."""
        sub = self.__class__.__new__(self.__class__)
        sub.__dict__.update(self.__dict__)
        sub._index = self._index[np.asarray(indices, dtype=np.int64)]
        return sub


def _read_bag(path: Path) -> np.ndarray:
    from cadx.io.h5 import read_features_h5

    features = read_features_h5(path).features
    if len(features) == 0:
        raise InputFileError(path, "the features file holds no tiles")
    return features
