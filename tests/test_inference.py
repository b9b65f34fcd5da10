"""Score-grid geometry, detections, slide features, CAMELYON16 slide outputs."""

from __future__ import annotations

import numpy as np
import pytest

from cadx.inference.detections import nms_detections, slide_features
from cadx.inference.slide import predict_slide
from cadx.io.h5 import ScoreGrid, read_score_grid_h5
from cadx.io.slide import ArraySlide
from cadx.io.tables import read_detections_csv, write_detections_csv
from cadx.models.factory import ModelConfig

TISSUE = (200, 120, 180)
MARK = (60, 20, 90)


class DarknessPredictor:
    """A stand-in model: tumour probability = fraction of very dark pixels in the tile."""

    config = ModelConfig("fake", 2, input_size=64, mean=(0.5,) * 3, std=(0.5,) * 3)

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        p = (tiles.mean(axis=-1) < 100).mean(axis=(1, 2))
        return np.stack([1 - p, p], 1).astype(np.float32)


def _slide_with_mark(x: int, y: int) -> ArraySlide:
    img = np.full((1024, 1536, 3), TISSUE, np.uint8)
    img[y : y + 128, x : x + 128] = MARK
    return ArraySlide(img, mpp=0.5, min_level_size_px=256, path="marked.png")


TUMOR = {"tumor_probability": 1}


def test_a_tile_at_xy_lands_in_the_right_cell():
    slide = _slide_with_mark(x=640, y=256)  # tile (col 5, row 2) at 128 px
    pred = predict_slide(slide, DarknessPredictor(), mpp=0.5, tile_size_px=128, min_tissue=0.5, batch_size=7,
                         channels=TUMOR)
    hm = pred.grid
    assert hm.values.shape == (1, 8, 12) and hm.channel_names == ("tumor_probability",) and hm.stride_level0_px == 128
    assert hm.cell_of(640, 256) == (2, 5)
    probs = hm.channel("tumor_probability")
    assert probs[2, 5] == pytest.approx(1.0)
    others = np.delete(probs.ravel(), 2 * 12 + 5)
    assert np.nanmax(others) == 0.0
    cx, cy = hm.center_xy(2, 5)
    assert (cx, cy) == (640 + 64, 256 + 64)
    i = np.flatnonzero((pred.tiling.coords_xy == (640, 256)).all(axis=1))
    assert pred.tile_scores.shape == (len(pred.tiling.coords_xy), 1) and pred.tile_scores[i, 0] == pytest.approx(1.0)


def test_default_channels_are_every_model_output():
    slide = _slide_with_mark(x=640, y=256)
    g = predict_slide(slide, DarknessPredictor(), mpp=0.5, tile_size_px=128).grid
    assert g.channel_names == ("class_0", "class_1") and g.values.shape == (2, 8, 12)
    np.testing.assert_allclose(np.nansum(g.values, axis=0)[~np.isnan(g.values[0])], 1.0, atol=1e-6)
    assert g.values[0, 2, 5] == pytest.approx(0.0) and g.attrs["model_outputs"] == [0, 1]

    class Named(DarknessPredictor):
        config = ModelConfig("fake", 2, input_size=64, class_names=("normal", "tumor"))

    assert predict_slide(slide, Named(), mpp=0.5, tile_size_px=128).grid.channel_names == ("normal", "tumor")


def test_overlapping_stride_gives_finer_grid():
    slide = _slide_with_mark(x=640, y=256)
    hm = predict_slide(slide, DarknessPredictor(), mpp=0.5, tile_size_px=128, stride_px=64, channels=TUMOR).grid
    probs = hm.channel()
    assert hm.stride_level0_px == 64 and probs.shape == (15, 23)
    assert probs[4, 10] == pytest.approx(1.0) and probs[4, 9] == pytest.approx(0.5)


def test_tta_of_an_invariant_model_changes_nothing():
    slide = _slide_with_mark(x=640, y=256)
    a = predict_slide(slide, DarknessPredictor(), mpp=0.5, tile_size_px=128).grid.values
    b = predict_slide(slide, DarknessPredictor(), mpp=0.5, tile_size_px=128, tta=True).grid.values
    np.testing.assert_allclose(a, b, atol=1e-6)


