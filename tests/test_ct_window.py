"""cadx.preprocessing.ct_window: known answers for windows, channel stacks, uint8 and 2.5D stacks."""

from __future__ import annotations

import numpy as np
import pytest

from cadx.preprocessing.ct_window import DEFAULT_WINDOWS, neighbour_stack, stack_windows, to_uint8, window


def test_brain_window_known_values():
    hu = np.array([-1000.0, 0.0, 20.0, 40.0, 60.0, 80.0, 81.0, 3000.0])
    out = window(hu, center_hu=40, width_hu=80)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0], atol=1e-7)


def test_window_keeps_shape_and_accepts_integers():
    hu = np.array([[-1024, 0], [40, 2000]], dtype=np.int16)
    out = window(hu, center_hu=600, width_hu=2800)
    assert out.shape == (2, 2) and out.dtype == np.float32
    # bone window: 0 at -800 HU, 1 at 2000 HU
    np.testing.assert_allclose(out, [[0.0, 800 / 2800], [840 / 2800, 1.0]], atol=1e-6)


def test_window_rejects_non_positive_width():
    with pytest.raises(ValueError, match="width"):
        window(np.zeros(2), center_hu=40, width_hu=0)


def test_default_windows_are_brain_subdural_bone():
    assert DEFAULT_WINDOWS == ((40, 80), (80, 200), (600, 2800))


def test_stack_windows_channels():
    hu = np.array([[0.0, 40.0], [80.0, 2000.0]])
    out = stack_windows(hu)
    assert out.shape == (2, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 1], [0.5, 0.3, (40 + 800) / 2800], atol=1e-6)
    np.testing.assert_allclose(out[1, 0], [1.0, 0.5, (80 + 800) / 2800], atol=1e-6)
    np.testing.assert_allclose(out[1, 1], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(stack_windows(hu, [(40, 80)])[..., 0], window(hu, center_hu=40, width_hu=80))


def test_to_uint8():
    np.testing.assert_array_equal(to_uint8(np.array([-0.5, 0.0, 0.2, 0.5, 1.0, 2.0])), [0, 0, 51, 128, 255, 255])
    assert to_uint8(np.zeros((2, 2, 3), np.float32)).dtype == np.uint8


def test_neighbour_stack_clamped_at_both_ends():
    vol = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 3, 5), np.float32)
    assert neighbour_stack(vol, 0).shape == (3, 5, 3)
    assert neighbour_stack(vol, 0)[1, 1].tolist() == [0, 0, 1]
    assert neighbour_stack(vol, 2)[1, 1].tolist() == [1, 2, 3]
    assert neighbour_stack(vol, 3)[1, 1].tolist() == [2, 3, 3]
    assert neighbour_stack(vol, 1, offsets=(-2, 0, 2))[0, 0].tolist() == [0, 1, 3]
    with pytest.raises(IndexError):
        neighbour_stack(vol, 4)


def test_neighbour_stack_of_channels_is_offset_major():
    vol = np.stack([np.full((2, 2, 2), i, np.float32) + np.array([0.0, 0.5], np.float32) for i in range(3)])
    out = neighbour_stack(vol, 1)
    assert out.shape == (2, 2, 6)
    assert out[0, 0].tolist() == [0, 0.5, 1, 1.5, 2, 2.5]


def test_head_box_is_the_square_around_the_largest_body():
    from cadx.preprocessing.ct_window import head_box

    hu = np.full((100, 120), -1000.0)
    yy, xx = np.mgrid[:100, :120]
    hu[((yy - 50) / 30.0) ** 2 + ((xx - 60) / 20.0) ** 2 <= 1] = 40.0  # head: rows 20-80, cols 40-80
    hu[95:98, 5:115] = 200.0  # the table: wider than the head but smaller
    row0, col0, side = head_box(hu, margin=0.0)
    assert side == 61 and (row0, col0) == (20, 30)
    row0, col0, side = head_box(hu, margin=0.1)
    assert side == round(61 * 1.2) and row0 < 20 and row0 + side > 81


def test_crop_square_pads_with_fill_and_keeps_channels():
    from cadx.preprocessing.ct_window import crop_square

    img = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    out = crop_square(img, (-1, 1, 3), fill=-5.0)
    assert out.shape == (3, 3, 2)
    assert out[0].tolist() == [[-5.0, -5.0]] * 3
    assert out[1, :2].tolist() == img[0, 1:].tolist() and out[1, 2].tolist() == [-5.0, -5.0]


def test_head_crop_of_a_real_head_ct_keeps_the_whole_head():
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    from cadx.preprocessing.ct_window import BODY_THRESHOLD_HU, crop_square, head_box

    ds = pydicom.dcmread(get_testdata_file("693_J2KI.dcm"))  # a real head CT slice
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    box = head_box(hu)
    body = hu > BODY_THRESHOLD_HU
    crop = crop_square(hu, box, fill=-1000.0)
    assert crop.shape[0] < max(hu.shape)  # smaller than the field of view
    # nearly all of the body lies inside the square (only small pieces such as the head rest left out)
    assert (crop > BODY_THRESHOLD_HU).sum() >= 0.9 * body.sum()


def test_head_box_on_a_coarse_grid_finds_the_exact_edges():
    from cadx.preprocessing.ct_window import head_box

    hu = np.full((512, 512), -1000.0)
    yy, xx = np.mgrid[:512, :512]
    hu[((yy - 251) / 181.0) ** 2 + ((xx - 247) / 143.0) ** 2 <= 1] = 40.0  # rows 70-432, cols 104-390
    hu[500:505, 20:490] = 200.0  # the table
    rows = np.flatnonzero((hu[:480] > -300).any(axis=1))
    cols = np.flatnonzero((hu[:480] > -300).any(axis=0))
    side = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    assert head_box(hu, margin=0.0) == (int(rows[0]), int(round((cols[0] + cols[-1] + 1 - side) / 2)), int(side))
