"""The RSNA 2019 Intracranial Hemorrhage Detection layout: labels, images, patients, split.

``DATA/stage_2_train.csv`` is the long format ``ID,Label`` with six rows per image, ``ID`` being
``ID_<image>_<subtype>`` (e.g. ``ID_63eb1e259_epidural``) and ``Label`` 0 or 1; the real file repeats
some rows, so identical duplicates are dropped (conflicting ones are an error). The images are
``DATA/stage_2_train/ID_<image>.dcm``; the patient, study and series of each image come from its DICOM
header (:func:`cadx.io.dicom.read_ct_header`), never from the file name. The submission uses the same
long format (:func:`read_long_csv` reads both).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cadx.errors import CadxError, ConfigError, InputFileError
from cadx.io.tables import csv_number, csv_rows
from cadx.parallel.jobs import map_jobs

log = logging.getLogger(__name__)

#: The six labels in the order of the Kaggle file and of every model output.
SUBTYPES = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any")
LABELS_CSV = "stage_2_train.csv"
IMAGES_DIR = "stage_2_train"


@dataclass
class LongTable:
    """A long-format table pivoted to one row per image.

    Attributes
    ----------
    path : Path
    image_ids : list of str
        ``ID_<image>``, in order of first appearance.
    values : ndarray, (N, 6) float64
        Columns in :data:`SUBTYPES` order.
    rows : list of int
        The file row (1 = first line) where each image first appears.
    duplicates : int
        Identical repeated rows dropped.
    """

    path: Path
    image_ids: list[str]
    values: np.ndarray
    rows: list[int]
    duplicates: int = 0


def split_label_id(text: str) -> tuple[str, str]:
    """``ID_<image>_<subtype>`` -> ``("ID_<image>", subtype)``; ``ValueError`` when malformed.

    Examples
    --------
    >>> split_label_id("ID_63eb1e259_epidural")
    ('ID_63eb1e259', 'epidural')
    """
    image, sep, subtype = text.rpartition("_")
    if not sep or not image.startswith("ID_") or len(image) <= 3 or not subtype:
        raise ValueError(f"{text!r} is not ID_<image>_<subtype>")
    return image, subtype


def read_long_csv(path: str | Path, *, what: str = "labels", binary: bool = True) -> LongTable:
    """Read a Kaggle long-format file (``ID,Label``) and pivot it to ``(image, six labels)``.

    Parameters
    ----------
    path : path
    what : str
        Its kind, for messages (``labels``, ``predictions``).
    binary : bool
        ``True``: every label must be 0 or 1 (ground truth); ``False``: a probability in [0, 1].

    Returns
    -------
    LongTable

    Raises
    ------
    InputFileError
        Naming the file and row: a header other than ``ID,Label``, a row without two cells, an ID
        that is not ``ID_<image>_<subtype>``, an unknown subtype, a label that is not 0/1 (or not a
        probability), the same ID twice with different labels, an image missing some subtypes (named
        with its first row), or no rows at all.
    """
    p = Path(path)
    rows = csv_rows(p, what=what)
    header = next(rows, None)
    if header is None:
        raise InputFileError(p, f"empty {what} file (expected the header ID,Label)")
    row0, cells = header
    if [c.lower() for c in cells[:2]] != ["id", "label"]:
        raise InputFileError(p, f"row {row0}: header {','.join(cells)!r}, expected ID,Label")
    index: dict[str, int] = {}
    ids: list[str] = []
    first_row: list[int] = []
    values: list[np.ndarray] = []
    seen: dict[tuple[int, int], tuple[float, int]] = {}
    duplicates = 0
    for row, cells in rows:
        if len(cells) < 2:
            raise InputFileError(p, f"row {row}: {len(cells)} cell(s), expected ID,Label")
        try:
            image, subtype = split_label_id(cells[0])
        except ValueError as exc:
            raise InputFileError(p, f"row {row}, column ID: {exc}") from None
        if subtype not in SUBTYPES:
            raise InputFileError(p, f"row {row}, column ID: unknown subtype {subtype!r} "
                                 f"(one of {', '.join(SUBTYPES)})")
        value = csv_number(p, row, "Label", cells[1])
        if binary and value not in (0.0, 1.0):
            raise InputFileError(p, f"row {row}, column Label: {cells[1]!r} is not 0 or 1")
        if not binary and not 0.0 <= value <= 1.0:
            raise InputFileError(p, f"row {row}, column Label: {cells[1]!r} is not a probability in [0, 1]")
        i = index.get(image)
        if i is None:
            i = index[image] = len(ids)
            ids.append(image)
            first_row.append(row)
            values.append(np.full(6, np.nan))
        k = SUBTYPES.index(subtype)
        if (i, k) in seen:
            old, old_row = seen[(i, k)]
            if old != value:
                raise InputFileError(p, f"row {row}, column Label: {cells[0]} is {cells[1]} here but "
                                     f"{old:g} on row {old_row}")
            duplicates += 1
            continue
        seen[(i, k)] = (value, row)
        values[i][k] = value
    if not ids:
        raise InputFileError(p, f"no {what} rows after the header")
    table = np.stack(values)
    missing = np.isnan(table)
    if missing.any():
        i = int(np.flatnonzero(missing.any(axis=1))[0])
        names = [SUBTYPES[k] for k in np.flatnonzero(missing[i])]
        more = int(missing.any(axis=1).sum()) - 1
        raise InputFileError(p, f"row {first_row[i]}: image {ids[i]} has no row for {', '.join(names)}"
                             + (f" (and {more} more incomplete images)" if more else ""))
    if duplicates:
        log.info("%s: %d duplicate rows dropped", p, duplicates)
    return LongTable(path=p, image_ids=ids, values=table, rows=first_row, duplicates=duplicates)


@dataclass
class CtImages:
    """The labelled slices of an RSNA folder, with where each comes from.

    Attributes
    ----------
    image_ids : list of str
        ``ID_<image>`` (the CSV's, equal to the file stem).
    paths : list of Path
    labels : ndarray, (N, 6) uint8
        :data:`SUBTYPES` order.
    patients, studies, series : list of str
        From each header (PatientID, StudyInstanceUID, SeriesInstanceUID).
    z_mm : ndarray, (N,) float64
        The slice position along the series' normal (ImagePositionPatient projected on the cross
        product of ImageOrientationPatient; the z coordinate when orientation is missing), for
        sorting a series; NaN when the header has no position.
    """

    image_ids: list[str]
    paths: list[Path]
    labels: np.ndarray
    patients: list[str] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    z_mm: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return len(self.image_ids)


def slice_z(position: Sequence[float] | None, orientation: Sequence[float] | None) -> float:
    """Position of a slice along its normal in mm (NaN without a position).

    Examples
    --------
    >>> slice_z((-16.0, -16.0, 7.5), (1, 0, 0, 0, 1, 0))
    7.5
    >>> slice_z((0.0, 3.0, 0.0), (1, 0, 0, 0, 0, -1))  # coronal: the normal is y
    3.0
    """
    if position is None:
        return float("nan")
    pos = np.asarray(position, np.float64)
    if orientation is None or len(orientation) != 6:
        return float(pos[2])
    o = np.asarray(orientation, np.float64)
    normal = np.cross(o[:3], o[3:])
    return float(pos @ normal)


def is_rsna_layout(root: str | Path) -> bool:
    """True when ``root`` holds ``stage_2_train.csv``."""
    return (Path(root) / LABELS_CSV).is_file()


def read_rsna_data(root: str | Path, *, labels_csv: str = LABELS_CSV, images_dir: str = IMAGES_DIR,
                   backend: str = "serial") -> CtImages:
    """Labels, files and header identity of every image of an RSNA training folder.

    Parameters
    ----------
    root : path
        Holds ``stage_2_train.csv`` and ``stage_2_train/``.
    labels_csv, images_dir : str
        Other names for the two (e.g. a stage-1 folder).
    backend : {"serial", "process"}
        How the headers are read (:func:`cadx.parallel.jobs.map_jobs`).

    Returns
    -------
    CtImages
        In CSV order.

    Raises
    ------
    InputFileError
        A CSV problem (see :func:`read_long_csv`), a listed image without its file, or a listed
        image that is a localizer (the first named, with the count).
    CadxError
        Headers that cannot be read (the first named, with the count).
    """
    from cadx.io.dicom import read_ct_header

    root = Path(root)
    table = read_long_csv(root / labels_csv)
    folder = root / images_dir
    paths = [folder / f"{i}.dcm" for i in table.image_ids]
    missing = [(p, r) for p, r in zip(paths, table.rows, strict=True) if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more listed images without a file)" if len(missing) > 1 else ""
        raise InputFileError(missing[0][0], f"listed on row {missing[0][1]} of {table.path.name} but "
                             f"there is no such file{more}")
    report = map_jobs(read_ct_header, paths, backend=backend)
    if report.failures:
        more = f" (and {len(report.failures) - 1} more unreadable headers)" if len(report.failures) > 1 else ""
        raise CadxError(f"{report.failures[0][1]}{more}")
    headers = [h for _, h in report.done]
    scouts = [h for h in headers if h.is_localizer]
    if scouts:
        more = f" (and {len(scouts) - 1} more localizers)" if len(scouts) > 1 else ""
        raise InputFileError(scouts[0].path, f"a localizer (scout) image (ImageType LOCALIZER), not a slice; "
                             f"remove it from {table.path.name}{more}")
    return CtImages(
        image_ids=list(table.image_ids), paths=paths, labels=table.values.astype(np.uint8),
        patients=[h.patient_id or h.study_uid for h in headers], studies=[h.study_uid for h in headers],
        series=[h.series_uid for h in headers],
        z_mm=np.array([slice_z(h.position_mm, h.orientation) for h in headers], np.float64))


def patient_split(labels: np.ndarray, groups: Sequence[str], *, val_fraction: float = 0.2,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split images by group (patient) with multi-label stratification of the groups.

    Each group is labelled by the labels any of its images carries (the maximum over its rows);
    the groups are then split by :class:`iterstrat.ml_stratifiers.MultilabelStratifiedShuffleSplit`
    (PyPI ``iterative-stratification``, Sechidis et al. 2011), so every label's share of groups is
    about the same on both sides, and all images of a group land on the same side.

    Parameters
    ----------
    labels : ndarray, (N, K) of 0/1
    groups : sequence of str, length N
        Patient (or study) of each image.
    val_fraction : float
        Fraction of groups held out, in (0, 1).
    seed : int

    Returns
    -------
    train_idx, val_idx : ndarray of int64
        Image indices, sorted.

    Raises
    ------
    ConfigError
        Fewer than two groups.
    """
    from cadx.errors import require_extra

    require_extra("iterstrat", "ct")
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    y = np.asarray(labels)
    g = np.asarray([str(v) for v in groups])
    if y.ndim != 2 or y.shape[0] != g.size:
        raise ValueError(f"labels of shape {y.shape} for {g.size} groups")
    names, inverse = np.unique(g, return_inverse=True)
    if names.size < 2:
        raise ConfigError(f"need two or more patients to split, found {names.size}")
    per_group = np.zeros((names.size, y.shape[1]), np.int64)
    np.maximum.at(per_group, inverse, y.astype(np.int64))
    n_val = min(max(1, int(round(val_fraction * names.size))), names.size - 1)
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
    train_g, val_g = next(splitter.split(np.zeros((names.size, 1)), per_group))
    if val_g.size == 0 or train_g.size == 0:  # never observed; keep both sides non-empty
        order = np.random.default_rng(seed).permutation(names.size)
        val_g, train_g = order[:n_val], order[n_val:]
    is_val = np.isin(inverse, val_g)
    return np.flatnonzero(~is_val).astype(np.int64), np.flatnonzero(is_val).astype(np.int64)
