"""Heatmap geometry, detections, slide outputs."""

from __future__ import annotations

import numpy as np
import pytest

from cadx.inference.detections import nms_detections, read_detections_csv, slide_features, write_detections_csv
from cadx.inference.heatmap import heatmap_overlay, predict_slide
from cadx.io.heatmap_h5 import Heatmap, read_heatmap_h5, write_heatmap_h5
from cadx.io.slide import ArraySlide
from cadx.models.factory import ModelConfig

TISSUE = (200, 120, 180)
MARK = (60, 20, 90)


class DarknessPredictor:
    """A stand-in model: tumour probability = fraction of very dark pixels in the tile."""

    config = ModelConfig("fake", 2, input_size=64, mean=(0.5,) * 3, std=(0.5,) * 3)

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        p = (tiles.mean(axis=-1) < 100).mean(axis=(1, 2))
        return np.stack([1 - p, p], 1).astype(np.float32)


def _slide_with_mark(x: int, y: int) -> ArraySlide:
    img = np.full((1024, 1536, 3), TISSUE, np.uint8)
    img[y : y + 128, x : x + 128] = MARK
    return ArraySlide(img, mpp=0.5, min_level_size_px=256, path="marked.png")


def test_a_tile_at_xy_lands_in_the_right_cell():
    slide = _slide_with_mark(x=640, y=256)  # tile (col 5, row 2) at 128 px
    pred = predict_slide(slide, DarknessPredictor(), mpp=0.5, tile_size_px=128, min_tissue=0.5, batch_size=7)
    hm = pred.heatmap
    assert hm.probs.shape == (8, 12) and hm.stride_level0_px == 128
    assert hm.cell_of(640, 256) == (2, 5)
    assert hm.probs[2, 5] == pytest.approx(1.0)
    others = np.delete(hm.probs.ravel(), 2 * 12 + 5)
    assert np.nanmax(others) == 0.0
    cx, cy = hm.center_xy(2, 5)
    assert (cx, cy) == (640 + 64, 256 + 64)


def test_overlapping_stride_gives_finer_grid():
    slide = _slide_with_mark(x=640, y=256)
    hm = predict_slide(slide, DarknessPredictor(), mpp=0.5, tile_size_px=128, stride_px=64).heatmap
    assert hm.stride_level0_px == 64 and hm.probs.shape == (15, 23)
    assert hm.probs[4, 10] == pytest.approx(1.0) and hm.probs[4, 9] == pytest.approx(0.5)


def test_tta_of_an_invariant_model_changes_nothing():
    slide = _slide_with_mark(x=640, y=256)
    a = predict_slide(slide, DarknessPredictor(), mpp=0.5, tile_size_px=128).heatmap.probs
    b = predict_slide(slide, DarknessPredictor(), mpp=0.5, tile_size_px=128, tta=True).heatmap.probs
    np.testing.assert_allclose(a, b, atol=1e-6)


def _grid() -> Heatmap:
    probs = np.full((10, 10), 0.05, np.float32)
    probs[2, 2], probs[2, 3], probs[7, 8] = 0.9, 0.8, 0.6
    probs[0, 0] = np.nan
    return Heatmap(probs, stride_level0_px=100, tile_size_level0_px=100, slide_size_wh=(1000, 1000), mpp=1.0)


def test_nms_keeps_peaks_and_suppresses_neighbours():
    dets = nms_detections(_grid(), threshold=0.5, radius_um=150)
    assert [(d.prob, d.x, d.y) for d in dets] == [(pytest.approx(0.9), 250.0, 250.0), (pytest.approx(0.6), 850.0, 750.0)]
    assert len(nms_detections(_grid(), threshold=0.5, radius_um=50)) == 3


def test_detection_csv_is_the_challenge_format(tmp_path):
    dets = nms_detections(_grid(), threshold=0.5)
    path = write_detections_csv(tmp_path / "test_001.csv", dets)
    lines = path.read_text().splitlines()
    assert lines[0].split(",")[0] == "0.900000" and len(lines) == len(dets)  # no header
    assert [d.prob for d in read_detections_csv(path)] == pytest.approx([d.prob for d in dets])


def test_heatmap_h5_round_trip_and_features(tmp_path):
    hm = _grid()
    hm.attrs = {"slide": "s", "model": "m"}
    back = read_heatmap_h5(write_heatmap_h5(tmp_path / "s.h5", hm, tiles={"probs": np.ones(3)}))
    np.testing.assert_array_equal(back.probs, hm.probs)
    assert back.stride_level0_px == 100 and back.slide_size_wh == (1000, 1000) and back.attrs["model"] == "m"
    f = slide_features(hm)
    assert f[0] == pytest.approx(0.9) and f[6] == 2  # max, and two regions above 0.5


def test_overlay_is_transparent_outside_tissue():
    hm = _grid()
    thumb = np.full((100, 100, 3), 240, np.uint8)
    out = heatmap_overlay(thumb, hm)
    assert (out[2, 2] == 240).all()  # the NaN cell (0, 0) leaves the thumbnail untouched
    assert not (out[25, 25] == 240).all()


def test_context_tile_shares_the_centre():
    from cadx.io.resolution import plan_read, read_tile_with_context

    yy, xx = np.mgrid[0:1024, 0:1024]
    img = np.stack([xx // 4, yy // 4, np.full_like(xx, 128)], -1).astype(np.uint8)
    slide = ArraySlide(img, mpp=0.5, min_level_size_px=128)
    plan, ctx = plan_read(slide, 0.5, 64), plan_read(slide, 2.0, 64)
    t = read_tile_with_context(slide, (400, 300), plan, ctx)
    assert t.shape == (64, 64, 6)
    # Centre pixel of both views: level-0 (432, 332) -> red 108, green 83 (within a coarse pixel).
    assert abs(int(t[32, 32, 0]) - 108) <= 1 and abs(int(t[32, 32, 3]) - 108) <= 2
    assert abs(int(t[32, 32, 1]) - 83) <= 1 and abs(int(t[32, 32, 4]) - 83) <= 2
    # The context spans 4x the area: its left edge is 96 level-0 px further left.
    assert abs(int(t[32, 0, 3]) - (432 - 128) // 4) <= 2


class SixChannelDarkness(DarknessPredictor):
    config = ModelConfig("fake6", 2, in_chans=6, input_size=64, mean=(0.5,) * 6, std=(0.5,) * 6)

    def predict_proba(self, tiles):
        assert tiles.shape[-1] == 6
        return super().predict_proba(tiles[..., :3])


def test_predict_slide_with_context():
    slide = _slide_with_mark(x=640, y=256)
    hm = predict_slide(slide, SixChannelDarkness(), mpp=0.5, tile_size_px=128, context_mpp=1.0).heatmap
    assert hm.probs[2, 5] == pytest.approx(1.0) and hm.attrs["context_mpp"] == 1.0
