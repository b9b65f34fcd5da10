"""Write a synthetic head-CT data set in the RSNA Intracranial Hemorrhage Detection (2019) layout.

::

    OUT/stage_2_train/ID_0a1b2c3d4.dcm     one axial CT slice per file (RSNA-style tags and quirks)
    OUT/stage_2_train.csv                  ID,Label; six rows per image, ID_<image>_<subtype>

The label file lists each image's six rows in the order epidural, intraparenchymal,
intraventricular, subarachnoid, subdural, any (``any`` is the OR of the five), images in random
order, and a few images' rows twice, as in the real file (readers must drop duplicates).

Each slice is 12-bit unsigned (BitsStored 12, PixelRepresentation 0) with RescaleIntercept -1024 and
RescaleSlope 1, multi-valued zero-padded window strings (``00040\\00040``), RSNA-style identifiers
(``ID_`` + hex; SOPInstanceUID is the image id, not a valid UID), ImagePositionPatient stepping
along z by the study's slice spacing. A ``wrap_fraction`` of the studies carry the 12-bit wrap
quirk: RescaleIntercept 0 and stored values ``(HU + 1000 - 1000) mod 4096``, so that the known fix
(add 1000, subtract 4096 from values >= 4096, intercept -1000) recovers HU. Patients have one or
two studies (the second another scan of the same head). The images are drawn by
:mod:`cadx.synth.ct_render`; about half the studies (``bleed_fraction``) carry one to three
haemorrhages over a few slices each, small or faint enough that the task does not saturate.

Everything follows from ``seed``: the same arguments give the same files, byte for byte.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cadx.errors import ConfigError, require_extra
from cadx.io.atomic import atomic_path, prepare_output_folder
from cadx.synth.ct_render import BLEED_CODE0, SUBTYPES, TISSUES, Bleed, Head, Pose, StudyGrid, render_slice

log = logging.getLogger(__name__)

#: Label columns of ``stage_2_train.csv``, in the file's order per image.
LABELS = SUBTYPES + ("any",)
IMAGE_DIR = "stage_2_train"
LABEL_CSV = "stage_2_train.csv"
#: Stored value = HU - INTERCEPT (ordinary studies).
INTERCEPT = -1024
#: Share of each subtype among drawn haemorrhages (epidural rare, as in RSNA 2019).
SUBTYPE_WEIGHTS = {"epidural": 0.08, "intraparenchymal": 0.25, "intraventricular": 0.15,
                   "subarachnoid": 0.22, "subdural": 0.30}
_FOV_MM = 220.0
_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class CtImageRecord:
    """One synthetic slice and the truth behind it.

    Attributes
    ----------
    image_id : str
        ``ID_<9 hex>``: file ``<image_id>.dcm`` and its SOPInstanceUID.
    path : Path
    patient_id, study_uid, series_uid : str
        RSNA-style ``ID_<hex>`` identifiers (PatientID, StudyInstanceUID, SeriesInstanceUID).
    slice_index : int
        0 = lowest slice of the series (skull base), increasing towards the vertex.
    z_mm : float
        ImagePositionPatient z, mm.
    labels : tuple of int
        0/1 per :data:`LABELS` (five subtypes then ``any``).
    wrapped : bool
        The slice is stored with the 12-bit wrap quirk.
    landmarks : dict
        ``name -> (row, col)`` of a pixel known to hold that tissue in the noise-free image:
        ``"skull"``, ``"brain"`` (white matter), ``"ventricle"`` where the slice shows one, and each
        subtype drawn on the slice (blood).
    truth_hu : dict
        ``name -> HU`` at that pixel before noise.
    """

    image_id: str
    path: Path
    patient_id: str
    study_uid: str
    series_uid: str
    slice_index: int
    z_mm: float
    labels: tuple[int, ...]
    wrapped: bool
    landmarks: dict = field(default_factory=dict)
    truth_hu: dict = field(default_factory=dict)

    def label(self, name: str) -> int:
        """0/1 label of one of :data:`LABELS`."""
        return self.labels[LABELS.index(name)]


@dataclass(frozen=True)
class _Study:
    index: int
    patient: int
    head: Head
    pose: Pose
    bleeds: tuple[Bleed, ...]
    wrapped: bool
    spacing_mm: float
    z0_mm: float
    window: tuple[int, int]
    patient_id: str
    study_uid: str
    series_uid: str


def generate_ct(
    out_dir: str | Path,
    *,
    studies: int = 8,
    seed: int = 0,
    slices_per_study: int = 24,
    size_px: int = 512,
    wrap_fraction: float = 0.25,
    bleed_fraction: float = 0.5,
    repeat_fraction: float = 0.25,
    noise_hu: float = 6.0,
    duplicate_fraction: float = 0.02,
) -> list[CtImageRecord]:
    """Write synthetic head-CT studies and ``stage_2_train.csv`` in the RSNA 2019 layout.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created; files of the same names are replaced).
    studies : int
        Studies (one axial series each), >= 1.
    seed : int
        >= 0; the same arguments give the same files.
    slices_per_study : int
        Slices per series, >= 4, skull base to vertex.
    size_px : int
        Image side, >= 32 (RSNA: 512). The field of view is 220 mm whatever the size.
    wrap_fraction : float
        0..1: fraction of studies (rounded) stored with the 12-bit wrap quirk.
    bleed_fraction : float
        0..1: fraction of studies (rounded) with at least one haemorrhage.
    repeat_fraction : float
        0..1: fraction of patients (about) scanned twice.
    noise_hu : float
        Standard deviation of the Gaussian image noise, HU (>= 0; 0 for exact known answers).
    duplicate_fraction : float
        0..1: fraction of images whose six label rows appear twice in the CSV (at least one image
        when > 0).

    Returns
    -------
    list of CtImageRecord
        Ordered by patient, study, slice index.

    Raises
    ------
    ConfigError
        An option out of range.
    OutputPathError
        ``out_dir`` is a file or cannot be created.
    MissingExtraError
        pydicom is not installed (``pip install 'cadx[ct]'``).

    Examples
    --------
    >>> import tempfile
    >>> records = generate_ct(tempfile.mkdtemp(), studies=2, seed=1, slices_per_study=6, size_px=64)
    >>> len(records), len({r.study_uid for r in records})
    (12, 2)
    >>> records[0].image_id.startswith("ID_"), len(records[0].image_id)
    (True, 12)
    """
    _check_options(studies=studies, seed=seed, slices_per_study=slices_per_study, size_px=size_px,
                   fractions={"wrap_fraction": wrap_fraction, "bleed_fraction": bleed_fraction,
                              "repeat_fraction": repeat_fraction, "duplicate_fraction": duplicate_fraction},
                   noise_hu=noise_hu)
    pydicom = require_extra("pydicom", "ct")
    out = prepare_output_folder(out_dir)  # a file in the way: one line naming it, before any work
    plans = _plan_studies(studies, seed, slices_per_study, wrap_fraction, bleed_fraction, repeat_fraction)
    ids = _IdMaker(np.random.default_rng((seed, 7)))
    spacing = _FOV_MM / size_px
    records: list[CtImageRecord] = []
    for study in plans:
        grid = StudyGrid(study.head, study.pose, size_px=size_px, spacing_mm=spacing)
        for k in range(slices_per_study):
            hu, codes = render_slice(grid, k, slices_per_study, study.bleeds)
            landmarks, truth = _landmarks(hu, codes)
            present = {s for s in SUBTYPES if s in landmarks}
            labels = tuple(int(s in present) for s in SUBTYPES) + (int(bool(present)),)
            if noise_hu > 0:
                noise_rng = np.random.default_rng((seed, 9, study.index, k))
                hu = hu + noise_rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(noise_hu)
            stored = _stored_values(hu, grid.fov, wrapped=study.wrapped)
            image_id = ids.make(9)
            z = study.z0_mm + k * study.spacing_mm
            path = out / IMAGE_DIR / f"{image_id}.dcm"
            _write_dicom(pydicom, path, stored, study=study, image_id=image_id, k=k, z_mm=z, spacing_mm=spacing)
            records.append(CtImageRecord(
                image_id=image_id, path=path, patient_id=study.patient_id, study_uid=study.study_uid,
                series_uid=study.series_uid, slice_index=k, z_mm=z, labels=labels, wrapped=study.wrapped,
                landmarks=landmarks, truth_hu=truth,
            ))
    _write_labels(out / LABEL_CSV, records, np.random.default_rng((seed, 8)), duplicate_fraction)
    records.sort(key=lambda r: (r.patient_id, r.study_uid, r.slice_index))
    log.info("wrote %d synthetic CT slices (%d studies) to %s", len(records), studies, out)
    return records


def _check_options(*, studies, seed, slices_per_study, size_px, fractions, noise_hu) -> None:
    if int(studies) < 1:
        raise ConfigError(f"studies: expected at least 1, got {studies}")
    if int(seed) < 0:
        raise ConfigError(f"seed: expected an integer >= 0, got {seed}")
    if int(slices_per_study) < 4:
        raise ConfigError(f"slices_per_study: expected at least 4, got {slices_per_study}")
    if int(size_px) < 32:
        raise ConfigError(f"size_px: expected at least 32, got {size_px}")
    for name, value in fractions.items():
        if not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"{name}: expected a number in [0, 1], got {value}")
    if not float(noise_hu) >= 0:
        raise ConfigError(f"noise_hu: expected a number >= 0, got {noise_hu}")


class _IdMaker:
    """Unique RSNA-style ``ID_<hex>`` strings from one random stream."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.seen = rng, set()

    def make(self, digits: int) -> str:
        while True:
            value = "ID_" + "".join("0123456789abcdef"[i] for i in self.rng.integers(0, 16, digits))
            if value not in self.seen:
                self.seen.add(value)
                return value


