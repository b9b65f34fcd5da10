"""DICOM export: Secondary Capture series and Comprehensive SR filed with the source study."""

from __future__ import annotations

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("highdicom")

from pydicom.dataset import FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from cadx.errors import InputFileError, OutputPathError  # noqa: E402
from cadx.io.dicom_export import write_findings_sr, write_secondary_capture  # noqa: E402

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def _ct_slices(folder, n=3, *, study_uid=None):
    """``n`` tiny CT slices of one series (32 x 32, 16-bit) written to ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    paths = []
    for i in range(n):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE, ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.Modality = "CT"
        ds.PatientID, ds.PatientName = "ID_patient7", "Doe^Jane"
        ds.PatientBirthDate, ds.PatientSex = "19700101", "F"
        ds.StudyDate, ds.StudyTime, ds.StudyID = "20190912", "101500", "S1"
        ds.AccessionNumber, ds.ReferringPhysicianName = "ACC42", ""
        ds.SeriesNumber, ds.InstanceNumber = 2, i + 1
        ds.Manufacturer = "test"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-16, -16, 5.0 * i]
        ds.PixelSpacing = [0.5, 0.5]
        ds.Rows = ds.Columns = 32
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) + i).tobytes()
        path = folder / f"ID_{i:04x}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_secondary_capture_series_joins_the_source_study(tmp_path):
    paths = _ct_slices(tmp_path / "in")
    before = [p.read_bytes() for p in paths]
    sources = [pydicom.dcmread(p) for p in paths[:2]]  # datasets with pixels, from files
    images = _images(2)
    out = write_secondary_capture(tmp_path / "out" / "cam", sources, images, series_description="cadx Grad-CAM")
    assert [p.name for p in out] == ["sc_0001.dcm", "sc_0002.dcm"]
    read = [pydicom.dcmread(p) for p in out]
    for sc, src, img in zip(read, sources, images, strict=True):
        assert sc.SOPClassUID == SC_IMAGE and sc.file_meta.MediaStorageSOPClassUID == SC_IMAGE
        assert sc.StudyInstanceUID == src.StudyInstanceUID
        assert (sc.PatientID, str(sc.PatientName), sc.StudyDate, sc.AccessionNumber) == (
            "ID_patient7", "Doe^Jane", "20190912", "ACC42")
        assert sc.SeriesInstanceUID != src.SeriesInstanceUID and sc.SOPInstanceUID != src.SOPInstanceUID
        assert sc.SeriesDescription == "cadx Grad-CAM" and sc.PhotometricInterpretation == "RGB"
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert tuple(sc.PatientOrientation) == ("L", "P")
        np.testing.assert_array_equal(sc.pixel_array, img)
    assert read[0].SeriesInstanceUID == read[1].SeriesInstanceUID
    assert read[0].SOPInstanceUID != read[1].SOPInstanceUID
    assert [int(sc.InstanceNumber) for sc in read] == [1, 2]
    assert [p.read_bytes() for p in paths] == before
    assert sorted(p.name for p in (tmp_path / "out" / "cam").iterdir()) == ["sc_0001.dcm", "sc_0002.dcm"]


def test_findings_sr_carries_probabilities_and_study(tmp_path):
    paths = _ct_slices(tmp_path / "in")
    findings = {"epidural": 0.125, "subdural": 0.75, "any": 0.875}
    out = write_findings_sr(tmp_path / "out" / "findings.dcm", paths, findings)  # paths work as sources
    sr = pydicom.dcmread(out)
    src = pydicom.dcmread(paths[0])
    assert sr.SOPClassUID == COMPREHENSIVE_SR and sr.Modality == "SR"
    assert sr.StudyInstanceUID == src.StudyInstanceUID and sr.PatientID == "ID_patient7"
    assert sr.SeriesInstanceUID != src.SeriesInstanceUID
    items = sr.ContentSequence
    assert items[0].ValueType == "TEXT" and "second opinion" in items[0].TextValue
    nums = {it.ConceptNameCodeSequence[0].CodeValue: float(it.MeasuredValueSequence[0].NumericValue)
            for it in items if it.ValueType == "NUM"}
    assert nums == findings
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert {r.ReferencedSOPInstanceUID for r in evidence.ReferencedSOPSequence} == {
        pydicom.dcmread(p).SOPInstanceUID for p in paths}


def test_export_refuses_the_input_folder_and_mixed_studies(tmp_path):
    paths = _ct_slices(tmp_path / "in")
    with pytest.raises(OutputPathError, match="holds the input"):
        write_secondary_capture(tmp_path / "in", paths[:1], _images(1), series_description="x")
    with pytest.raises(OutputPathError, match="holds the input"):
        write_findings_sr(tmp_path / "in" / "sr.dcm", paths, {"any": 0.5})
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == sorted(p.name for p in paths)
    other = _ct_slices(tmp_path / "in2", 1)
    with pytest.raises(InputFileError, match="export one study at a time"):
        write_findings_sr(tmp_path / "out" / "sr.dcm", [paths[0], other[0]], {"any": 0.5})
    (tmp_path / "junk.dcm").write_text("not dicom")
    with pytest.raises(InputFileError, match="not a readable DICOM"):
        write_findings_sr(tmp_path / "out" / "sr.dcm", [tmp_path / "junk.dcm"], {"any": 0.5})
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_export_of_anonymised_rsna_headers_quietly(tmp_path):
    """RSNA 2019 files have no PatientName / StudyDate / ... and ``ID_...`` UIDs: both writers still work."""
    from cadx.io.dicom import quiet_uids

    with quiet_uids():  # setting an RSNA id as a UID warns in pydicom; that is the test's input, not cadx
        paths = _ct_slices(tmp_path / "in", 2, study_uid="ID_0a1b2c3d4e")
    for p in paths:
        with quiet_uids():  # the test's own edit of the inputs, not what is tested
            ds = pydicom.dcmread(p)
            for name in ("PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                         "AccessionNumber", "ReferringPhysicianName"):
                delattr(ds, name)
            ds.save_as(p)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sc = write_secondary_capture(tmp_path / "out" / "sc", paths, _images(2), series_description="cam")
        sr = write_findings_sr(tmp_path / "out" / "sr.dcm", paths, {"any": 0.75})
    assert not [w for w in caught if "Invalid value for VR UI" in str(w.message)]
    for path in [*sc, sr]:
        with quiet_uids():
            ds = pydicom.dcmread(path)
            ds.StudyInstanceUID  # noqa: B018 - values are parsed (and warned about) on first access
        assert ds.StudyInstanceUID == "ID_0a1b2c3d4e" and ds.PatientID == "ID_patient7" and ds.PatientName == ""
