"""Synthetic head CT (cadx.synth.ct): the RSNA 2019 layout, DICOM tags, HU of known tissues, structure."""

from __future__ import annotations

import csv
import hashlib
import re
import warnings
from collections import Counter, defaultdict

import numpy as np
import pytest

from cadx.errors import ConfigError
from cadx.synth.ct import IMAGE_DIR, LABEL_CSV, LABELS, generate_ct

pydicom = pytest.importorskip("pydicom")
# RSNA image ids are not valid UIDs; pydicom warns on access, as it does on the real files
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning")

OPTIONS = dict(studies=8, seed=3, slices_per_study=10, size_px=128, noise_hu=0.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("ct")
    return out, generate_ct(out, **OPTIONS)


def read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RSNA ids are not valid UIDs
        return pydicom.dcmread(path)


def hu_of(ds) -> np.ndarray:
    """HU with the RSNA 12-bit wrap fix (written here independently of the generator)."""
    pixels = ds.pixel_array.astype(np.int32)
    intercept = float(ds.RescaleIntercept)
    if ds.BitsStored == 12 and ds.PixelRepresentation == 0 and intercept > -100:
        pixels = pixels + 1000
        pixels[pixels >= 4096] -= 4096
        intercept = -1000.0
    return pixels * float(ds.RescaleSlope) + intercept


def test_files_and_label_csv_follow_the_rsna_layout(data):
    out, records = data
    files = sorted(p.name for p in (out / IMAGE_DIR).iterdir())
    assert files == sorted(f"{r.image_id}.dcm" for r in records)
    assert len(files) == 8 * 10
    assert all(re.fullmatch(r"ID_[0-9a-f]{9}\.dcm", name) for name in files)
    lines = (out / LABEL_CSV).read_text().splitlines()
    assert lines[0] == "ID,Label"
    rows = list(csv.reader(lines[1:]))
    assert len(rows) % 6 == 0
    by_id = {r.image_id: r for r in records}
    seen = Counter()
    for start in range(0, len(rows), 6):
        block = rows[start:start + 6]
        image = block[0][0].rsplit("_", 1)[0]
        assert [row[0] for row in block] == [f"{image}_{name}" for name in LABELS]
        labels = tuple(int(row[1]) for row in block)
        assert labels == by_id[image].labels
        assert labels[5] == max(labels[:5])  # any = OR of the subtypes
        seen[image] += 1
    assert set(seen) == set(by_id)
    assert 1 <= sum(n == 2 for n in seen.values()) <= 3  # a few duplicated images (2% of 80, at least 1)
    assert max(seen.values()) == 2


def test_dicom_tags_read_back(data):
    _, records = data
    for record in records[:12]:
        ds = read(record.path)
        assert ds.Modality == "CT"
        assert (ds.Rows, ds.Columns) == (128, 128)
        assert ds.pixel_array.dtype == np.uint16 and ds.pixel_array.max() < 4096
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
        assert float(ds.RescaleSlope) == 1.0
        assert float(ds.RescaleIntercept) == (0.0 if record.wrapped else -1024.0)
        assert ds.SOPInstanceUID == record.image_id == ds.file_meta.MediaStorageSOPInstanceUID
        assert (ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID) == (
            record.patient_id, record.study_uid, record.series_uid)
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert float(ds.PixelSpacing[0]) == pytest.approx(220 / 128, abs=1e-5)
        assert float(ds.ImagePositionPatient[2]) == pytest.approx(record.z_mm, abs=1e-3)
    raw = records[0].path.read_bytes()
    assert re.search(rb"000\d\d\\000\d\d", raw)  # WindowCenter stored as zero-padded multi-value
    assert b"00080\\00080" in raw
    ds = read(records[0].path)
    assert len(ds.WindowCenter) == 2 and float(ds.WindowWidth[0]) == 80


def test_hu_of_known_tissues_after_rescale_and_wrap_fix(data):
    _, records = data
    assert {r.wrapped for r in records} == {True, False}
    blood_seen = set()
    for record in records:
        hu = hu_of(read(record.path))
        for name, (row, col) in record.landmarks.items():
            assert hu[row, col] == pytest.approx(round(record.truth_hu[name]), abs=0.5), name
        assert hu[record.landmarks["skull"]] > 500
        assert 20 <= hu[record.landmarks["brain"]] <= 40
        if "ventricle" in record.landmarks:
            assert hu[record.landmarks["ventricle"]] < 15
        for name in LABELS[:5]:
            if record.label(name):
                assert 50 <= hu[record.landmarks[name]] <= 90
                blood_seen.add(name)
        assert hu[0, 0] <= -1000  # air / outside the field of view
    assert len(blood_seen) >= 2


def test_wrapped_studies_read_wrong_without_the_fix(data):
    _, records = data
    record = next(r for r in records if r.wrapped)
    ds = read(record.path)
    naive = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert naive[record.landmarks["brain"]] == pytest.approx(hu_of(ds)[record.landmarks["brain"]])  # >= 0 HU unwrapped
    assert naive[0, 0] == 3096  # air reads as dense bone without the fix


def test_series_positions_step_along_z_and_study_structure(data):
    _, records = data
    series = defaultdict(list)
    for r in records:
        series[r.series_uid].append(r)
    assert len(series) == 8
    for slices in series.values():
        assert len({r.study_uid for r in slices}) == 1 and len({r.patient_id for r in slices}) == 1
        z = [r.z_mm for r in sorted(slices, key=lambda r: r.slice_index)]
        steps = np.diff(z)
        assert np.all(steps > 0) and np.allclose(steps, steps[0])
        assert steps[0] in (4.0, 4.5, 5.0)
    studies_per_patient = Counter(r.patient_id for r in records if r.slice_index == 0)
    assert set(studies_per_patient.values()) == {1, 2}
    assert all(re.fullmatch(r"ID_[0-9a-f]{8}", p) for p in studies_per_patient)
    bleeding = {r.study_uid for r in records if r.label("any")}
    assert 2 <= len(bleeding) <= 4  # half the studies planned with a bleed; a tiny one may cover no pixel
    # a bleed spans consecutive slices of its study
    for uid in bleeding:
        ks = sorted(r.slice_index for r in records if r.study_uid == uid and r.label("any"))
        assert len(ks) >= 2


def test_deterministic_by_seed_and_noise(tmp_path, data):
    out, records = data
    again = generate_ct(tmp_path / "a", **OPTIONS)
    assert [r.image_id for r in again] == [r.image_id for r in records]
    for name in (LABEL_CSV, f"{IMAGE_DIR}/{records[5].image_id}.dcm"):
        assert hashlib.sha256((tmp_path / "a" / name).read_bytes()).digest() == \
            hashlib.sha256((out / name).read_bytes()).digest()
    other = generate_ct(tmp_path / "b", **{**OPTIONS, "seed": 4, "studies": 2})
    assert {r.image_id for r in other}.isdisjoint({r.image_id for r in records})
    noisy = generate_ct(tmp_path / "n", **{**OPTIONS, "studies": 2, "noise_hu": 8.0, "wrap_fraction": 0.0})
    clean = generate_ct(tmp_path / "c", **{**OPTIONS, "studies": 2, "wrap_fraction": 0.0})
    diff = hu_of(read(noisy[4].path)) - hu_of(read(clean[4].path))
    inside = hu_of(read(clean[4].path)) > -900
    assert 7.0 < diff[inside].std() < 9.0


def test_options_out_of_range(tmp_path):
    with pytest.raises(ConfigError, match="studies"):
        generate_ct(tmp_path, studies=0)
    with pytest.raises(ConfigError, match="wrap_fraction"):
        generate_ct(tmp_path, wrap_fraction=1.5)


def test_cli_synth_ct(tmp_path, capsys):
    from cadx.cli.main import main

    assert main(["synth", "ct", "--out", str(tmp_path), "--studies", "2", "--seed", "1", "--slices", "4",
                 "--size", "48"]) == 0
    assert len(list((tmp_path / IMAGE_DIR).glob("ID_*.dcm"))) == 8
    assert "wrote 8 CT slices of 2 studies" in capsys.readouterr().out
