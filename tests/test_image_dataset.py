"""ImageDataset: the same item gives the same tensor in any order or process; streams fixed by the seed."""

from __future__ import annotations

import numpy as np
import pytest

from cadx.datasets.images import ImageDataset, sample_stream
from cadx.errors import InputFileError
from cadx.preprocessing.augment import ImageAugment
from cadx.preprocessing.images import ImagePreprocess

from .derm_data import make_class_folders


@pytest.fixture()
def images(tmp_path):
    root = make_class_folders(tmp_path / "f", n_per_class=3, size_px=40)
    paths = sorted(root.rglob("*.png"))
    return paths, [0 if p.parent.name == "MEL" else 1 for p in paths]


def _dataset(paths, labels, **kw):
    return ImageDataset(paths, labels, preprocess=ImagePreprocess(size_px=24), transform=ImageAugment(),
                        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), seed=7, **kw)


def test_items_are_reproducible_and_draws_differ(images):
    paths, labels = images
    a, b = _dataset(paths, labels), _dataset(paths, labels, cache=True)
    xs = [a[2, d][0] for d in range(6)]
    for d in reversed(range(6)):  # other order, other instance, with the cache
        assert np.array_equal(b[2, d][0], xs[d])
    assert any(not np.array_equal(xs[0], x) for x in xs[1:])
    assert a[2, 0][0].shape == (3, 24, 24) and a[2, 0][0].dtype == np.float32
    assert a[4][1] == labels[4] and np.array_equal(a[4][0], a[4, 0][0])


def test_without_transform_the_item_is_the_preprocessed_image_normalised(images):
    paths, labels = images
    ds = ImageDataset(paths, labels, preprocess=ImagePreprocess(size_px=24), mean=(0.5,) * 3, std=(0.25,) * 3)
    img = ds.image(0)
    x, _ = ds[0, 3]
    assert np.allclose(x, (img.transpose(2, 0, 1) / 255.0 - 0.5) / 0.25, atol=1e-6)


def test_unreadable_image_names_the_file(images, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    ds = _dataset([bad], [0])
    with pytest.raises(InputFileError, match="bad.jpg"):
        ds[0]


def test_balanced_stream_draws_classes_equally_and_is_seeded():
    labels = [0] * 95 + [1] * 5
    s = sample_stream(labels, num_samples=4000, seed=3)
    assert abs((s >= 95).mean() - 0.5) < 0.03
    assert np.array_equal(s, sample_stream(labels, num_samples=4000, seed=3))
    assert not np.array_equal(s, sample_stream(labels, num_samples=4000, seed=4))
    assert set(s[s >= 95].tolist()) == set(range(95, 100))


def test_unbalanced_stream_is_epochs_of_permutations():
    s = sample_stream([0, 0, 1, 1, 1], num_samples=12, seed=0, balanced=False)
    assert sorted(s[:5].tolist()) == [0, 1, 2, 3, 4] and sorted(s[5:10].tolist()) == [0, 1, 2, 3, 4]
    assert len(s) == 12
