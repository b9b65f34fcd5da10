"""Generated MIL bags with a known answer: one planted tile decides the slide label."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cadx.datasets.bags import BagDataset


def planted_bags(n: int, seed: int, *, dim: int = 32, tiles: tuple[int, int] = (10, 30),
                 signal: float = 5.0) -> tuple[BagDataset, list[int]]:
    """``n`` bags of N(0, 1) tile features, labels alternating 0, 1, ...; a tumour bag has one planted
    tile, at a random position, whose feature 0 is raised by ``signal``. Returns the bags and the
    planted tile of each bag (-1 in normal bags)."""
    rng = np.random.default_rng(seed)
    feats, labels, planted = [], [], []
    for i in range(n):
        x = rng.normal(0, 1, (int(rng.integers(*tiles)), dim)).astype(np.float32)
        label, where = i % 2, -1
        if label:
            where = int(rng.integers(len(x)))
            x[where, 0] += signal
        feats.append(x)
        labels.append(label)
        planted.append(where)
    return BagDataset.from_arrays(feats, labels, [f"s{seed}_{i:03d}" for i in range(n)]), planted


@pytest.fixture()
def one_thread():
    """Tiny matrices: one torch thread is faster than two on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
