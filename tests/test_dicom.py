"""cadx.io.dicom: Hounsfield units, RSNA quirks, series order, localisers, bad files, real CT slices."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402

from cadx.errors import InputFileError  # noqa: E402
from cadx.io.dicom import CtSlice, read_ct_header, read_ct_series, read_ct_slice  # noqa: E402


def write_ct(path: Path, pixels: np.ndarray, **tags) -> Path:
    """Write a single-frame CT file (uint16 unless the pixels are signed) with RSNA-like defaults."""
    signed = pixels.dtype.kind == "i"
    with warnings.catch_warnings():  # pydicom warns about the ID_ UIDs while writing too
        warnings.simplefilter("ignore")
        return _write_ct(path, pixels, signed, tags)


def _write_ct(path, pixels, signed, tags):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    sop = tags.pop("SOPInstanceUID", "ID_" + path.stem)
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = "ID_study1"
    ds.SeriesInstanceUID = "ID_series1"
    ds.PatientID = "ID_patient1"
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = int(signed)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelSpacing = [0.5, 0.6]
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.InstanceNumber = 1
    for key, value in tags.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


# --- Hounsfield units and RSNA quirks --------------------------------------------------------------


def test_hu_is_pixel_times_slope_plus_intercept(tmp_path):
    px = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 7
    path = write_ct(tmp_path / "a.dcm", px, BitsStored=16, HighBit=15, RescaleSlope=2, RescaleIntercept=-1024)
    s = read_ct_slice(path)
    assert isinstance(s, CtSlice)
    assert s.hu.dtype == np.float32 and s.hu.shape == (16, 16)
    np.testing.assert_array_equal(s.hu, px.astype(np.float32) * 2 - 1024)
    assert s.image_id == "ID_a" and s.sop_uid == "ID_a"
    assert (s.study_uid, s.series_uid, s.patient_id) == ("ID_study1", "ID_series1", "ID_patient1")
    assert s.spacing_mm == (0.5, 0.6) and s.position_mm == (0, 0, 0)
    assert s.orientation == (1, 0, 0, 0, 1, 0)
    assert not s.wrap_fix


def test_signed_pixels(tmp_path):
    px = np.array([[-2000, -1], [0, 1500]], dtype=np.int16)
    path = write_ct(tmp_path / "s.dcm", np.pad(px, 7), BitsStored=16, HighBit=15, RescaleIntercept=0)
    np.testing.assert_array_equal(read_ct_slice(path).hu[7:9, 7:9], px)


def test_twelve_bit_wrap_fix_gives_known_hu(tmp_path):
    # BitsStored 12, unsigned, intercept > -100: value + 1000, minus 4096 when >= 4096, intercept -1000.
    raw = np.array([0, 100, 3095, 3096, 3500, 4095], dtype=np.uint16)
    expected = np.array([0, 100, 3095, -1000, -596, -1], dtype=np.float32)
    px = np.zeros((16, 16), np.uint16)
    px[0, :6] = raw
    path = write_ct(tmp_path / "w.dcm", px, RescaleIntercept=0)
    s = read_ct_slice(path)
    assert s.wrap_fix
    np.testing.assert_array_equal(s.hu[0, :6], expected)


def test_twelve_bit_with_normal_intercept_is_not_wrapped(tmp_path):
    px = np.full((16, 16), 3500, np.uint16)
    s = read_ct_slice(write_ct(tmp_path / "n.dcm", px, RescaleIntercept=-1024))
    assert not s.wrap_fix
    assert float(s.hu[0, 0]) == 3500 - 1024


def test_multivalued_zero_padded_windows_take_the_first(tmp_path):
    px = np.zeros((16, 16), np.uint16)
    path = write_ct(tmp_path / "m.dcm", px, WindowCenter=["00036", "00040"], WindowWidth=["00080", "00120"])
    s = read_ct_slice(path)
    assert (s.window_center_hu, s.window_width_hu) == (36.0, 80.0)
    h = read_ct_header(write_ct(tmp_path / "one.dcm", px, WindowCenter="40", WindowWidth="80"))
    assert (h.window_center_hu, h.window_width_hu) == (40.0, 80.0)
    h = read_ct_header(write_ct(tmp_path / "none.dcm", px))
    assert (h.window_center_hu, h.window_width_hu) == (None, None)


def test_invalid_uids_do_not_flood_warnings_or_logs(tmp_path, caplog):
    path = write_ct(tmp_path / "u.dcm", np.zeros((16, 16), np.uint16))
    caplog.clear()
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        read_ct_slice(path)
        read_ct_header(path)
        read_ct_series([path])
    assert not [w for w in seen if "VR UI" in str(w.message)]
    assert not [r for r in caplog.records if "VR UI" in r.getMessage()]
    # Silenced locally only: pydicom still warns outside cadx's readers.
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        str(pydicom.dcmread(path).SOPInstanceUID)
    assert any("VR UI" in str(w.message) for w in seen)


# --- series ------------------------------------------------------------------------------------------


def _oblique_series(folder: Path, depths, *, tilt_deg=25.0, extra=()):
    t = np.deg2rad(tilt_deg)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, np.cos(t), -np.sin(t)])
    normal = np.cross(row, col)
    rng = np.random.default_rng(3)
    order = rng.permutation(len(depths))  # file names and InstanceNumbers unrelated to position
    folder.mkdir(exist_ok=True)
    for k, i in enumerate(order):
        # a large in-plane shift along the column direction (which has a z component) per slice,
        # so sorting by the z coordinate alone would be wrong
        pos = depths[i] * normal + (30.0 * ((k * 7) % 5)) * col
        write_ct(folder / f"ID_{k:03d}.dcm", np.full((16, 16), 1024 + 10 * i, np.uint16),
                 ImagePositionPatient=[float(v) for v in pos],
                 ImageOrientationPatient=[float(v) for v in (*row, *col)],
                 InstanceNumber=int(len(depths) - k))
    return normal


def test_series_sorted_along_oblique_normal(tmp_path):
    depths = [0.0, 2.5, 5.0, 7.5, 10.0, 12.5]
    _oblique_series(tmp_path / "s", depths)
    series = read_ct_series(tmp_path / "s")
    assert series.volume_hu.shape == (6, 16, 16)
    # slice i has HU 10 * i: increasing depth along the normal
    np.testing.assert_array_equal(series.volume_hu[:, 0, 0], [0, 10, 20, 30, 40, 50])
    assert series.spacing_mm == pytest.approx((2.5, 0.5, 0.6))
    assert series.excluded == ()
    assert np.shares_memory(series.slices[2].hu, series.volume_hu)
    # the files' InstanceNumbers and names are not in that order
    names = [s.path.name for s in series.slices]
    assert names != sorted(names)


def test_localizer_and_other_orientation_left_out_and_reported(tmp_path, caplog):
    folder = tmp_path / "s"
    _oblique_series(folder, [0.0, 3.0, 6.0])
    loc = write_ct(folder / "ID_scout.dcm", np.zeros((16, 16), np.uint16),
                   ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
                   ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    sag = write_ct(folder / "ID_sag.dcm", np.zeros((16, 16), np.uint16),
                   ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    big = write_ct(folder / "ID_big.dcm", np.zeros((32, 32), np.uint16))
    with caplog.at_level(logging.INFO, logger="cadx.io.dicom"):
        series = read_ct_series(folder)
    assert len(series.slices) == 3
    np.testing.assert_array_equal(series.volume_hu[:, 0, 0], [0, 10, 20])
    reasons = dict(series.excluded)
    assert set(reasons) == {loc, sag, big}
    assert "localizer" in reasons[loc]
    assert "orientation" in reasons[sag]
    assert "size" in reasons[big]
    assert "ID_scout.dcm" in caplog.text


def test_series_of_mixed_series_is_refused(tmp_path):
    a = write_ct(tmp_path / "a.dcm", np.zeros((16, 16), np.uint16))
    b = write_ct(tmp_path / "b.dcm", np.zeros((16, 16), np.uint16), SeriesInstanceUID=generate_uid())
    with pytest.raises(InputFileError, match="series") as err:
        read_ct_series([a, b, a])
    assert err.value.path == b


# --- bad input ---------------------------------------------------------------------------------------


def test_not_dicom(tmp_path):
    path = tmp_path / "x.dcm"
    path.write_text("ID,Label\nID_1_any,0\n")
    with pytest.raises(InputFileError, match="not a DICOM file") as err:
        read_ct_slice(path)
    assert err.value.path == path


def test_no_pixel_data(tmp_path):
    path = write_ct(tmp_path / "p.dcm", np.zeros((16, 16), np.uint16))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path)
    with pytest.raises(InputFileError, match="no pixel data") as err:
        read_ct_slice(path)
    assert err.value.path == path
    assert read_ct_header(path).shape == (16, 16)  # the header alone is fine


@pytest.mark.parametrize("cut", [100, 1000])
def test_truncated_pixel_data(tmp_path, cut):
    path = write_ct(tmp_path / "ID_6431af929.dcm", np.zeros((32, 32), np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    with pytest.raises(InputFileError) as err:
        read_ct_slice(path)
    assert err.value.path == path
    assert "pixel data" in str(err.value)
    with pytest.raises(InputFileError) as err:
        read_ct_series([write_ct(tmp_path / "ok.dcm", np.zeros((32, 32), np.uint16)), path])
    assert err.value.path == path


def test_file_cut_inside_header(tmp_path):
    path = write_ct(tmp_path / "h.dcm", np.zeros((16, 16), np.uint16))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputFileError) as err:
        read_ct_slice(path)
    assert err.value.path == path


def test_mr_is_refused(tmp_path):
    path = write_ct(tmp_path / "mr.dcm", np.zeros((16, 16), np.uint16), Modality="MR")
    with pytest.raises(InputFileError, match="not a CT image.*MR") as err:
        read_ct_slice(path)
    assert err.value.path == path
    with pytest.raises(InputFileError, match="MR"):
        read_ct_header(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        read_ct_slice(tmp_path / "nope.dcm")
    with pytest.raises(InputFileError, match="no DICOM files"):
        read_ct_series(tmp_path)


# --- pydicom's real CT slices ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "center", "width"),
    [("CT_small.dcm", None, None), ("693_J2KI.dcm", 40.0, 100.0), ("J2K_pixelrep_mismatch.dcm", 40.0, 100.0)],
)
def test_real_ct_slices(name, center, width):
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not in this pydicom")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        try:
            pixels = ds.pixel_array
        except (RuntimeError, NotImplementedError) as exc:
            pytest.skip(f"no decoder for {name}: {exc}")
        s = read_ct_slice(path)
    expected = pixels.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(s.hu, expected.astype(np.float32))
    assert (s.window_center_hu, s.window_width_hu) == (center, width)
    assert s.shape == (int(ds.Rows), int(ds.Columns))
    assert s.sop_uid == str(ds.SOPInstanceUID) and s.image_id == Path(path).stem
    assert s.hu.min() < -500  # air around the head is air
