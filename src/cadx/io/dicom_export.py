"""Results a PACS files with the study: DICOM Secondary Capture images and a Comprehensive SR.

Both are built with highdicom (the ``ct`` extra) from the headers of the source slices, so they
carry the source study's identity (StudyInstanceUID, PatientID, PatientName, PatientBirthDate,
PatientSex, StudyDate, StudyTime, StudyID, AccessionNumber, ReferringPhysicianName) and a new
SeriesInstanceUID and SOPInstanceUIDs: a viewer shows them as one more series of the same study.

Inputs are never touched: an output inside the folder of a source file is refused, and every file
is written to a temporary name and renamed when complete (:func:`cadx.io.atomic.atomic_path`).
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cadx import __version__
from cadx.errors import InputFileError, OutputPathError, require_extra
from cadx.io.atomic import atomic_path

__all__ = ["DEFAULT_SR_NOTE", "MANUFACTURER", "write_findings_sr", "write_secondary_capture"]

log = logging.getLogger(__name__)

#: Manufacturer and software recorded in the exported objects.
MANUFACTURER = "cadx"

#: Text item of every SR: what the numbers are and are not.
DEFAULT_SR_NOTE = ("Computer-aided second opinion (cadx): per-label probabilities of intracranial haemorrhage "
                   "for this study. Not a diagnosis; to be read by a radiologist.")

#: Coding scheme of cadx's own concepts (DICOM private coding schemes start with 99).
_SCHEME = "99CADX"

Source = Any  # a pydicom Dataset (read from a file, with or without pixels) or a path to a DICOM file


def _quiet(func: Any) -> Any:
    """Run ``func`` without pydicom's invalid-UID warnings (RSNA ids such as ``ID_0a1b`` are not UIDs)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cadx.io.dicom import quiet_uids

        with quiet_uids():
            return func(*args, **kwargs)

    return wrapper


@_quiet
def write_secondary_capture(
    out_dir: str | Path,
    source_datasets: Sequence[Source],
    images_rgb: Sequence[np.ndarray],
    *,
    series_description: str,
    series_number: int = 900,
) -> list[Path]:
    """Write one RGB Secondary Capture image per source slice as a new series of the source study.

    Parameters
    ----------
    out_dir : str or Path
        Folder for the series (created); files ``sc_0001.dcm``, ``sc_0002.dcm``, ... in the order of
        ``images_rgb``. Must not be the folder of any source file.
    source_datasets : sequence of pydicom.Dataset or path
        The slice each image was made from (e.g. the flagged slices), all of one study; their
        headers give the patient and study, and each image references its slice (Source Image
        Sequence).
    images_rgb : sequence of ndarray
        ``(H, W, 3)`` uint8 RGB, one per source (e.g. a Grad-CAM over the brain window).
    series_description : str
        Shown by viewers as the series' name (at most 64 characters).
    series_number : int
        Series Number of the new series.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    InputFileError
        A source file is unreadable or not DICOM, or the sources belong to more than one study.
    OutputPathError
        ``out_dir`` is the folder of a source file, or cannot be written.
    ValueError
        ``images_rgb`` not one ``(H, W, 3)`` uint8 array per source (a bug of the caller).
    """
    hd = require_extra("highdicom", "ct")
    sources = [_header(s) for s in source_datasets]
    study_uid = _one_study(sources)
    if len(images_rgb) != len(sources):
        raise ValueError(f"{len(images_rgb)} images for {len(sources)} source slices")
    for i, img in enumerate(images_rgb):
        if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3):
            raise ValueError(f"image {i}: expected (H, W, 3) uint8 RGB, got {getattr(img, 'dtype', type(img))} "
                             f"{getattr(img, 'shape', '')}")
    out_dir = Path(out_dir)
    _refuse_input_folder(out_dir, sources)
    series_uid = hd.UID()
    written = []
    for i, (src, img) in enumerate(zip(sources, images_rgb, strict=True), start=1):
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=src,
            pixel_array=np.ascontiguousarray(img),
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=i,
            manufacturer=MANUFACTURER,
            patient_orientation=_patient_orientation(src),
        )
        sc.SeriesDescription = series_description[:64]
        sc.SoftwareVersions = __version__
        sc.ImageType = ["DERIVED", "SECONDARY"]
        sc.BurnedInAnnotation = "NO"
        ref = _ref_item(src)
        sc.SourceImageSequence = [ref]
        written.append(_save(sc, out_dir / f"sc_{i:04d}.dcm"))
    log.info("wrote %d secondary capture images of study %s to %s", len(written), study_uid, out_dir)
    return written


