"""A tiny RSNA 2019-layout folder for head-CT tests (pydicom only, no network, fixed seed).

``stage_2_train/ID_<hex>.dcm`` 32 x 32 12-bit unsigned slices (RescaleIntercept -1024) and
``stage_2_train.csv`` in the long format (``ID_<image>_<subtype>,Label``, six rows per image, with
some rows duplicated as in the real file). A bleed is a bright (70 HU) square whose corner says the
subtype, so a small network can learn it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

SUBTYPES = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any")


def write_slice(path: Path, hu: np.ndarray, *, image_id: str, patient: str, study: str, series: str,
                z_mm: float) -> Path:
    """One CT slice as RSNA ships it (SOPInstanceUID = ``ID_<hex>``, multi-valued windows)."""

    with warnings.catch_warnings():  # RSNA image ids are not valid UIDs
        warnings.simplefilter("ignore")
        return _write(path, hu, image_id=image_id, patient=patient, study=study, series=series, z_mm=z_mm)


def _write(path: Path, hu: np.ndarray, *, image_id: str, patient: str, study: str, series: str,
           z_mm: float) -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = image_id
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = image_id
    ds.Modality = "CT"
    ds.PatientID = patient
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.ImagePositionPatient = [-16.0, -16.0, float(z_mm)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1.0, 1.0]
    ds.WindowCenter = ["00036", "00036"]
    ds.WindowWidth = ["00080", "00080"]
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = hu.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.clip(np.rint(hu + 1024), 0, 4095).astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def slice_hu(labels: np.ndarray, rng: np.random.Generator, size_px: int = 32) -> np.ndarray:
    """Brain (30 HU) in air with a 70 HU square per positive subtype at a subtype-specific place."""
    hu = np.full((size_px, size_px), -1000.0)
    hu[2:-2, 2:-2] = 30.0
    corners = [(4, 4), (4, 20), (20, 4), (20, 20), (12, 12)]
    for k, (y, x) in enumerate(corners):
        if labels[k]:
            hu[y:y + 8, x:x + 8] = 70.0
    return hu + rng.normal(0, 2, hu.shape)


def make_rsna_folder(root: Path, *, patients: int = 6, slices: int = 4, studies_per_patient: int = 1,
                     size_px: int = 32, duplicate_rows: int = 3, seed: int = 0) -> Path:
    """Write ``root`` in the RSNA 2019 training layout.

    Patient ``i`` has ``studies_per_patient`` studies of ``slices`` slices each (one series per
    study); slice files are written in a shuffled z order. Every other patient has bleeds: slice
    ``j`` of such a study has subtype ``(i + j) % 5``.

    Returns
    -------
    Path
        ``root``.
    """
    rng = np.random.default_rng(seed)
    images = root / "stage_2_train"
    images.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, int]] = []
    n = 0
    for i in range(patients):
        for s in range(studies_per_patient):
            study, series = f"1.2.3.{i}.{s}", f"1.2.3.{i}.{s}.1"
            for j in rng.permutation(slices):
                image_id = f"ID_{n:04x}{i:02x}{j:02x}ab"
                n += 1
                y = np.zeros(6, np.int64)
                if i % 2 == 1:
                    y[(i + j) % 5] = 1
                    y[5] = 1
                write_slice(images / f"{image_id}.dcm", slice_hu(y, rng, size_px), image_id=image_id,
                            patient=f"PAT_{i:03d}", study=study, series=series, z_mm=5.0 * j)
                rows += [(f"{image_id}_{name}", int(v)) for name, v in zip(SUBTYPES, y, strict=True)]
    lines = ["ID,Label"] + [f"{a},{b}" for a, b in rows] + [f"{a},{b}" for a, b in rows[:duplicate_rows]]
    (root / "stage_2_train.csv").write_text("\n".join(lines) + "\n")
    return root
