"""cadx.preprocessing.colour: known answers for Shades of Gray and HSV."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cadx.preprocessing.colour import estimate_illuminant, rgb_to_hsv, shades_of_gray


def _textured_grey(seed: int = 0, shape=(32, 48)) -> np.ndarray:
    """A grey (R = G = B) image with texture, values 40..180 as float."""
    g = np.random.default_rng(seed).uniform(40, 180, shape)
    return np.repeat(g[:, :, None], 3, axis=2)


@pytest.mark.parametrize("p", [1, 2, 6, math.inf])
def test_grey_scene_under_coloured_light_becomes_neutral(p):
    grey = _textured_grey()
    cast = np.rint(grey * (1.25, 1.0, 0.65)).astype(np.uint8)  # warm light
    assert np.abs(cast[..., 0].astype(int) - cast[..., 2]).mean() > 30  # clearly cast before
    out = shades_of_gray(cast, p=p)
    assert out.dtype == np.uint8 and out.shape == cast.shape
    spread = out.astype(int).max(axis=2) - out.astype(int).min(axis=2)
    assert spread.max() <= 2  # neutral up to rounding of the cast image
    # Brightness follows the original texture (correlation 1 up to rounding).
    assert np.corrcoef(out[..., 1].ravel(), grey[..., 1].ravel())[0, 1] > 0.999


def test_illuminant_of_uniform_image_is_its_colour():
    img = np.full((5, 7, 3), (210, 140, 90), np.uint8)
    for p in (1, 3, 6, math.inf):
        np.testing.assert_allclose(estimate_illuminant(img, p=p), (210, 140, 90), rtol=1e-12)


def test_illuminant_known_p_means():
    img = np.array([[[1, 0, 4], [3, 0, 0]]], np.uint8)
    np.testing.assert_allclose(estimate_illuminant(img, p=1), (2.0, 0.0, 2.0))
    np.testing.assert_allclose(estimate_illuminant(img, p=2), (math.sqrt(5), 0.0, math.sqrt(8)))
    np.testing.assert_allclose(estimate_illuminant(img, p=math.inf), (3, 0, 4))
    with pytest.raises(ValueError, match="p must be >= 1"):
        estimate_illuminant(img, p=0.5)


def test_p1_is_grey_world():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 200, (20, 30, 3)).astype(np.uint8)
    mean = img.reshape(-1, 3).mean(axis=0)
    # Grey World: scale each channel so the mean colour is grey, with the overall gain of
    # shades_of_gray (|mean| / sqrt(3) over the mean).
    expected = np.clip(np.rint(img * (np.linalg.norm(mean) / (math.sqrt(3) * mean))), 0, 255)
    np.testing.assert_array_equal(shades_of_gray(img, p=1), expected.astype(np.uint8))
    assert not np.array_equal(shades_of_gray(img, p=6), shades_of_gray(img, p=1))


def test_grey_light_leaves_image_and_black_image_unchanged():
    img = np.random.default_rng(4).integers(0, 256, (6, 6), dtype=np.uint8)
    grey = np.repeat(img[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(shades_of_gray(grey), grey)
    black = np.zeros((3, 3, 3), np.uint8)
    np.testing.assert_array_equal(shades_of_gray(black), black)


def test_rgb_to_hsv_matches_skimage():
    from skimage.color import rgb2hsv

    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    rgb[0, :5] = [(0, 0, 0), (255, 255, 255), (7, 7, 7), (255, 0, 255), (0, 255, 0)]
    ours = rgb_to_hsv(rgb)
    assert ours.dtype == np.float32 and ours.shape == rgb.shape
    np.testing.assert_allclose(ours, rgb2hsv(rgb), atol=1e-6)
    np.testing.assert_allclose(rgb_to_hsv(rgb[3]), rgb2hsv(rgb[3][None])[0], atol=1e-6)  # any leading shape


def test_uint8_fast_path_equals_powering_every_pixel():
    import numpy as np

    from cadx.preprocessing.colour import estimate_illuminant, shades_of_gray

    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    img[..., 2] //= 3  # a cast
    x = img.reshape(-1, 3).astype(np.float64)
    peak = x.max(axis=0)
    oracle = peak * np.mean((x / peak) ** 6, axis=0) ** (1 / 6)
    assert np.allclose(estimate_illuminant(img, p=6), oracle, rtol=1e-12)
    assert np.allclose(estimate_illuminant(img.astype(np.float64), p=6), oracle, rtol=1e-12)
    gain = (np.sqrt((oracle**2).sum()) / (np.sqrt(3.0) * oracle)).astype(np.float32)
    expected = np.clip(np.rint(img.astype(np.float32) * gain), 0, 255).astype(np.uint8)
    assert np.array_equal(shades_of_gray(img, p=6), expected)
