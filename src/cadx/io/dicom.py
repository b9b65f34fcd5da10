"""Read head CT slices and series from DICOM files, in Hounsfield units.

Built for the RSNA 2019 intracranial haemorrhage data and its quirks, valid for any CT series:

* ``WindowCenter``/``WindowWidth`` are often multi-valued, zero-padded strings (``"00040\\00040"``):
  the first value is used.
* Some scans store 12-bit unsigned pixels (BitsStored 12, PixelRepresentation 0) whose values wrapped
  around with a RescaleIntercept above -100. They are repaired as the competition's solutions do: add
  1000, subtract 4096 from values >= 4096 and use intercept -1000 (:attr:`CtHeader.wrap_fix`).
* Image IDs (``ID_6431af929``) stand in the UID tags but are not valid UIDs; pydicom's "Invalid value
  for VR UI" warnings and log lines are silenced while cadx reads a file (only those, only then).

Every problem with a file ends in one :class:`~cadx.errors.InputFileError` naming it: not DICOM, no
pixel data, truncated or undecodable pixel data, not a CT image.

pydicom (and, for JPEG 2000 / RLE files, the pylibjpeg plugins) come with ``pip install 'cadx[ct]'``.
The warning filter uses :func:`warnings.catch_warnings`, which is not thread-safe: read files from
several processes (:func:`cadx.parallel.jobs.map_jobs`), not threads.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import InputFileError, require_extra
from cadx.io.limits import require_regular_file

log = logging.getLogger(__name__)

#: The message of pydicom's warning for a UID tag holding something that is not a UID.
_UID_WARNING = "Invalid value for VR UI"

#: Errors pydicom and its decoders raise for a damaged or unsupported file.
_READ_ERRORS = (ValueError, EOFError, OSError, struct.error, NotImplementedError, RuntimeError, KeyError,
                TypeError, AttributeError)

#: Two slice normals closer than this (1 - cosine of the angle, about 2.6 degrees) are the same orientation.
_ORIENTATION_TOL = 1e-3


class _DropUidWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_UID_WARNING)


_UID_FILTER = _DropUidWarnings()


@contextlib.contextmanager
def _quiet_uids() -> Iterator[None]:
    """Silence pydicom's invalid-UID warnings and log lines inside the block only."""
    logger = logging.getLogger("pydicom")
    logger.addFilter(_UID_FILTER)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_UID_WARNING)
            yield
    finally:
        logger.removeFilter(_UID_FILTER)


#: Public name of :func:`_quiet_uids` for the DICOM writers (RSNA image ids are not valid UIDs).
quiet_uids = _quiet_uids


@dataclass(frozen=True)
class CtHeader:
    """What cadx uses from a CT slice's header (no pixels).

    Attributes
    ----------
    path : Path
        The file.
    sop_uid, study_uid, series_uid : str
        SOPInstanceUID, StudyInstanceUID, SeriesInstanceUID as stored (RSNA: ``ID_...``); "" if absent.
    image_id : str
        The RSNA image ID: the SOPInstanceUID when it starts with ``ID_``, the file name stem otherwise.
    patient_id : str
        PatientID ("" if absent).
    instance_number : int or None
        InstanceNumber.
    position_mm : tuple of 3 float or None
        ImagePositionPatient: the centre of the first pixel, patient frame (x, y, z) in mm.
    orientation : tuple of 6 float or None
        ImageOrientationPatient: direction cosines of the rows then the columns.
    spacing_mm : tuple of 2 float or None
        PixelSpacing (between rows, between columns) in mm.
    window_center_hu, window_width_hu : float or None
        First value of WindowCenter / WindowWidth, in HU.
    image_type : tuple of str
        ImageType values, upper case.
    shape : tuple of 2 int
        (Rows, Columns).
    bits_stored, pixel_representation : int
        As stored.
    slope, intercept : float
        RescaleSlope / RescaleIntercept as stored (1 and 0 when absent).
    """

    path: Path
    sop_uid: str
    image_id: str
    study_uid: str
    series_uid: str
    patient_id: str
    instance_number: int | None
    position_mm: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    spacing_mm: tuple[float, float] | None
    window_center_hu: float | None
    window_width_hu: float | None
    image_type: tuple[str, ...]
    shape: tuple[int, int]
    bits_stored: int
    pixel_representation: int
    slope: float
    intercept: float

    @property
    def wrap_fix(self) -> bool:
        """True for the RSNA scans whose 12-bit unsigned pixels wrapped (see the module notes)."""
        return self.bits_stored == 12 and self.pixel_representation == 0 and self.intercept > -100

    @property
    def is_localizer(self) -> bool:
        """True when ImageType says LOCALIZER (a scout image, not a slice)."""
        return "LOCALIZER" in self.image_type

    @property
    def normal(self) -> np.ndarray | None:
        """Unit slice normal (row cosines x column cosines), patient frame; None without orientation."""
        if self.orientation is None:
            return None
        n = np.cross(self.orientation[:3], self.orientation[3:])
        norm = float(np.linalg.norm(n))
        return n / norm if norm > 0 else None


