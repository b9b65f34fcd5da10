"""Group-level stratified splits: no group on both sides, class proportions kept (known answers)."""

from __future__ import annotations

import numpy as np
import pytest

from cadx.datasets.splits import grouped_stratified_split


def test_singleton_groups_give_the_exact_class_counts():
    labels = [0] * 10 + [1] * 30 + [2] * 5
    groups = [f"g{i}" for i in range(len(labels))]
    train, val = grouped_stratified_split(labels, groups, val_fraction=0.2, seed=3)
    y = np.asarray(labels)
    assert np.bincount(y[val]).tolist() == [2, 6, 1]
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(labels)))


@pytest.mark.parametrize("seed", range(8))
def test_lesions_never_straddle_and_proportions_stay_within_one_image(seed):
    rng = np.random.default_rng(100 + seed)
    labels, groups = [], []
    for lesion in range(60):  # one or two images per lesion, one diagnosis per lesion
        c = int(rng.choice(3, p=[0.2, 0.6, 0.2]))
        for _ in range(int(rng.integers(1, 3))):
            labels.append(c)
            groups.append(f"IL_{lesion:04d}")
    train, val = grouped_stratified_split(labels, groups, val_fraction=0.25, seed=seed)
    g = np.asarray(groups)
    assert not set(g[train]) & set(g[val])
    y = np.asarray(labels)
    for c in range(3):
        assert abs((y[val] == c).sum() - 0.25 * (y == c).sum()) <= 1.0, c


def test_seed_reproduces_and_changes_the_split():
    labels = [0, 1] * 20
    groups = [f"g{i // 2}_{i % 2}" for i in range(40)]
    a = grouped_stratified_split(labels, groups, val_fraction=0.3, seed=1)
    b = grouped_stratified_split(labels, groups, val_fraction=0.3, seed=1)
    c = grouped_stratified_split(labels, groups, val_fraction=0.3, seed=2)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])


def test_mixed_label_group_stays_together_and_single_group_class_stays_in_training():
    labels = [0, 0, 0, 0, 1, 0, 2, 2]
    groups = ["a", "b", "c", "d", "d", "e", "f", "f"]  # d holds classes 0 and 1; class 2 is one lesion
    for seed in range(5):
        train, val = grouped_stratified_split(labels, groups, val_fraction=0.4, seed=seed)
        assert {4, 3} <= set(train.tolist()) or {4, 3} <= set(val.tolist())
        assert {6, 7} <= set(train.tolist())


def test_small_fraction_still_puts_one_group_of_each_class_in_validation():
    labels = [0] * 4 + [1] * 4
    groups = list("aabbccdd")
    train, val = grouped_stratified_split(labels, groups, val_fraction=0.05, seed=0)
    assert sorted(np.asarray(labels)[val].tolist()) == [0, 0, 1, 1]


def test_length_mismatch_is_a_bug():
    with pytest.raises(ValueError, match="differ in length"):
        grouped_stratified_split([0, 1], ["a"], val_fraction=0.5)
