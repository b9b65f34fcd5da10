"""SHIM for C1's DICOM reader (C1 replaces this file): plain pydicom HU, no RSNA quirks."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadx.errors import InputFileError, require_extra

log = logging.getLogger(__name__)


@dataclass
class CtSlice:
    """One CT slice: ``hu`` (H, W) float32 Hounsfield units and the header fields used for sorting."""

    hu: np.ndarray | None
    image_id: str
    sop_uid: str
    study_uid: str
    series_uid: str
    patient_id: str
    position_mm: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    spacing_mm: tuple[float, float] | None
    window_center_hu: float | None
    window_width_hu: float | None
    path: Path | None = None


def _first(value: object) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None


def _read(path: str | Path, *, pixels: bool) -> CtSlice:
    with warnings.catch_warnings():  # RSNA ids are not valid UIDs: no warning flood
        warnings.simplefilter("ignore")
        return _read_quiet(path, pixels=pixels)


def _read_quiet(path: str | Path, *, pixels: bool) -> CtSlice:
    pydicom = require_extra("pydicom", "ct")
    p = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(p, stop_before_pixels=not pixels)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise InputFileError(p, f"not a readable DICOM file ({exc})") from None
    hu = None
    if pixels:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                raw = ds.pixel_array.astype(np.float32)
        except (AttributeError, ValueError) as exc:
            raise InputFileError(p, f"no readable pixel data ({exc})") from None
        hu = raw * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))
    sop = str(getattr(ds, "SOPInstanceUID", p.stem))
    pos = getattr(ds, "ImagePositionPatient", None)
    ori = getattr(ds, "ImageOrientationPatient", None)
    sp = getattr(ds, "PixelSpacing", None)
    return CtSlice(hu=hu, image_id=sop, sop_uid=sop, study_uid=str(getattr(ds, "StudyInstanceUID", "")),
                   series_uid=str(getattr(ds, "SeriesInstanceUID", "")), patient_id=str(getattr(ds, "PatientID", "")),
                   position_mm=tuple(float(v) for v in pos) if pos is not None else None,
                   orientation=tuple(float(v) for v in ori) if ori is not None else None,
                   spacing_mm=tuple(float(v) for v in sp) if sp is not None else None,
                   window_center_hu=_first(getattr(ds, "WindowCenter", None)),
                   window_width_hu=_first(getattr(ds, "WindowWidth", None)), path=p)


def read_ct_slice(path: str | Path) -> CtSlice:
    """Read one CT slice with its HU pixels (shim)."""
    return _read(path, pixels=True)


def read_ct_header(path: str | Path) -> CtSlice:
    """Read one CT slice's header only (``hu`` is None; shim)."""
    return _read(path, pixels=False)