def _chosen(rng: np.random.Generator, n: int, fraction: float) -> set[int]:
    return {int(i) for i in rng.permutation(n)[: round(n * fraction)]}


def _plan_studies(studies: int, seed: int, n_slices: int, wrap_fraction: float, bleed_fraction: float,
                  repeat_fraction: float) -> list[_Study]:
    master = np.random.default_rng((seed, 0))
    n_patients = min(studies, max(1, math.ceil(studies / (1 + repeat_fraction))))
    patient_of = list(range(n_patients)) + [int(p) for p in master.choice(n_patients, studies - n_patients,
                                                                           replace=False)]
    patient_of = [patient_of[i] for i in master.permutation(studies)]
    wrapped = _chosen(master, studies, wrap_fraction)
    bleeding = _chosen(master, studies, bleed_fraction)
    ids = _IdMaker(np.random.default_rng((seed, 6)))
    patient_ids = [ids.make(8) for _ in range(n_patients)]
    heads = [_plan_head(np.random.default_rng((seed, 1, p))) for p in range(n_patients)]
    plans = []
    for i in range(studies):
        rng = np.random.default_rng((seed, 2, i))
        pose = Pose(shift_mm=(float(rng.normal(0, 4)), float(rng.normal(0, 6))), angle=float(rng.normal(0, 0.08)))
        bleeds = _plan_bleeds(rng, n_slices) if i in bleeding else ()
        centre, width = (40, 80) if rng.random() < 0.7 else (36, 80) if rng.random() < 0.5 else (30, 80)
        plans.append(_Study(
            index=i, patient=patient_of[i], head=heads[patient_of[i]], pose=pose, bleeds=bleeds,
            wrapped=i in wrapped, spacing_mm=float(rng.choice([5.0, 5.0, 4.5, 4.0])),
            z0_mm=float(np.round(rng.uniform(-40, 40), 2)), window=(centre, width),
            patient_id=patient_ids[patient_of[i]], study_uid=ids.make(10), series_uid=ids.make(10),
        ))
    return plans


