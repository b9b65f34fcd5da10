"""cadx.preprocessing.images: border crop, resizing, cropping and the ImagePreprocess recipe."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cadx.errors import ConfigError
from cadx.preprocessing.images import ImagePreprocess, center_crop, crop_dark_border, resize, resize_short_side


def _vignetted(shape_hw=(300, 400), centre_rc=(140, 210), radius=120, seed=0) -> np.ndarray:
    """Textured skin inside a disc, near-black noise outside (a dermoscope's vignette)."""
    rng = np.random.default_rng(seed)
    h, w = shape_hw
    rr, cc = np.mgrid[:h, :w]
    inside = (rr - centre_rc[0]) ** 2 + (cc - centre_rc[1]) ** 2 <= radius**2
    skin = np.clip(rng.normal((190, 140, 120), 12, (h, w, 3)), 0, 255)
    dark = rng.integers(0, 18, (h, w, 3))
    img = np.where(inside[:, :, None], skin, dark).astype(np.uint8)
    img[5, 5] = img[290, 395] = 255  # specks of light in the black corners
    img[140, 180:240] = (20, 15, 10)  # a dark hair across the middle
    return img


def test_crop_dark_border_finds_the_disc():
    img = _vignetted()
    out = crop_dark_border(img)
    # The disc spans rows 20..260 and columns 90..330 (inclusive); allow 3 px.
    assert abs(out.shape[0] - 241) <= 3 and abs(out.shape[1] - 241) <= 3
    # Locate the crop: it is a view into img.
    offset = (out.__array_interface__["data"][0] - img.__array_interface__["data"][0]) // 3
    row0, col0 = divmod(offset, img.shape[1])
    assert abs(row0 - 20) <= 3 and abs(col0 - 90) <= 3


def test_crop_dark_border_leaves_borderless_and_all_dark_images_alone():
    skin = np.random.default_rng(1).integers(100, 220, (50, 70, 3), dtype=np.uint8)
    skin[20:30, 30:40] = 5  # a black lesion in the middle is not a border
    assert crop_dark_border(skin) is skin
    dark = np.full((20, 20, 3), 10, np.uint8)
    assert crop_dark_border(dark) is dark


def test_crop_dark_border_straight_band():
    img = np.full((40, 50, 3), 150, np.uint8)
    img[:, :7] = 0
    img[-4:] = 3
    assert crop_dark_border(img).shape == (36, 43, 3)


def test_resize_short_side_and_center_crop_known_shapes():
    img = np.zeros((450, 600, 3), np.uint8)
    assert resize_short_side(img, 224).shape == (224, 299, 3)
    assert resize_short_side(np.zeros((601, 300, 3), np.uint8), 100).shape == (200, 100, 3)
    crop = center_crop(np.arange(7 * 9 * 3, dtype=np.uint8).reshape(7, 9, 3), 3)
    assert crop[0, 0, 0] == (2 * 9 + 3) * 3
    with pytest.raises(ValueError, match="smaller than the 10 px crop"):
        center_crop(np.zeros((8, 20, 3), np.uint8), 10)


def test_resize_keeps_a_smooth_gradient():
    ramp = np.repeat(np.linspace(0, 255, 64)[None, :, None], 3, axis=2).repeat(8, axis=0).astype(np.uint8)
    small = resize(ramp, (4, 16))
    assert small.shape == (4, 16, 3)
    assert np.all(np.diff(small[0, :, 0].astype(int)) > 0)
    np.testing.assert_allclose(small[0, :, 0], np.linspace(8, 247, 16), atol=3)


def test_image_preprocess_output_and_colour():
    img = _vignetted()
    cast = np.clip(img * np.array([1.0, 0.85, 0.7]), 0, 255).astype(np.uint8)
    prep = ImagePreprocess(size_px=64)
    out = prep(cast)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert out.mean() > 100  # the dark border is gone
    # Colour constancy: the two pictures under different light have the same chromaticity
    # (Shades of Gray fixes the colour of the light, not its brightness).
    def chroma(x):
        m = x.reshape(-1, 3).mean(0)
        return m / m.sum()

    np.testing.assert_allclose(chroma(out), chroma(prep(img)), atol=0.005)
    assert abs(chroma(cast[20:260, 90:330])[0] - chroma(out)[0]) > 0.03  # the cast was visible
    plain = ImagePreprocess(size_px=64, colour_constancy=False, crop_border=False)(cast)
    assert plain.shape == (64, 64, 3) and plain.mean() < out.mean()


def test_image_preprocess_dict_round_trip_and_errors():
    prep = ImagePreprocess(size_px=96, colour_constancy=False, p=math.inf, border_threshold=25)
    d = prep.to_dict()
    assert d == {"size_px": 96, "colour_constancy": False, "crop_border": True, "p": "inf", "border_threshold": 25}
    assert ImagePreprocess.from_dict(d) == prep
    assert ImagePreprocess.from_dict({}) == ImagePreprocess()
    with pytest.raises(ConfigError, match="unknown key"):
        ImagePreprocess.from_dict({"size": 224})
    with pytest.raises(ConfigError, match="size_px must be an integer"):
        ImagePreprocess.from_dict({"size_px": "224"})
    with pytest.raises(ConfigError, match="p must be a number >= 1"):
        ImagePreprocess(p=0.5)
    with pytest.raises(ValueError, match="uint8 RGB"):
        prep(np.zeros((10, 10), np.uint8))
