"""BagDataset: bags of tile features from arrays or features files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import cadx.io.h5
from cadx.datasets.bags import BagDataset
from cadx.errors import ConfigError, InputFileError


def test_items_are_float32_tensors_sharing_the_arrays():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.ones((2, 4), np.float64)
    bags = BagDataset.from_arrays([a, b], [1, 0], ["t", "n"])
    x, label, name = bags[0]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and (label, name) == (1, "t")
    assert np.shares_memory(x.numpy(), a)  # float32 arrays are not copied
    assert bags[1][0].dtype == torch.float32 and bags.features(1).dtype == np.float32
    assert bags.labels.tolist() == [1, 0] and bags.names == ("t", "n") and bags.feature_dim == 4
    assert BagDataset.from_arrays([a], [0]).names == ("bag_0",)


def test_subset_keeps_order_labels_and_names():
    bags = BagDataset.from_arrays([np.full((i + 1, 2), i, np.float32) for i in range(5)], [0, 1, 0, 1, 1],
                                  list("abcde"))
    sub = bags.subset([4, 1, 2])
    assert len(sub) == 3 and sub.names == ("e", "b", "c") and sub.labels.tolist() == [1, 1, 0]
    x, label, name = sub[0]
    assert x.shape == (5, 2) and float(x[0, 0]) == 4 and (label, name) == (1, "e")
    assert sub.subset([1]).names == ("b",) and len(bags) == 5


def test_bags_made_on_demand_are_made_only_when_used():
    made = []

    class Lazy:
        def __len__(self):
            return 3

        def __getitem__(self, i):
            made.append(i)
            return np.zeros((2, 3), np.float32)

    bags = BagDataset.from_arrays(Lazy(), [0, 1, 0])
    assert made == []
    bags[2]
    assert made == [2]


def test_bad_bags_are_refused():
    with pytest.raises(ConfigError, match="2 bags, 1 labels"):
        BagDataset.from_arrays([np.ones((1, 2))] * 2, [0])
    with pytest.raises(ConfigError, match="unique"):
        BagDataset.from_arrays([np.ones((1, 2))] * 2, [0, 1], ["a", "a"])
    with pytest.raises(ConfigError, match="integers >= 0"):
        BagDataset.from_arrays([np.ones((1, 2))], [-1])
    bags = BagDataset.from_arrays([np.ones((0, 2)), np.ones(3)], [0, 1], ["empty", "flat"])
    with pytest.raises(ConfigError, match="'empty'.*N >= 1"):
        bags[0]
    with pytest.raises(ConfigError, match="'flat'"):
        bags[1]


class _Reader:
    """Stands in for cadx.io.h5.read_features_h5 (written on another branch): counts reads."""

    def __init__(self, features: dict[str, np.ndarray]):
        self.features, self.reads = features, []

    def __call__(self, path):
        self.reads.append(Path(path).name)
        if Path(path).name not in self.features:
            raise InputFileError(path, "not a features file")

        class Tiles:
            features = self.features[Path(path).name]

        return Tiles()


@pytest.mark.parametrize("in_memory", [True, False])
def test_features_files_are_read_once_in_memory_or_on_each_use(monkeypatch, tmp_path, in_memory):
    reader = _Reader({"tumor_001.h5": np.ones((4, 3), np.float32), "normal_001.h5": np.zeros((2, 3), np.float32)})
    monkeypatch.setattr(cadx.io.h5, "read_features_h5", reader, raising=False)
    bags = BagDataset([tmp_path / "tumor_001.h5", tmp_path / "normal_001.h5"], [1, 0], in_memory=in_memory)
    assert bags.names == ("tumor_001", "normal_001")
    assert reader.reads == (["tumor_001.h5", "normal_001.h5"] if in_memory else [])
    for _ in range(2):
        x, label, name = bags[1]
    assert x.shape == (2, 3) and (label, name) == (0, "normal_001")
    # In memory: no further reads; otherwise one read per use.
    assert reader.reads == (["tumor_001.h5", "normal_001.h5"] if in_memory else ["normal_001.h5"] * 2)
    with pytest.raises(InputFileError, match="not a features file"):
        BagDataset([tmp_path / "other.h5"], [0], in_memory=True)
    empty = _Reader({"e.h5": np.zeros((0, 3), np.float32)})
    monkeypatch.setattr(cadx.io.h5, "read_features_h5", empty)
    with pytest.raises(InputFileError, match="no tiles"):
        BagDataset([tmp_path / "e.h5"], [0])
