"""One reader test suite for both backends (OpenSlide TIFF and in-memory array), plus a real SVS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cadx
from cadx.errors import MissingMppError, SlideError
from cadx.io.slide import ArraySlide, SlideReader, open_slide
from cadx.io.tiff import write_pyramid_tiff

from .conftest import SVS

W, H = 1024, 768


def _image() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([xx * 255 // W, yy * 255 // H, np.full_like(xx, 128)], -1).astype(np.uint8)


@pytest.fixture(params=["openslide", "array"])
def slide(request, tmp_path: Path) -> SlideReader:
    img = _image()
    if request.param == "array":
        return ArraySlide(img, mpp=0.25, path="synthetic.tif", min_level_size_px=192)
    path = tmp_path / "synthetic.tif"
    write_pyramid_tiff(path, (W, H), lambda x, y, w, h, ds: ArraySlide(img, mpp=0.25, min_level_size_px=192)
                       .read_region((x, y), int(np.log2(ds)), (w, h)), mpp=0.25, n_levels=3)
    return open_slide(path)


def test_geometry(slide: SlideReader):
    assert slide.level_count == 3
    assert slide.level_dimensions == ((1024, 768), (512, 384), (256, 192))
    assert slide.level_downsamples == pytest.approx((1.0, 2.0, 4.0))
    assert slide.mpp_xy == pytest.approx((0.25, 0.25))
    assert slide.level_mpp(2) == pytest.approx(1.0)
    assert slide.name == "synthetic"


def test_read_region_values_and_frame(slide: SlideReader):
    # (x, y) = (512, 100) is column 512, row 100: red encodes x, green encodes y.
    px = slide.read_region((512, 100), 0, (8, 4))
    assert px.shape == (4, 8, 3) and px.dtype == np.uint8
    expect = _image()[100:104, 512:520]
    assert np.abs(px.astype(int) - expect).max() <= 6  # JPEG at quality 90
    lvl1 = slide.read_region((512, 100), 1, (4, 2))
    assert lvl1.shape == (2, 4, 3)
    assert abs(int(lvl1[0, 0, 0]) - 512 * 255 // W) <= 6


def test_partly_outside_is_white(slide: SlideReader):
    px = slide.read_region((W - 4, 0), 0, (8, 2))
    assert (px[:, 4:] == 255).all()


@pytest.mark.parametrize(("loc", "size"), [((W + 10, 0), (4, 4)), ((-100, -100), (10, 10)), ((0, 0), (0, 5))])
def test_region_outside_or_empty_rejected(slide: SlideReader, loc, size):
    with pytest.raises(SlideError, match="synthetic"):
        slide.read_region(loc, 0, size)


def test_bad_level_rejected(slide: SlideReader):
    with pytest.raises(SlideError, match="level 7 does not exist"):
        slide.read_region((0, 0), 7, (4, 4))


def test_thumbnail_and_best_level(slide: SlideReader):
    thumb = slide.get_thumbnail((128, 128))
    assert thumb.shape == (96, 128, 3)
    assert slide.best_level_for_downsample(3.0) == 1
    assert slide.best_level_for_downsample(100.0) == 2


def test_info_is_json_ready(slide: SlideReader):
    info = slide.info()
    assert info["level_count"] == 3 and info["mpp_x"] == pytest.approx(0.25)


def test_real_aperio_svs():
    with cadx.open_slide(SVS) as s:
        assert s.vendor == "aperio"
        assert s.dimensions == (2220, 2967)
        assert s.mpp == pytest.approx(0.499)
        px = s.read_region((1000, 1000), 0, (64, 64))
        assert px.shape == (64, 64, 3)
        # H&E-stained tissue there: red > blue > green (a channel swap or a blank read would fail this).
        np.testing.assert_allclose(px.reshape(-1, 3).mean(0), [163.5, 112.6, 148.6], atol=1.0)


def test_missing_mpp_says_how_to_pass_it(tmp_path: Path):
    from PIL import Image

    p = tmp_path / "plain.png"
    Image.fromarray(_image()).save(p)
    s = open_slide(p)
    assert s.mpp_xy_or_none is None
    with pytest.raises(MissingMppError, match="--mpp"):
        _ = s.mpp
    assert open_slide(p, mpp=0.5).mpp == 0.5


def test_missing_and_non_slide_files(tmp_path: Path):
    with pytest.raises(SlideError, match="no such file"):
        open_slide(tmp_path / "nope.tif")
    junk = tmp_path / "junk.tif"
    junk.write_text("this is not a TIFF")
    with pytest.raises(SlideError, match="junk.tif"):
        open_slide(junk)


def test_truncated_tiff_is_a_clean_error(tumor_slide, tmp_path: Path):
    data = tumor_slide.path.read_bytes()
    cut = tmp_path / "truncated.tif"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(SlideError, match="truncated.tif"):
        with open_slide(cut) as s:
            w, h = s.dimensions
            for y in range(0, h, 256):  # the missing tiles lie in the second half of level 0
                s.read_region((0, y), 0, (w, 256))
