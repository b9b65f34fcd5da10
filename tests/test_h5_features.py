"""Features files (CLAM's layout): round trip, CLAM's attributes, and files that are not features files."""

from __future__ import annotations

import numpy as np
import pytest

from cadx.errors import InputFileError
from cadx.io.h5 import read_features_attrs, read_features_h5, write_coords_h5, write_features_h5

ATTRS = {"slide": "tumor_001", "mpp": 0.5, "tile_size_px": 224, "tile_size_level0_px": 448, "encoder": "resnet50_trunc",
         "weights": "file:resnet50.pth", "feature_dim": 3, "min_tissue": 0.25, "slide_wh": [4096, 2048]}


def test_round_trip_keeps_values_order_dtypes_and_attrs(tmp_path):
    feats = np.array([[0.5, -1.0, 3.25], [1e-8, 2.0, np.float32(1 / 3)]], np.float64)  # stored as float32
    coords = [[448, 0], [0, 896]]
    path = write_features_h5(tmp_path / "s.h5", feats, coords, ATTRS)
    back = read_features_h5(path)
    assert back.features.dtype == np.float32 and back.coords_xy.dtype == np.int64 and len(back) == 2
    np.testing.assert_array_equal(back.features, feats.astype(np.float32))
    assert back.coords_xy.tolist() == coords
    assert back.attrs == ATTRS and read_features_attrs(path) == (ATTRS, 2)
    import h5py

    with h5py.File(path) as f:  # what CLAM's MIL code reads
        assert set(f) == {"features", "coords"}
        assert f["coords"].attrs["patch_level"] == 0 and f["coords"].attrs["patch_size"] == 448


def test_a_slide_without_tissue_tiles_is_an_empty_bag(tmp_path):
    path = write_features_h5(tmp_path / "empty.h5", np.zeros((0, 1280)), np.zeros((0, 2)), ATTRS)
    back = read_features_h5(path)
    assert back.features.shape == (0, 1280) and back.coords_xy.shape == (0, 2) and len(back) == 0


def test_a_file_clam_wrote_reads_without_attributes(tmp_path):
    import h5py

    path = tmp_path / "clam.h5"
    with h5py.File(path, "w") as f:
        f["features"] = np.ones((3, 1024), np.float32)
        f["coords"] = np.array([[0, 0], [256, 0], [512, 0]], np.int32)
    back = read_features_h5(path)
    assert back.attrs == {} and back.coords_xy.dtype == np.int64 and back.coords_xy[2].tolist() == [512, 0]


def test_shapes_that_disagree_are_a_callers_bug(tmp_path):
    with pytest.raises(ValueError, match="features"):
        write_features_h5(tmp_path / "a.h5", np.zeros((2, 4)), np.zeros((3, 2)), ATTRS)
    with pytest.raises(ValueError, match="tile_size_level0_px"):
        write_features_h5(tmp_path / "a.h5", np.zeros((2, 4)), np.zeros((2, 2)), {"mpp": 0.5})
    assert not list(tmp_path.iterdir())


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = write_features_h5(tmp_path / "s.h5", np.ones((1, 2)), [[0, 0]], ATTRS)
    with pytest.raises(TypeError):
        write_features_h5(path, np.zeros((5, 2)), np.zeros((5, 2)), {**ATTRS, "bad": object()})
    assert len(read_features_h5(path)) == 1 and [p.name for p in tmp_path.iterdir()] == ["s.h5"]


def _garbage(tmp_path, kind):
    import h5py

    path = tmp_path / f"{kind}.h5"
    if kind == "bytes":
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)  # an HDF5 signature, then noise
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "coords_only":
        write_coords_h5(path, [[0, 0]], {"patch_size": 256})
    else:
        with h5py.File(path, "w") as f:
            if kind == "group":
                f.create_group("features")
                f["coords"] = np.zeros((1, 2), np.int64)
            elif kind == "one_d":
                f["features"] = np.zeros(4, np.float32)
                f["coords"] = np.zeros((4, 2), np.int64)
            elif kind == "mismatch":
                f["features"] = np.zeros((4, 8), np.float32)
                f["coords"] = np.zeros((3, 2), np.int64)
            elif kind == "strings":
                f["features"] = np.array([[b"a", b"b"]])
                f["coords"] = np.zeros((1, 2), np.int64)
    return path


@pytest.mark.parametrize("kind", ["bytes", "empty", "coords_only", "group", "one_d", "mismatch", "strings"])
def test_a_file_that_is_not_a_features_file_is_one_clear_error(tmp_path, kind):
    path = _garbage(tmp_path, kind)
    for read in (read_features_h5, read_features_attrs):
        with pytest.raises(InputFileError) as err:
            read(path)
        assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    with pytest.raises(InputFileError, match="no such features file"):
        read_features_h5(tmp_path / "missing.h5")
