"""ImageAugment and random_scale_crop: reproducible from the rng, shapes kept, the exact flips."""

from __future__ import annotations

import numpy as np

from cadx.preprocessing.augment import ColorJitter, ImageAugment, dihedral, random_scale_crop


def _pattern(h=6, w=6) -> np.ndarray:
    return np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)


def test_geometry_only_gives_exactly_the_8_symmetries():
    img = _pattern()
    aug = ImageAugment(scale=None, color=None)
    expected = {dihedral(img, k).tobytes(): k for k in range(8)}
    assert len(expected) == 8  # the pattern has no symmetry
    seen = set()
    for seed in range(64):
        out = aug(img, np.random.default_rng(seed))
        k = int(np.random.default_rng(seed).integers(8))  # the one draw the transform makes
        np.testing.assert_array_equal(out, dihedral(img, k))
        seen.add(expected[out.tobytes()])
    assert seen == set(range(8))


def test_known_flip():
    img = _pattern()
    seed = next(s for s in range(100) if np.random.default_rng(s).integers(8) == 4)
    out = ImageAugment(scale=None, color=None)(img, np.random.default_rng(seed))
    np.testing.assert_array_equal(out, img[:, ::-1])  # k = 4: left-right mirror


def test_non_square_keeps_shape_with_only_shape_preserving_symmetries():
    img = _pattern(4, 7)
    allowed = {img.tobytes(), img[::-1, ::-1].tobytes(), img[:, ::-1].tobytes(), img[::-1].tobytes()}
    outs = {ImageAugment(scale=None, color=None)(img, np.random.default_rng(s)).tobytes() for s in range(40)}
    assert outs == allowed


def test_full_augment_reproducible_shape_and_varied():
    img = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    aug = ImageAugment()
    a = aug(img, np.random.default_rng(7))
    b = aug(img, np.random.default_rng(7))
    c = aug(img, np.random.default_rng(8))
    assert a.shape == img.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_scale_crop_of_full_area_is_identity_and_crop_zooms():
    img = np.random.default_rng(1).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    same = random_scale_crop(img, np.random.default_rng(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_array_equal(same, img)
    # A quarter-area crop of a left/right split image shows a zoomed part of it.
    split = np.zeros((40, 40, 3), np.uint8)
    split[:, 20:] = 200
    crops = [random_scale_crop(split, np.random.default_rng(s), scale=(0.25, 0.25), ratio=(1, 1)) for s in range(20)]
    assert all(c.shape == (40, 40, 3) for c in crops)
    assert any(c.min() == 200 for c in crops) and any(c.max() == 0 for c in crops)


def test_colour_jitter_default_is_mild():
    img = np.full((8, 8, 3), (180, 120, 100), np.uint8)
    aug = ImageAugment(scale=None, symmetries=False)
    assert isinstance(aug.color, ColorJitter)
    outs = np.stack([aug(img, np.random.default_rng(s)) for s in range(50)]).astype(int)
    dev = np.abs(outs - img.astype(int)).max()
    assert 5 < dev < 70
