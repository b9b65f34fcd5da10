"""inference.segment: a fake segmenter's known maps stitched into a pyramidal probability TIFF."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cadx.errors import CadxError
from cadx.inference.segment import read_mask_attrs, segment_slide
from cadx.io.slide import ArraySlide, open_slide
from cadx.preprocessing.masks import polygons_from_mask, rasterize_polygons


class RedPredictor:
    """A fake segmenter whose probability is each pixel's red value / 255: the answer is known everywhere."""

    config = SimpleNamespace(architecture="fake-red", to_dict=lambda: {"architecture": "fake-red"})

    def __init__(self):
        self.calls = 0

    def predict(self, x):
        self.calls += 1
        return (x[..., 0].astype(np.float32) / 255.0)[:, None]


def _slide(h=480, w=720):
    """Pink tissue with a smooth red gradient, on a white margin of 48 px."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.full((h, w, 3), 255, np.uint8)
    red = (120 + 100 * np.sin(xx / 37.0) * np.cos(yy / 23.0) ** 2).clip(0, 255)
    tissue = (slice(48, h - 48), slice(48, w - 48))
    img[tissue] = np.stack([red, np.full_like(red, 60), np.full_like(red, 170)], -1).astype(np.uint8)[tissue]
    return ArraySlide(img, mpp=0.5, path="fake_slide.tif", min_level_size_px=64), img


def test_known_map_comes_back_with_no_seam(tmp_path):
    slide, img = _slide()
    res = segment_slide(slide, RedPredictor(), tmp_path / "m.tif", mpp=0.5, tile_size_px=64, overlap_px=16,
                        out_downsample=4, min_tissue=0.5, batch_size=8)
    assert res.downsample == 4.0 and res.mpp == 2.0
    with open_slide(res.path) as m:
        got = m.read_region((0, 0), 0, m.dimensions)[:, :, 0].astype(np.float32)
    expected = img[..., 0].astype(np.float32).reshape(120, 4, 180, 4).mean(axis=(1, 3))
    covered = got[:120, :180] > 0
    assert covered.mean() > 0.6    # the tissue tiles
    # Every covered pixel equals the block mean of the truth (uint8 rounding): no seam at tile borders.
    assert np.abs(got[:120, :180][covered] - expected[covered]).max() <= 1.0
    assert (got[120:] == 0).all() and (got[:, 180:] == 0).all()    # padding


def test_mask_tiff_reopens_with_the_right_levels_and_mpp(tmp_path):
    slide, _ = _slide()
    res = segment_slide(slide, RedPredictor(), tmp_path / "m.tif", mpp=0.5, tile_size_px=64, overlap_px=16,
                        out_downsample=2, min_level_size_px=64)
    attrs = read_mask_attrs(res.path)
    assert attrs["slide_size_wh"] == [720, 480] and attrs["downsample"] == 2.0 and attrs["model"] == "fake-red"
    with open_slide(res.path) as m:
        assert m.dimensions == res.size_wh == (360, 240)
        assert m.level_count == res.n_levels == 2
        assert m.level_dimensions == ((360, 240), (180, 120))
        assert m.level_downsamples == (1.0, 2.0)
        assert m.mpp == pytest.approx(1.0, rel=1e-4)


def test_a_classifier_is_refused_with_one_line(tmp_path):
    class Classifier(RedPredictor):
        def predict(self, x):
            return np.zeros((len(x), 2), np.float32)

    slide, _ = _slide()
    with pytest.raises(CadxError, match="not a segmentation model"):
        segment_slide(slide, Classifier(), tmp_path / "m.tif", mpp=0.5, tile_size_px=64)
    assert not list(tmp_path.iterdir())    # no partial TIFF, no scratch file
    with pytest.raises(ValueError, match="divide"):
        segment_slide(slide, RedPredictor(), tmp_path / "m.tif", mpp=0.5, tile_size_px=64, out_downsample=3)


def test_polygons_round_trip_through_rasterisation():
    rng = np.random.default_rng(3)
    from scipy import ndimage as ndi

    mask = ndi.binary_opening(ndi.gaussian_filter(rng.random((90, 120)), 4) > 0.5, iterations=2)
    mask[40:50, 60:70] = False          # a hole or two
    polys = polygons_from_mask(mask, downsample=8.0, origin_xy=(16, 24))
    assert {v for _, v in polys} <= {0, 1} and any(v == 1 for _, v in polys)
    back = rasterize_polygons(polys, mask.shape, downsample=8.0, origin_xy=(16, 24)).astype(bool)
    assert (back != mask).mean() < 0.002