def _plan_head(rng: np.random.Generator) -> Head:
    return Head(a_mm=float(rng.uniform(66, 78)), b_mm=float(rng.uniform(86, 98)), skull=float(rng.uniform(0.06, 0.085)),
                grey_hu=float(rng.uniform(35, 40)), white_hu=float(rng.uniform(25, 30)),
                sulci=int(rng.integers(14, 19)), phase=float(rng.uniform(0, 2 * np.pi)))


def _plan_bleeds(rng: np.random.Generator, n_slices: int) -> tuple[Bleed, ...]:
    n = int(rng.choice([1, 2, 3], p=[0.7, 0.25, 0.05]))
    names = list(SUBTYPE_WEIGHTS)
    p = np.array(list(SUBTYPE_WEIGHTS.values()))
    kinds = rng.choice(names, size=n, replace=False, p=p / p.sum())
    top = n_slices - 1
    bleeds = []
    for kind in kinds:
        half = int(rng.integers(1, 4))
        hu = float(rng.uniform(50, 90))
        angle = float(rng.uniform(-np.pi, np.pi))
        if kind == "epidural":
            b = Bleed(kind, _slice_in(rng, top, 0.2, 0.8), half, hu, angle, size=float(rng.uniform(0.06, 0.12)),
                      width=float(rng.uniform(0.25, 0.45)))
        elif kind == "subdural":
            b = Bleed(kind, _slice_in(rng, top, 0.2, 0.85), half, hu, angle, size=float(rng.uniform(0.025, 0.06)),
                      width=float(rng.uniform(0.7, 1.4)))
        elif kind == "intraparenchymal":
            b = Bleed(kind, _slice_in(rng, top, 0.25, 0.75), half, hu, angle, size=float(rng.uniform(0.04, 0.11)),
                      width=float(rng.uniform(0.3, 1.0)),
                      shape=(float(rng.uniform(0, 0.2)), float(rng.uniform(0, 6.3)), float(rng.uniform(0, 0.1)),
                             float(rng.uniform(0, 6.3))))
        elif kind == "intraventricular":
            b = Bleed(kind, _slice_in(rng, top, 0.42, 0.58), min(half, 2), hu, angle,
                      size=float(rng.uniform(0.2, 0.5)), width=float(rng.choice([-1.0, 1.0])))
        else:  # subarachnoid
            b = Bleed(kind, _slice_in(rng, top, 0.3, 0.85), half, float(rng.uniform(50, 75)), angle,
                      size=float(rng.uniform(0.3, 0.8)), width=0.0)
        bleeds.append(b)
    return tuple(bleeds)