@dataclass(frozen=True, eq=False)
class CtSlice(CtHeader):
    """A CT slice: its header (:class:`CtHeader`) and ``hu``, ``(H, W)`` float32 Hounsfield units."""

    hu: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0), np.float32))


@dataclass(frozen=True, eq=False)
class CtSeries:
    """A CT series sorted along the slice normal.

    Attributes
    ----------
    slices : tuple of CtSlice
        Ordered by position along the normal (increasing); each ``hu`` is a view of ``volume_hu``.
    volume_hu : numpy.ndarray
        ``(z, y, x)`` float32 Hounsfield units.
    spacing_mm : tuple of 3 float
        (between slices, between rows, between columns) in mm; the slice spacing is the median step
        along the normal (1 when there is one slice or no position).
    excluded : tuple of (Path, str)
        Files left out (localisers, other orientation or size) with the reason.
    """

    slices: tuple[CtSlice, ...]
    volume_hu: np.ndarray = field(repr=False)
    spacing_mm: tuple[float, float, float]
    excluded: tuple[tuple[Path, str], ...] = ()


def _first_number(value: Any) -> float | None:
    """First numeric value of a (multi-valued, possibly zero-padded string) tag; None if none."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str):
        value = value.replace("\x00", "").split("\\")
    elif not isinstance(value, (int, float)):
        try:
            value = list(value)
        except TypeError:
            return None
    if isinstance(value, list):
        if not value:
            return None
        value = value[0]
    try:
        out = float(str(value).strip()) if isinstance(value, (str, bytes)) else float(value)
    except ValueError:
        return None
    return out if np.isfinite(out) else None


def _floats(ds: Any, keyword: str, n: int) -> tuple[float, ...] | None:
    value = ds.get(keyword)
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _read(path: Path, *, pixels: bool) -> Any:
    pydicom = require_extra("pydicom", "ct")
    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except pydicom.errors.InvalidDicomError:
        raise InputFileError(path, "not a DICOM file (no 'DICM' marker after the 128-byte preamble)") from None
    except _READ_ERRORS as exc:
        raise InputFileError(path, f"damaged DICOM file ({exc})") from None


def _header(path: Path, ds: Any, *, pixels: bool) -> CtHeader:
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality and modality != "CT":
        raise InputFileError(path, f"not a CT image (Modality {modality}); cadx reads CT slices only")
    if pixels and "PixelData" not in ds:
        raise InputFileError(path, "has no pixel data (a truncated file, or not an image)")
    if not modality:
        raise InputFileError(path, "no Modality (0008,0060); expected a CT image")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits_stored = int(ds.get("BitsStored", 16))
        pixrep = int(ds.get("PixelRepresentation", 0))
        slope = _first_number(ds.get("RescaleSlope"))
        intercept = _first_number(ds.get("RescaleIntercept"))
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputFileError(path, f"invalid image header ({exc})") from None
    sop = str(ds.get("SOPInstanceUID", "") or "")
    number = ds.get("InstanceNumber")
    position = _floats(ds, "ImagePositionPatient", 3)
    orientation = _floats(ds, "ImageOrientationPatient", 6)
    spacing = _floats(ds, "PixelSpacing", 2)
    return CtHeader(
        path=path,
        sop_uid=sop,
        image_id=sop if sop.startswith("ID_") else path.stem,
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        patient_id=str(ds.get("PatientID", "") or ""),
        instance_number=int(number) if number not in (None, "") else None,
        position_mm=position,  # type: ignore[arg-type]
        orientation=orientation,  # type: ignore[arg-type]
        spacing_mm=spacing,  # type: ignore[arg-type]
        window_center_hu=_first_number(ds.get("WindowCenter")),
        window_width_hu=_first_number(ds.get("WindowWidth")),
        image_type=tuple(str(v).strip().upper() for v in (ds.get("ImageType") or ())),
        shape=(rows, cols),
        bits_stored=bits_stored,
        pixel_representation=pixrep,
        slope=1.0 if slope is None else slope,
        intercept=0.0 if intercept is None else intercept,
    )


def read_ct_header(path: str | Path) -> CtHeader:
    """Read a CT slice's header without its pixel data (for sorting and checks).

    Parameters
    ----------
    path : str or Path
        A DICOM file.

    Returns
    -------
    CtHeader

    Raises
    ------
    InputFileError
        Not DICOM, damaged, or not a CT image.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> h = read_ct_header(get_testdata_file("CT_small.dcm"))
    >>> h.shape, h.intercept, h.window_center_hu
    ((128, 128), -1024.0, None)
    """
    path = require_regular_file(path)
    with _quiet_uids():
        return _header(path, _read(path, pixels=False), pixels=False)


def hounsfield(pixels: np.ndarray, header: CtHeader) -> np.ndarray:
    """Stored pixel values to Hounsfield units, with the 12-bit wrap repair where it applies.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(H, W)`` stored values (pydicom's ``pixel_array``).
    header : CtHeader
        Slope, intercept and the :attr:`CtHeader.wrap_fix` condition.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float32 HU = value * slope + intercept.
    """
    if header.wrap_fix:
        wrapped = pixels.astype(np.int32) + 1000
        wrapped[wrapped >= 4096] -= 4096
        return (wrapped * np.float32(header.slope) + np.float32(-1000.0)).astype(np.float32, copy=False)
    hu = pixels.astype(np.float32)
    if header.slope != 1.0:
        hu *= np.float32(header.slope)
    if header.intercept != 0.0:
        hu += np.float32(header.intercept)
    return hu


def read_ct_slice(path: str | Path) -> CtSlice:
    """Read one CT slice in Hounsfield units.

    Parameters
    ----------
    path : str or Path
        A DICOM CT image (uncompressed, JPEG 2000, RLE, ... whatever pydicom and its plugins decode).

    Returns
    -------
    CtSlice
        The header fields and ``hu``, ``(H, W)`` float32.

    Raises
    ------
    InputFileError
        Not DICOM, no pixel data, truncated or undecodable pixel data, not a single-frame CT image.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> s = read_ct_slice(get_testdata_file("CT_small.dcm"))
    >>> s.hu.shape, s.hu.dtype, float(s.hu.min())
    ((128, 128), dtype('float32'), -896.0)
    """
    path = require_regular_file(path)
    with _quiet_uids():
        ds = _read(path, pixels=True)
        header = _header(path, ds, pixels=True)
        try:
            pixels = ds.pixel_array
        except _READ_ERRORS as exc:
            raise InputFileError(path, f"cannot decode the pixel data ({exc})") from None
    if pixels.shape != header.shape:
        raise InputFileError(path, f"pixel data of shape {pixels.shape}; expected one {header.shape} frame")
    values = {f: getattr(header, f) for f in CtHeader.__dataclass_fields__}
    return CtSlice(**values, hu=hounsfield(pixels, header))


def _series_paths(paths_or_dir: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(paths_or_dir, (str, Path)):
        folder = Path(paths_or_dir)
        if not folder.is_dir():
            return [folder]
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        dcm = [p for p in files if p.suffix.lower() == ".dcm"]
        paths = dcm or files
        if not paths:
            raise InputFileError(folder, "no DICOM files in this folder")
        return paths
    return [Path(p) for p in paths_or_dir]


def leave_out_non_slices(slices: Sequence[CtHeader]) -> tuple[list[CtHeader], list[tuple[Path, str]]]:
    """Split one series' images into its axial slices and the images that are not slices of it.

    Left out, with the reason: localisers (ImageType LOCALIZER), images whose size differs from the
    most common one, and images whose slice normal differs from the most common one by more than
    about 2.6 degrees (a scout without the LOCALIZER flag, a reformat).

    Parameters
    ----------
    slices : sequence of CtHeader (or CtSlice)
        The images of one series, in any order.

    Returns
    -------
    kept : list
        The slices, in the order given.
    excluded : list of (Path, str)
        The others with the reason.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from dataclasses import replace
    >>> h = read_ct_header(get_testdata_file("CT_small.dcm"))
    >>> scout = replace(h, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    >>> kept, excluded = leave_out_non_slices([h, scout])
    >>> len(kept), excluded[0][1]
    (1, 'a localizer (scout) image (ImageType LOCALIZER), not a slice of the series')
    """
    excluded: list[tuple[Path, str]] = []
    kept = []
    for s in slices:
        if s.is_localizer:
            excluded.append((s.path, "a localizer (scout) image (ImageType LOCALIZER), not a slice of the series"))
        else:
            kept.append(s)
    if kept:
        shape = Counter(s.shape for s in kept).most_common(1)[0][0]
        excluded += [(s.path, f"size {s.shape} differs from the series' {shape}") for s in kept if s.shape != shape]
        kept = [s for s in kept if s.shape == shape]
    normals = [s.normal for s in kept if s.normal is not None]
    if normals:
        key = Counter(tuple(np.round(n, 2)) for n in normals).most_common(1)[0][0]
        normal = next(n for n in normals if tuple(np.round(n, 2)) == key)
        off = [s for s in kept if s.normal is not None and 1 - abs(float(s.normal @ normal)) > _ORIENTATION_TOL]
        excluded += [(s.path, "orientation differs from the series' (a scout or a reformat)") for s in off]
        gone = {id(s) for s in off}
        kept = [s for s in kept if id(s) not in gone]
    return kept, excluded


def read_ct_series(paths_or_dir: str | Path | Iterable[str | Path]) -> CtSeries:
    """Read one CT series and sort its slices along the slice normal.

    Slices are ordered by ``ImagePositionPatient`` projected on the normal of the series' orientation
    (never by file name or InstanceNumber, which need not follow the anatomy). Localisers (ImageType
    LOCALIZER) and images whose orientation or size differ from the most common one are left out and
    listed in :attr:`CtSeries.excluded` (and logged). Without positions the order is InstanceNumber's.

    Parameters
    ----------
    paths_or_dir : str, Path or iterable of them
        The files, or a folder (its ``*.dcm`` files, or all its files when none ends in ``.dcm``).

    Returns
    -------
    CtSeries

    Raises
    ------
    InputFileError
        A bad file (named), files from several series, or no slice left.
    """
    paths = _series_paths(paths_or_dir)
    slices = [read_ct_slice(p) for p in paths]
    series = Counter(s.series_uid for s in slices).most_common()
    if len(series) > 1:
        odd = next(s for s in slices if s.series_uid != series[0][0])
        raise InputFileError(odd.path, f"belongs to series {odd.series_uid!r}, the others to {series[0][0]!r}; "
                                       "read one series at a time")
    kept, excluded = leave_out_non_slices(slices)
    normals = [s.normal for s in kept if s.normal is not None]
    normal = None
    if normals:
        key = Counter(tuple(np.round(n, 2)) for n in normals).most_common(1)[0][0]
        normal = next(n for n in normals if tuple(np.round(n, 2)) == key)
    for p, reason in excluded:
        log.info("%s: left out of the series: %s", p, reason)
    if not kept:
        raise InputFileError(paths[0] if len(paths) == 1 else paths[0].parent, "no CT slice left in the series "
                             "(all localisers or of another orientation or size)")
    if normal is not None and all(s.position_mm is not None for s in kept):
        depth = {id(s): float(np.dot(s.position_mm, normal)) for s in kept}
        kept.sort(key=lambda s: depth[id(s)])
        steps = np.diff([depth[id(s)] for s in kept])
    else:
        kept.sort(key=lambda s: (s.instance_number is None, s.instance_number or 0, s.path.name))
        steps = np.zeros(0)
    dz = float(np.median(steps)) if steps.size and np.median(steps) > 0 else 1.0
    row, col = kept[0].spacing_mm or (1.0, 1.0)
    volume = np.stack([s.hu for s in kept])
    ordered = tuple(replace(s, hu=volume[i]) for i, s in enumerate(kept))
    return CtSeries(slices=ordered, volume_hu=volume, spacing_mm=(dz, float(row), float(col)),
                    excluded=tuple(excluded))