@_quiet
def write_findings_sr(
    path: str | Path,
    source_datasets: Sequence[Source],
    findings: Mapping[str, float],
    *,
    note: str = DEFAULT_SR_NOTE,
    series_description: str = "cadx findings",
    series_number: int = 901,
) -> Path:
    """Write the study's findings as a Comprehensive SR in a new series of the source study.

    The content tree: a container "Diagnostic imaging report" (LOINC 18748-4) holding a text item
    "Finding" with ``note`` and one numeric item per label (concept ``(label, 99CADX, "probability
    of <label>")``, unit UCUM ``1``), in the order of ``findings``. The source slices are listed as
    evidence.

    Parameters
    ----------
    path : str or Path
        Output file (``.dcm``); not in the folder of a source file.
    source_datasets : sequence of pydicom.Dataset or path
        The study's slices (all of one study).
    findings : mapping of str to float
        Label -> study-level probability in [0, 1], e.g. ``{"epidural": 0.02, ..., "any": 0.91}``.
    note : str
        Free text stored with the numbers.
    series_description : str
    series_number : int

    Returns
    -------
    Path

    Raises
    ------
    InputFileError
        A source file is unreadable, or the sources belong to more than one study.
    OutputPathError
        ``path`` is in the folder of a source file, or cannot be written.
    ValueError
        No sources, no findings, or a probability outside [0, 1] (a bug of the caller).
    """
    hd = require_extra("highdicom", "ct")
    sources = [_header(s) for s in source_datasets]
    _one_study(sources)
    if not findings:
        raise ValueError("no findings to write")
    for label, p in findings.items():
        if not (isinstance(p, (int, float, np.floating)) and 0.0 <= float(p) <= 1.0):
            raise ValueError(f"finding {label!r}: probability must be in [0, 1], got {p!r}")
    path = Path(path)
    _refuse_input_folder(path.parent, sources)
    unit = hd.sr.CodedConcept("1", "UCUM", "no units")
    items = [hd.sr.TextContentItem(name=hd.sr.CodedConcept("121071", "DCM", "Finding"), value=note,
                                   relationship_type="CONTAINS")]
    for label, p in findings.items():
        items.append(hd.sr.NumContentItem(name=hd.sr.CodedConcept(label[:16], _SCHEME, f"probability of {label}"),
                                          value=float(p), unit=unit, relationship_type="CONTAINS"))
    root = hd.sr.ContainerContentItem(name=hd.sr.CodedConcept("18748-4", "LN", "Diagnostic imaging report"))
    root.ContentSequence = hd.sr.ContentSequence(items)
    sr = hd.sr.ComprehensiveSR(
        evidence=sources,
        content=root,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
    )
    sr.SeriesDescription = series_description[:64]
    sr.SoftwareVersions = __version__
    out = _save(sr, path)
    log.info("wrote findings SR of study %s to %s", sr.StudyInstanceUID, out)
    return out


def _header(source: Source) -> Any:
    """The source as a pydicom Dataset (files read without pixel data)."""
    pydicom = require_extra("pydicom", "ct")
    if isinstance(source, pydicom.Dataset):
        return _with_type2(copy.copy(source))
    path = Path(source)
    try:
        return _with_type2(pydicom.dcmread(path, stop_before_pixels=True))
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise InputFileError(path, f"not a readable DICOM file ({type(exc).__name__})") from None


#: Type 2 patient/study attributes highdicom copies from the source; anonymised sets (RSNA 2019) lack them.
_TYPE2 = ("PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate", "StudyTime",
          "ReferringPhysicianName")


def _with_type2(ds: Any) -> Any:
    """``ds`` with each missing attribute of :data:`_TYPE2` present and empty (DICOM's "unknown")."""
    for name in _TYPE2:
        if name not in ds:
            setattr(ds, name, "")
    return ds


def _where(ds: Any) -> str:
    return str(getattr(ds, "filename", None) or f"SOPInstanceUID {getattr(ds, 'SOPInstanceUID', '?')}")


def _one_study(sources: Sequence[Any]) -> str:
    if not sources:
        raise ValueError("no source datasets")
    for ds in sources:
        for tag in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
            if not getattr(ds, tag, None):
                raise InputFileError(_where(ds), f"has no {tag}; cannot file results with its study")
    study = str(sources[0].StudyInstanceUID)
    for ds in sources[1:]:
        if str(ds.StudyInstanceUID) != study:
            raise InputFileError(_where(ds), f"belongs to study {ds.StudyInstanceUID}, the others to {study}; "
                                 "export one study at a time")
    return study


def _refuse_input_folder(out_dir: Path, sources: Sequence[Any]) -> None:
    """OutputPathError when ``out_dir`` is the folder of a source file (results never go beside inputs)."""
    target = out_dir.resolve()
    for ds in sources:
        name = getattr(ds, "filename", None)
        if isinstance(name, (str, Path)) and name and Path(name).resolve().parent == target:
            raise OutputPathError(out_dir, f"holds the input {name}; write the results to another folder")


def _patient_orientation(ds: Any) -> tuple[str, str]:
    """Patient Orientation (row, column direction letters) from ImageOrientationPatient.

    The dominant axis of each direction cosine vector: +x L, -x R, +y P, -y A, +z H, -z F (DICOM
    patient coordinates). Without the tag, an axial slice (L, P) is assumed.
    """
    iop = getattr(ds, "ImageOrientationPatient", None)
    if iop is None or len(iop) != 6:
        return ("L", "P")
    letters = (("L", "R"), ("P", "A"), ("H", "F"))
    out = []
    for vec in (np.asarray(iop[:3], float), np.asarray(iop[3:], float)):
        axis = int(np.argmax(np.abs(vec)))
        out.append(letters[axis][0] if vec[axis] >= 0 else letters[axis][1])
    return out[0], out[1]


def _ref_item(ds: Any) -> Any:
    pydicom = require_extra("pydicom", "ct")
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    return item


def _save(ds: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path