def _slice_in(rng: np.random.Generator, top: int, low: float, high: float) -> int:
    return int(np.clip(round(rng.uniform(low, high) * top), 0, top))


def _landmarks(hu: np.ndarray, codes: np.ndarray) -> tuple[dict, dict]:
    """A pixel of each named tissue / bleed on the slice (the middle one of its pixels in raster order)."""
    names = {"skull": TISSUES["skull"], "brain": TISSUES["white"], "ventricle": TISSUES["ventricle"]}
    names.update({s: BLEED_CODE0 + i for i, s in enumerate(SUBTYPES)})
    present = set(np.unique(codes).tolist())
    landmarks, truth = {}, {}
    width = codes.shape[1]
    for name, code in names.items():
        if code not in present:
            continue
        flat = np.flatnonzero(codes == code)
        index = int(flat[len(flat) // 2])
        row, col = divmod(index, width)
        landmarks[name] = (row, col)
        truth[name] = float(hu[row, col])
    return landmarks, truth


def _stored_values(hu: np.ndarray, fov: np.ndarray, *, wrapped: bool) -> np.ndarray:
    """12-bit stored values: HU + 1024 (0 outside the field of view), or the wrapped form."""
    if wrapped:
        q = np.clip(np.rint(hu) + 1000, 0, 4095).astype(np.int32)
        q[~fov] = 0
        return ((q - 1000) % 4096).astype(np.uint16)
    q = np.clip(np.rint(hu) - INTERCEPT, 0, 4095).astype(np.uint16)
    q[~fov] = 0
    return q


def _write_dicom(pydicom, path: Path, stored: np.ndarray, *, study: _Study, image_id: str, k: int, z_mm: float,
                 spacing_mm: float) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    half = (stored.shape[0] - 1) / 2 * spacing_mm
    centre, width = study.window
    with pydicom.config.disable_value_validation():
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = _CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = image_id
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = _CT_IMAGE_STORAGE
        ds.SOPInstanceUID = image_id
        ds.Modality = "CT"
        ds.PatientID = study.patient_id
        ds.StudyInstanceUID = study.study_uid
        ds.SeriesInstanceUID = study.series_uid
        ds.StudyID = ""
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{-half:.3f}", f"{-half:.3f}", f"{z_mm:.3f}"]
        ds.ImageOrientationPatient = ["1.000000", "0.000000", "0.000000", "0.000000", "1.000000", "0.000000"]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = stored.shape
        ds.PixelSpacing = [f"{spacing_mm:.6f}", f"{spacing_mm:.6f}"]
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.WindowCenter = [f"{centre:05d}", f"{centre:05d}"]
        ds.WindowWidth = [f"{width:05d}", f"{width:05d}"]
        ds.RescaleIntercept = "0" if study.wrapped else f"{INTERCEPT}"
        ds.RescaleSlope = "1"
        ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)


def _write_labels(path: Path, records: list[CtImageRecord], rng: np.random.Generator, fraction: float) -> None:
    order = [records[i] for i in rng.permutation(len(records))]
    n_dup = 0 if fraction <= 0 else max(1, round(fraction * len(records)))
    duplicated = {int(i) for i in rng.choice(len(order), size=min(n_dup, len(order)), replace=False)}
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("ID", "Label"))
        for i, record in enumerate(order):
            rows = [(f"{record.image_id}_{name}", value) for name, value in zip(LABELS, record.labels, strict=True)]
            writer.writerows(rows)
            if i in duplicated:
                writer.writerows(rows)
