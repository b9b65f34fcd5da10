"""The one renderer: grid geometry on the thumbnail, colour order, transparency, outlines; plots."""

from __future__ import annotations

import numpy as np
import pytest

from cadx.viz.overlay import (
    blend,
    colourise,
    draw_boxes,
    draw_outlines,
    grid_layer,
    overlay_grid,
    overlay_mask,
    thumbnail_scale,
)

WHITE = 255


def _tiny():
    """A 1000 x 600 px slide, 200-px tiles every 100 px (5 x 9 cells), a 100 x 60 thumbnail."""
    grid = np.full((5, 9), np.nan)
    return grid, np.full((60, 100, 3), WHITE, np.uint8), thumbnail_scale((60, 100), (1000, 600))


def test_known_answer_which_thumbnail_pixels_a_cell_colours():
    grid, thumb, scale = _tiny()
    assert scale == pytest.approx(0.1)
    grid[1, 2] = 1.0  # tile at level-0 (200, 100), 200 px: centre (300, 200); its 100-px cell spans 250..350, 150..250
    grid[4, 8] = 0.0  # the last cell: thumbnail rows 45..54, cols 85..94
    out = overlay_grid(thumb, grid, scale=scale, stride_level0_px=100, tile_size_level0_px=200)
    coloured = (out != WHITE).any(axis=2)
    expect = np.zeros((60, 100), bool)
    expect[15:25, 25:35] = True
    expect[45:55, 85:95] = True
    np.testing.assert_array_equal(coloured, expect)
    # The colour is the colour map's, blended at alpha 0.55 (quantised to 140/255) over white.
    import matplotlib

    a = 140 / 255
    for (r, c), v in (((20, 30), 1.0), ((50, 90), 0.0)):
        want = (WHITE / 255 * (1 - a) + np.array(matplotlib.colormaps["viridis"](v)[:3]) * a) * 255
        np.testing.assert_allclose(out[r, c], want, atol=2)


def test_without_overlap_cells_start_at_the_tile_corner():
    grid = np.full((3, 5), np.nan)
    grid[2, 0] = 0.5
    out = overlay_grid(np.full((30, 50, 3), WHITE, np.uint8), grid, scale=0.1, stride_level0_px=100,
                       tile_size_level0_px=100)
    rows, cols = np.nonzero((out != WHITE).any(axis=2))
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 29, 0, 9)


def test_nan_is_transparent_and_the_grid_never_spills_outside():
    grid, thumb, scale = _tiny()
    assert (overlay_grid(thumb, grid, scale=scale, stride_level0_px=100, tile_size_level0_px=200) == WHITE).all()
    layer = grid_layer(colourise(np.ones((50, 50))), image_shape_hw=(60, 100), scale=0.1, stride_level0_px=100,
                       tile_size_level0_px=200)
    assert layer.shape == (60, 100, 4) and layer[:5].max() == 0 and layer[:, :5].max() == 0
    assert layer[5:, 5:, 3].min() > 0


def test_colour_map_is_perceptually_ordered():
    rgb = colourise(np.linspace(0, 1, 11)[None])[0, :, :3]
    lightness = rgb @ np.array([0.2126, 0.7152, 0.0722])
    assert (np.diff(lightness) > 0).all()  # jet fails this: its red end is darker than its yellow middle
    clipped = colourise(np.array([[-1.0, 2.0]]))[0]
    np.testing.assert_allclose(clipped[:, :3], colourise(np.array([[0.0, 1.0]]))[0, :, :3])
    np.testing.assert_allclose(colourise(np.array([[5.0]]), vmin=0, vmax=10)[0, 0],
                               colourise(np.array([[0.5]]))[0, 0])


def test_blend_alpha_extremes():
    img = np.full((2, 2, 3), 100, np.uint8)
    layer = np.zeros((2, 2, 4), np.float32)
    layer[0, 0] = (1.0, 0.0, 0.0, 1.0)
    out = blend(img, layer)
    assert out[0, 0].tolist() == [255, 0, 0] and out[1, 1].tolist() == [100, 100, 100]


