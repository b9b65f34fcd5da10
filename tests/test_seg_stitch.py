"""preprocessing.stitch: smooth blending reproduces a known map exactly, streams in bands, leaves no seam."""

from __future__ import annotations

import numpy as np
import pytest

from cadx.preprocessing.stitch import Stitcher, blend_window


def _cut(values: np.ndarray, size: int, stride: int):
    """Overlapping ``size`` patches of ``values`` every ``stride`` px, in row-major order, all inside it."""
    h, w = values.shape
    for r in range(0, h - size + 1, stride):
        for c in range(0, w - size + 1, stride):
            yield values[r : r + size, c : c + size], (r, c)


def test_blend_window_is_a_partition_of_unity_over_the_overlap():
    w = blend_window(16, 4)[8]
    assert w.min() > 0 and w.max() == 1.0
    np.testing.assert_allclose(w[12:] + w[:4], 1.0, atol=1e-6)  # neighbour 12 px to the right
    assert np.array_equal(blend_window(5, 0), np.ones((5, 5), np.float32))
    with pytest.raises(ValueError):
        blend_window(8, 5)


def test_overlapping_patches_blend_back_to_the_known_map_exactly():
    rng = np.random.default_rng(0)
    truth = rng.random((70, 94)).astype(np.float32)   # 70 x 94: patches of 16 at stride 12 hang over the edges
    st = Stitcher(truth.shape)
    win = blend_window(16, 4)
    for patch, rc in _cut(np.pad(truth, ((0, 16), (0, 16))), 16, 12):
        st.add(patch, rc, win)
    np.testing.assert_allclose(st.result(), truth, rtol=1e-6, atol=1e-6)


def test_no_seam_where_neighbours_disagree_smoothly():
    """Two models' outputs offset by a constant: the blend moves smoothly, without a step at tile borders."""
    st = Stitcher((16, 28))
    win = blend_window(16, 4)
    st.add(np.zeros((16, 16)), (0, 0), win)
    st.add(np.ones((16, 16)), (0, 12), win)
    row = st.result()[8]
    assert row[:12].max() == 0 and row[16:].min() == 1
    steps = np.diff(row)
    assert (steps >= 0).all() and steps.max() < 0.5     # a ramp over the 4 overlap px, no jump of 1


def test_band_streaming_equals_whole_map_blending_and_holds_only_a_band():
    rng = np.random.default_rng(1)
    truth = rng.random((100, 60)).astype(np.float32)
    patches = [(p, rc) for p, rc in _cut(np.pad(truth, ((0, 20), (0, 20))), 20, 15) if (p.sum() > 0)]
    patches = [pr for i, pr in enumerate(patches) if i % 7 != 3]    # gaps, as over tissue only
    win = blend_window(20, 5)
    whole = Stitcher(truth.shape, fill=-1.0)
    for p, rc in patches:
        whole.add(p, rc, win)
    expected = whole.result()

    got = np.full(truth.shape, np.nan, np.float32)
    held = []

    def sink(row0, rows):
        assert np.isnan(got[row0 : row0 + len(rows)]).all()    # every row once, in order
        got[row0 : row0 + len(rows)] = rows

    st = Stitcher(truth.shape, fill=-1.0, sink=sink)
    for p, rc in patches:
        st.add(p, rc, win)
        held.append(st._sum.shape[0])
    st.close()
    np.testing.assert_array_equal(got, expected)
    assert max(held) <= 20     # one patch row, never the whole map
    with pytest.raises(ValueError, match="non-decreasing"):
        s2 = Stitcher((40, 10), sink=lambda r, rows: None)
        s2.add(np.ones((5, 5)), (10, 0))
        s2.add(np.ones((5, 5)), (2, 0))


def test_uncovered_pixels_take_the_fill_value_and_patches_are_clipped():
    st = Stitcher((4, 4))
    st.add(np.full((3, 3), 2.0), (-1, 2))
    out = st.result()
    assert np.isnan(out[3]).all() and np.isnan(out[:, :2]).all()
    assert (out[:2, 2:] == 2.0).all()
