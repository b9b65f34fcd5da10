"""Known-answer tests for the pure-numpy preprocessing."""

from __future__ import annotations

import numpy as np
import pytest

from cadx.preprocessing.masks import rasterize_polygons
from cadx.preprocessing.tiling import box_fractions, grid_positions, integral_image, tile_grid
from cadx.preprocessing.tissue import tissue_mask

SQUARE = np.array([[0, 0], [100, 0], [100, 100], [0, 100]], float)
HOLE = np.array([[40, 40], [60, 40], [60, 60], [40, 60]], float)


def test_polygon_area_with_hole_painted_last():
    m = rasterize_polygons([(SQUARE, 1), (HOLE, 0)], (120, 120))
    assert m.sum() == 100 * 100 - 20 * 20
    assert m[50, 50] == 0 and m[10, 10] == 1 and m[100, 100] == 0


def test_polygon_at_downsample_and_origin():
    m = rasterize_polygons([(SQUARE + 1000, 1)], (30, 30), downsample=4, origin_xy=(1000, 1000))
    assert m.sum() == 25 * 25  # 100 level-0 px = 25 px at downsample 4
    tri = np.array([[0, 0], [200, 0], [0, 200]], float)
    area = rasterize_polygons([(tri, 1)], (200, 200)).sum()
    assert abs(area - 200 * 200 / 2) < 200  # within one boundary row


def test_exact_tile_grid_of_a_hand_made_mask():
    # A 1000 x 600 slide, mask at downsample 100 (10 x 6 px); tissue in the left half, top 2/3.
    mask = np.zeros((6, 10), bool)
    mask[:4, :5] = True
    g = tile_grid(mask, mask_downsample=100, slide_size_wh=(1000, 600), tile_size_level0_px=200, min_fraction=0.6)
    assert g.grid_shape_hw == (3, 5)
    assert g.coords_xy.tolist() == [[0, 0], [200, 0], [0, 200], [200, 200]]
    np.testing.assert_allclose(g.tissue_fraction, 1.0)
    g = tile_grid(mask, mask_downsample=100, slide_size_wh=(1000, 600), tile_size_level0_px=200, min_fraction=0.5)
    # x=400 tiles cover mask columns 4-5 (half tissue) and are kept at 0.5; the y=400 row is empty.
    assert sorted(map(tuple, g.coords_xy.tolist())) == [(0, 0), (0, 200), (200, 0), (200, 200), (400, 0), (400, 200)]
    np.testing.assert_allclose(sorted(g.tissue_fraction), [0.5, 0.5, 1, 1, 1, 1])


def test_grid_with_overlap_keeps_tiles_inside():
    xy, shape = grid_positions((1000, 600), tile_size_px=256, stride_px=192)
    assert shape == (2, 4)
    assert xy[:, 0].max() + 256 <= 1000 and xy[:, 1].max() + 256 <= 600


def test_subpixel_fractions_are_exact():
    mask = np.zeros((4, 4), np.uint8)
    mask[1, 1] = 1
    table = integral_image(mask)
    # A box from mask coords (0.5, 0.5) to (1.5, 1.5) overlaps the one tissue pixel by 0.25 of its area.
    f = box_fractions(table, np.array([[5, 5]]), 10, mask_downsample=10)
    assert f[0] == pytest.approx(0.25)
    assert box_fractions(table, np.array([[10, 10]]), 10, mask_downsample=10)[0] == pytest.approx(1.0)
    assert box_fractions(table, np.array([[0, 0]]), 40, mask_downsample=10, inset_frac=0.25)[0] == pytest.approx(0.25)


def _slide_like(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    img = np.full((200, 300, 3), 236, np.uint8) + rng.integers(0, 6, (200, 300, 3), dtype=np.uint8)  # tinted glass
    truth = np.zeros((200, 300), bool)
    yy, xx = np.mgrid[0:200, 0:300]
    truth |= ((yy - 100) / 60) ** 2 + ((xx - 100) / 70) ** 2 <= 1
    img[truth] = (205, 140, 190)
    return img, truth


def test_tissue_mask_finds_tissue_and_drops_border_and_pen():
    img, truth = _slide_like(np.random.default_rng(0))
    img[:, :8] = 10  # black scanner border
    img[20:28, 190:290] = (40, 170, 60)  # green marker on glass
    tm = tissue_mask(img, mpp=16.0)
    assert tm.method == "otsu"
    iou = (tm.mask & truth).sum() / (tm.mask | truth).sum()
    assert iou >= 0.95
    assert not tm.mask[:, :8].any() and not tm.mask[20:28, 190:290].any()
    assert tm.area_um2 == pytest.approx(tm.mask.sum() * 256.0)


def test_tissue_mask_falls_back_when_otsu_has_nothing_to_split():
    img = np.full((64, 64, 3), (200, 130, 185), np.uint8)  # all tissue, uniform
    tm = tissue_mask(img, mpp=16.0, min_object_um2=0, min_hole_um2=0)
    assert tm.method == "fixed" and tm.mask.all()
    glass = np.full((64, 64, 3), 240, np.uint8)
    assert not tissue_mask(glass, mpp=16.0).mask.any()


def test_small_objects_and_holes_in_um2():
    img = np.full((100, 100, 3), 240, np.uint8)
    img[10:60, 10:60] = (200, 120, 180)
    img[30:33, 30:33] = 240  # 9 px hole = 2304 um2 at 16 um/px: filled
    img[80:82, 80:82] = (200, 120, 180)  # 4 px speck: removed
    tm = tissue_mask(img, mpp=16.0, close_radius_um=0, min_object_um2=5000, min_hole_um2=5000, median_size_px=1)
    assert tm.mask[31, 31] and not tm.mask[81, 81]
    assert tm.mask.sum() == 50 * 50
