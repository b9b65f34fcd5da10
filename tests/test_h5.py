"""Per-slide HDF5: CLAM-layout coordinates and C-channel score grids (and yesterday's heatmaps)."""

from __future__ import annotations

import numpy as np
import pytest

from cadx.errors import InputFileError
from cadx.io.h5 import (
    LEGACY_CHANNEL,
    ScoreGrid,
    read_coords_h5,
    read_score_grid_h5,
    write_coords_h5,
    write_score_grid_h5,
)


def _grid() -> ScoreGrid:
    v = np.full((2, 3, 4), 0.25, np.float32)
    v[:, 0, 0] = np.nan
    v[1, 2, 3] = 0.75
    return ScoreGrid(v, ("tumor", "stroma"), stride_level0_px=128, tile_size_level0_px=256, slide_size_wh=(600, 400),
                     mpp=0.243, attrs={"slide": "s", "tta": True, "level": 1, "classes": ["a", "b"], "mpp_list": [0.5]})


def test_score_grid_round_trip_keeps_channels_nan_geometry_and_plain_attrs(tmp_path):
    g = _grid()
    path = write_score_grid_h5(tmp_path / "s.h5", g, tiles={"coords": np.array([[0, 0], [128, 0]]),
                                                             "probs": np.array([0.1, 0.2])})
    back = read_score_grid_h5(path)
    np.testing.assert_array_equal(back.values, g.values)  # NaN in the same places
    assert back.values.dtype == np.float32 and back.channel_names == ("tumor", "stroma")
    geometry = (back.stride_level0_px, back.tile_size_level0_px, back.slide_size_wh, back.mpp)
    assert geometry == (128, 256, (600, 400), 0.243)
    assert back.attrs == {"slide": "s", "tta": True, "level": 1, "classes": ["a", "b"], "mpp_list": [0.5]}
    assert type(back.attrs["tta"]) is bool and type(back.attrs["level"]) is int
    assert back.channel("stroma")[2, 3] == pytest.approx(0.75)
    import h5py

    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["tiles/probs"][()], [0.1, 0.2])


def test_a_heatmap_written_before_channels_reads_as_one_tumour_channel(tmp_path):
    import h5py

    probs = np.array([[np.nan, 0.2], [0.9, 0.4]], np.float32)
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:  # the layout of cadx 0.1.0's write_heatmap_h5
        ds = f.create_dataset("probs", data=probs, compression="gzip")
        ds.attrs.update(stride_level0_px=256, tile_size_level0_px=256, slide_size_wh=[512, 512], mpp=0.243,
                        layout="cell (row, col) = ...", slide="test_001", model="tf_efficientnet_lite0")
    g = read_score_grid_h5(path)
    assert g.channel_names == (LEGACY_CHANNEL,) == ("tumor_probability",)
    np.testing.assert_array_equal(g.channel(), probs)
    assert g.values.shape == (1, 2, 2) and g.attrs == {"slide": "test_001", "model": "tf_efficientnet_lite0"}


def test_bad_files_are_input_errors_naming_the_file(tmp_path):
    import h5py

    with pytest.raises(InputFileError, match="missing.h5: no such score-grid file"):
        read_score_grid_h5(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InputFileError, match="text.h5: not a readable HDF5"):
        read_score_grid_h5(tmp_path / "text.h5")
    with h5py.File(tmp_path / "coords.h5", "w") as f:
        f.create_dataset("coords", data=np.zeros((1, 2)))
    with pytest.raises(InputFileError, match="coords.h5: no 'scores' dataset"):
        read_score_grid_h5(tmp_path / "coords.h5")
    with h5py.File(tmp_path / "nogeo.h5", "w") as f:
        f.create_dataset("probs", data=np.zeros((2, 2)))
    with pytest.raises(InputFileError, match="nogeo.h5: attribute 'stride_level0_px' missing"):
        read_score_grid_h5(tmp_path / "nogeo.h5")
    with pytest.raises(InputFileError, match="no 'coords' dataset"):
        read_coords_h5(tmp_path / "nogeo.h5")


def test_programming_errors_stay_programming_errors(tmp_path):
    g = _grid()
    g.attrs["mpp"] = 1.0
    with pytest.raises(ValueError, match="reserved"):
        write_score_grid_h5(tmp_path / "a.h5", g)
    g.attrs = {"context_mpp": None}
    with pytest.raises(TypeError, match="context_mpp"):
        write_score_grid_h5(tmp_path / "b.h5", g)
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(ValueError, match="name one"):
        _grid().channel()
    with pytest.raises(ValueError, match="no channel 'x'"):
        _grid().channel("x")
    with pytest.raises(ValueError, match="distinct names"):
        ScoreGrid(np.zeros((2, 1, 1), np.float32), ("a",), 1, 1, (1, 1), 1.0)


def test_grid_geometry_known_answers():
    g = _grid()
    assert g.shape_hw == (3, 4) and g.cell_of(300, 130) == (1, 2)
    x, y = g.center_xy(np.array([0, 2]), np.array([1, 3]))
    assert x.tolist() == [256.0, 512.0] and y.tolist() == [128.0, 384.0]
    assert g.cell_um == pytest.approx(128 * 0.243)


def test_coords_round_trip_with_clam_attrs_and_row_check(tmp_path):
    xy = np.array([[0, 0], [512, 256]])
    attrs = {"name": "s", "patch_size": 256, "patch_level": 0, "downsample": [1.0, 1.0], "level_dim": [1024, 512]}
    back = read_coords_h5(write_coords_h5(tmp_path / "s.h5", xy, attrs, {"tissue_fraction": np.array([1.0, 0.6])}))
    assert back.coords_xy.dtype == np.int64 and back.coords_xy.tolist() == xy.tolist() and len(back) == 2
    assert back.attrs == attrs and back.arrays["tissue_fraction"].tolist() == [1.0, 0.6]
    with pytest.raises(ValueError, match="3 rows, coords has 2"):
        write_coords_h5(tmp_path / "t.h5", xy, attrs, {"tissue_fraction": np.ones(3)})