def test_mask_overlay_tints_and_outlines():
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True  # centre quarter; at 40 x 40 px: rows/cols 10..29
    out = overlay_mask(np.full((40, 40, 3), 100, np.uint8), mask, colour=(0, 200, 0), alpha=0.5)
    assert out[10, 20].tolist() == [0, 200, 0]  # boundary pixel: the colour
    assert out[20, 20].tolist() == [50, 150, 50]  # inside: half tint
    assert out[5, 5].tolist() == [100, 100, 100]  # outside: untouched


def test_outlines_and_boxes_in_level0_coordinates():
    img = np.full((30, 30, 3), WHITE, np.uint8)
    out = draw_outlines(img, [np.array([[100, 100], [200, 100], [200, 200], [100, 200]])], scale=0.1, width=1)
    drawn = (out != WHITE).any(axis=2)
    assert drawn[10, 10:21].all() and drawn[10:21, 20].all() and not drawn[15, 15] and drawn.sum() == 40
    boxes = draw_boxes(img, np.array([[0, 0], [150, 150]]), 50, scale=0.1, colour=(1, 2, 3))
    assert boxes[0, 0].tolist() == [1, 2, 3] and boxes[20, 20].tolist() == [1, 2, 3]
    assert boxes[2, 2].tolist() == [255] * 3


def test_plots_write_pngs_without_switching_the_backend(tmp_path):
    import matplotlib
    from PIL import Image

    from cadx.viz.plots import plot_froc, plot_roc

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a caller's own backend
    try:
        roc = plot_roc(tmp_path / "roc.png", np.array([0, 0.5, 1]), np.array([0, 1, 1]), auc=0.75, title="t")
        froc = plot_froc(tmp_path / "froc.png", np.array([3.0, 1.0, 0.0]), np.array([1.0, 0.5, 0.0]),
                         np.array([0.1] * 6), [0.25, 0.5, 1, 2, 4, 8], score=0.5)
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    assert Image.open(roc).size == (462, 462) and Image.open(froc).size == (550, 462)
    assert not list(tmp_path.glob(".*.part"))


def test_known_answer_overlay_map_colours_each_pixel_by_its_value():
    import matplotlib

    from cadx.viz.overlay import overlay_map

    img = np.full((2, 3, 3), 200, np.uint8)
    values = np.array([[0.0, 0.5, 1.0], [np.nan, 2.0, -1.0]])
    out = overlay_map(img, values, alpha=0.25)
    viridis = matplotlib.colormaps["viridis"]
    for (r, c), v in {(0, 0): 0.0, (0, 1): 0.5, (0, 2): 1.0, (1, 1): 1.0, (1, 2): 0.0}.items():
        expected = (0.75 * 200 / 255 + 0.25 * np.array(viridis(v)[:3])) * 255
        np.testing.assert_allclose(out[r, c], expected, atol=0.51)
    assert out[1, 0].tolist() == [200, 200, 200]  # NaN: untouched


def test_overlay_map_resizes_a_smaller_map_to_the_image():
    from cadx.viz.overlay import overlay_map

    values = np.zeros((2, 2))
    values[0, 0] = 1.0
    out = overlay_map(np.zeros((8, 8, 3), np.uint8), values, alpha=1.0)
    assert out.shape == (8, 8, 3)
    # viridis' yellow (1.0) in the top-left corner, dark purple (0.0) in the bottom-right one, a
    # bilinear ramp between: green rises monotonically along the diagonal.
    green = out[np.arange(8), np.arange(8), 1].astype(int)
    assert green[0] == 231 and green[-1] == 1
    assert (np.diff(green) <= 0).all() and len(set(green.tolist())) > 3
    nan_map = np.array([[np.nan, 1.0], [1.0, 1.0]])
    out = overlay_map(np.zeros((4, 4, 3), np.uint8), nan_map)
    assert (out[:2, :2] == 0).all() and (out[2:, 2:] > 0).any()  # nearest: the NaN quarter stays clear