def _grid() -> ScoreGrid:
    probs = np.full((10, 10), 0.05, np.float32)
    probs[2, 2], probs[2, 3], probs[7, 8] = 0.9, 0.8, 0.6
    probs[0, 0] = np.nan
    return ScoreGrid(probs[None], ("tumor_probability",), stride_level0_px=100, tile_size_level0_px=100,
                     slide_size_wh=(1000, 1000), mpp=1.0)


def test_nms_keeps_peaks_and_suppresses_neighbours():
    dets = nms_detections(_grid(), threshold=0.5, radius_um=150)
    assert [(d.prob, d.x, d.y) for d in dets] == [(pytest.approx(0.9), 250.0, 250.0),
                                                  (pytest.approx(0.6), 850.0, 750.0)]
    assert len(nms_detections(_grid(), threshold=0.5, radius_um=50)) == 3


def test_detection_csv_is_the_challenge_format(tmp_path):
    dets = nms_detections(_grid(), threshold=0.5)
    path = write_detections_csv(tmp_path / "test_001.csv", dets)
    lines = path.read_text().splitlines()
    assert lines[0].split(",")[0] == "0.900000" and len(lines) == len(dets)  # no header
    assert [d.prob for d in read_detections_csv(path)] == pytest.approx([d.prob for d in dets])


def test_slide_features_known_answers():
    f = slide_features(_grid())
    assert f[0] == pytest.approx(0.9) and f[1] == pytest.approx((0.9 + 0.8 + 0.6 + 0.05 + 0.05) / 5)
    assert f[6] == 2 and f[3] == pytest.approx(3 * 0.1**2 / 1)  # two regions, 3 cells of 0.01 mm2 above 0.5
    assert f[5] == pytest.approx(2 * 0.01) and f[7] == pytest.approx(0.85)  # largest region: 2 cells, mean 0.85
    two = ScoreGrid(np.stack([_grid().values[0], np.zeros((10, 10), np.float32)]), ("tumor", "other"), 100, 100,
                    (1000, 1000), 1.0)
    np.testing.assert_allclose(slide_features(two, channel="tumor"), f)
    with pytest.raises(ValueError, match="name one"):
        nms_detections(two)


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

    def predict(self, tiles):
        assert tiles.shape[-1] == 6
        return super().predict(tiles[..., :3])


def test_predict_slide_with_context():
    slide = _slide_with_mark(x=640, y=256)
    hm = predict_slide(slide, SixChannelDarkness(), mpp=0.5, tile_size_px=128, context_mpp=1.0, channels=TUMOR).grid
    assert hm.channel()[2, 5] == pytest.approx(1.0) and hm.attrs["context_mpp"] == 1.0


def test_camelyon_predict_slides_writes_every_output_and_goes_on_past_a_bad_slide(tmp_path):
    import csv
    import json

    from PIL import Image

    from cadx.tasks.camelyon16.predict import predict_slides

    img = np.full((1024, 1536, 3), TISSUE, np.uint8)
    img[256:384, 640:768] = MARK
    Image.fromarray(img).save(tmp_path / "marked.png")
    (tmp_path / "broken.png").write_text("not an image")
    out = tmp_path / "pred"
    report = predict_slides([tmp_path / "marked.png", tmp_path / "broken.png"], DarknessPredictor(), out,
                            tile={"mpp": 0.5, "size_px": 128}, mpp_override=0.5, show_progress=False)
    assert [p.name for p, _ in report.failures] == ["broken.png"] and "not a readable image" in report.failures[0][1]
    assert report.scores == {"marked": pytest.approx(1.0)}
    assert sorted(p.name for p in out.iterdir()) == ["marked.csv", "marked.geojson", "marked.h5", "marked.png",
                                                     "marked.xml", "predict.json", "slide_scores.csv"]
    grid = read_score_grid_h5(out / "marked.h5")
    assert grid.channel_names == ("tumor_probability",) and grid.channel()[2, 5] == pytest.approx(1.0)
    assert [(d.prob, d.x, d.y) for d in read_detections_csv(out / "marked.csv")][0] == (1.0, 704.0, 320.0)
    rows = list(csv.DictReader((out / "slide_scores.csv").open()))
    assert rows[0]["slide"] == "marked" and rows[0]["score"] == "1.000000" and "largest_mean_p50" in rows[0]
    assert json.loads((out / "predict.json").read_text())["failures"][0][0].endswith("broken.png")
