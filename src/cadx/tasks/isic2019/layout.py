"""The ISIC 2019 training layout, and a plain folder-per-class layout, as one list of labelled images.

ISIC 2019 (https://challenge.isic-archive.com/data/#2019)::

    ROOT/ISIC_2019_Training_Input/ISIC_0000000.jpg ...
    ROOT/ISIC_2019_Training_GroundTruth.csv   image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK (one-hot, 1.0 / 0.0)
    ROOT/ISIC_2019_Training_Metadata.csv      image,age_approx,anatom_site_general,lesion_id,sex

The metadata's ``lesion_id`` groups the images of one lesion (empty for some images: each such image
is its own lesion); without the metadata file every image is its own lesion. A folder-per-class
layout is ``ROOT/<class>/<image>.jpg`` (any :data:`~cadx.io.images.IMAGE_SUFFIXES`); each image is
its own lesion. CSV files are UTF-8 with an optional byte-order mark; every problem is an
:class:`~cadx.errors.InputFileError` naming the file, row and column.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadx.errors import ConfigError, InputFileError
from cadx.io.images import IMAGE_SUFFIXES
from cadx.io.tables import csv_number, csv_rows

log = logging.getLogger(__name__)

#: The ground-truth columns of ISIC 2019, in the challenge's order.
ISIC_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
#: The eight diagnostic classes (``classes: all``); UNK (none of the others) is never a training class.
DIAGNOSTIC_CLASSES = ISIC_CLASSES[:8]
#: The original project's three classes: melanoma, nevus, basal cell carcinoma.
DEFAULT_CLASSES = ("MEL", "NV", "BCC")
#: The word for "every class".
ALL = "all"

INPUT_DIR = "ISIC_2019_Training_Input"
GROUND_TRUTH_CSV = "ISIC_2019_Training_GroundTruth.csv"
METADATA_CSV = "ISIC_2019_Training_Metadata.csv"
IMAGE_SUFFIX = ".jpg"


@dataclass(frozen=True)
class DermImages:
    """Labelled images, one entry per image, in a fixed order.

    Attributes
    ----------
    class_names : tuple of str
        Class of label ``i`` is ``class_names[i]`` (the model's output order).
    names : tuple of str
        Image identifiers (file stems, e.g. ``ISIC_0000000``).
    paths : tuple of Path
    labels : tuple of int
        Index into ``class_names``.
    lesions : tuple of str
        Group for splitting (``lesion_id``; the image name where none is known).
    """

    class_names: tuple[str, ...]
    names: tuple[str, ...]
    paths: tuple[Path, ...]
    labels: tuple[int, ...]
    lesions: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    def counts(self) -> dict[str, int]:
        """Images per class, in class order."""
        n = np.bincount(np.asarray(self.labels, np.int64), minlength=len(self.class_names))
        return {c: int(k) for c, k in zip(self.class_names, n, strict=True)}


def parse_classes(spec: str | Sequence[str]) -> tuple[str, ...] | None:
    """Class names from ``"MEL,NV,BCC"``, a list, or ``"all"`` (returned as ``None``).

    Raises
    ------
    ConfigError
        Fewer than two classes, an empty or repeated name.

    Examples
    --------
    >>> parse_classes("MEL, NV,BCC"), parse_classes(["NV", "MEL"]), parse_classes("all")
    (('MEL', 'NV', 'BCC'), ('NV', 'MEL'), None)
    """
    if isinstance(spec, str):
        if spec.strip().lower() == ALL:
            return None
        names = tuple(s.strip() for s in spec.split(","))
    else:
        names = tuple(str(s).strip() for s in spec)
    if any(not n for n in names):
        raise ConfigError(f"classes: empty class name in {spec!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"classes: a class is named twice in {spec!r}")
    if len(names) < 2:
        raise ConfigError(f"classes: need at least two classes, got {spec!r}")
    return names


def isic_classes(spec: str | Sequence[str]) -> tuple[str, ...]:
    """ISIC class codes from a ``classes`` value: ``"all"`` is :data:`DIAGNOSTIC_CLASSES`.

    Raises
    ------
    ConfigError
        An unknown code, UNK, or what :func:`parse_classes` refuses.

    Examples
    --------
    >>> isic_classes("all")
    ('MEL', 'NV', 'BCC', 'AK', 'BKL', 'DF', 'VASC', 'SCC')
    >>> isic_classes("MEL,UNK")
    Traceback (most recent call last):
    ...
    cadx.errors.ConfigError: classes: UNK (none of the others) is not a training class
    """
    names = parse_classes(spec) or DIAGNOSTIC_CLASSES
    if "UNK" in names:
        raise ConfigError("classes: UNK (none of the others) is not a training class")
    unknown = [n for n in names if n not in ISIC_CLASSES]
    if unknown:
        raise ConfigError(f"classes: unknown ISIC 2019 class {', '.join(unknown)} "
                          f"(known: {', '.join(DIAGNOSTIC_CLASSES)}, or all)")
    return names


def is_isic_layout(root: str | Path) -> bool:
    """Whether ``root`` holds the ISIC 2019 ground-truth CSV."""
    return (Path(root) / GROUND_TRUTH_CSV).is_file()


def read_ground_truth(path: str | Path) -> tuple[list[str], tuple[str, ...], np.ndarray]:
    """Read an ISIC 2019 ground-truth CSV (``image`` then one-hot class columns).

    Parameters
    ----------
    path : str or Path
        E.g. ``ISIC_2019_Training_GroundTruth.csv``; any subset of :data:`ISIC_CLASSES` columns, in
        any order, after ``image``.

    Returns
    -------
    names : list of str
        The ``image`` column, in file order.
    columns : tuple of str
        The class columns, in file order.
    labels : ndarray of int64, (N,)
        Index into ``columns`` of each row's 1.

    Raises
    ------
    InputFileError
        Missing or empty file, a first column other than ``image``, an unknown or repeated class
        column, a row with too few or too many cells, a cell that is not a number, a row that is not
        one-hot (exactly one 1, the rest 0), an empty or repeated image name.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "gt.csv"
    >>> _ = p.write_text("image,MEL,NV\\nISIC_1,0.0,1.0\\nISIC_2,1.0,0.0\\n")
    >>> names, columns, labels = read_ground_truth(p)
    >>> names, columns, labels.tolist()
    (['ISIC_1', 'ISIC_2'], ('MEL', 'NV'), [1, 0])
    """
    path = Path(path)
    rows = csv_rows(path, what="ground-truth CSV")
    try:
        header_row, header = next(rows)
    except StopIteration:
        raise InputFileError(path, f"empty: expected a header image,{','.join(ISIC_CLASSES)}") from None
    if header[0] != "image":
        raise InputFileError(path, f"row {header_row}: the first column must be 'image', not {header[0]!r}")
    columns = tuple(header[1:])
    for c in columns:
        if c not in ISIC_CLASSES:
            raise InputFileError(path, f"row {header_row}, column {c!r}: unknown class column "
                                 f"(ISIC 2019 classes: {', '.join(ISIC_CLASSES)})")
        if columns.count(c) > 1:
            raise InputFileError(path, f"row {header_row}, column {c}: appears twice")
    if not columns:
        raise InputFileError(path, f"row {header_row}: no class columns after 'image'")
    names: list[str] = []
    labels: list[int] = []
    first_row: dict[str, int] = {}
    for number, row in rows:
        if len(row) != len(header):
            raise InputFileError(path, f"row {number}: {len(row)} cells, expected {len(header)} ({','.join(header)})")
        name = row[0]
        if not name:
            raise InputFileError(path, f"row {number}, column image: empty")
        if name in first_row:
            raise InputFileError(path, f"row {number}, column image: {name} appears twice (first in row "
                                 f"{first_row[name]})")
        values = [csv_number(path, number, c, t) for c, t in zip(columns, row[1:], strict=True)]
        ones = [i for i, v in enumerate(values) if v == 1.0]
        if len(ones) != 1 or any(v not in (0.0, 1.0) for v in values):
            raise InputFileError(path, f"row {number}: {name} is not one-hot (expected one 1.0 and the rest 0.0, "
                                 f"got {','.join(row[1:])})")
        first_row[name] = number
        names.append(name)
        labels.append(ones[0])
    return names, columns, np.asarray(labels, np.int64)


def read_lesion_ids(path: str | Path) -> dict[str, str]:
    """``image -> lesion_id`` from an ISIC 2019 metadata CSV (images without one are left out).

    Raises
    ------
    InputFileError
        Missing or empty file, no ``image`` or ``lesion_id`` column, a row with too few cells.
    """
    path = Path(path)
    rows = csv_rows(path, what="metadata CSV")
    try:
        header_row, header = next(rows)
    except StopIteration:
        raise InputFileError(path, "empty: expected a header image,...,lesion_id,...") from None
    for column in ("image", "lesion_id"):
        if column not in header:
            raise InputFileError(path, f"row {header_row}: no {column!r} column (columns: {', '.join(header)})")
    at_image, at_lesion = header.index("image"), header.index("lesion_id")
    out: dict[str, str] = {}
    for number, row in rows:
        if len(row) <= max(at_image, at_lesion):
            raise InputFileError(path, f"row {number}: {len(row)} cells, expected {len(header)}")
        if row[at_lesion]:
            out[row[at_image]] = row[at_lesion]
    return out


def read_isic_layout(root: str | Path, *, classes: str | Sequence[str] = DEFAULT_CLASSES) -> DermImages:
    """The training images of an ISIC 2019 folder, restricted to ``classes``.

    Parameters
    ----------
    root : str or Path
        Holds :data:`GROUND_TRUTH_CSV`, :data:`INPUT_DIR` and (optionally) :data:`METADATA_CSV`.
    classes : str or sequence of str
        Class codes, e.g. ``"MEL,NV,BCC"``, or ``"all"`` (:data:`DIAGNOSTIC_CLASSES`); images of
        other classes are left out. Labels follow this order.

    Returns
    -------
    DermImages
        In ground-truth order.

    Raises
    ------
    ConfigError
        ``classes`` is not a list of ISIC codes (see :func:`isic_classes`).
    InputFileError
        A CSV problem (see :func:`read_ground_truth`), a class without a column or without images,
        or an image listed but missing (the image is named).
    """
    root = Path(root)
    wanted = isic_classes(classes)
    gt = root / GROUND_TRUTH_CSV
    names, columns, labels = read_ground_truth(gt)
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise InputFileError(gt, f"no column {', '.join(missing)} (asked for by classes; "
                             f"columns: {', '.join(columns)})")
    meta = root / METADATA_CSV
    if meta.is_file():
        lesions = read_lesion_ids(meta)
    else:
        log.warning("%s: no %s; every image is its own lesion in the split", root, METADATA_CSV)
        lesions = {}
    index = {c: i for i, c in enumerate(wanted)}
    keep = [(n, index[columns[lab]]) for n, lab in zip(names, labels.tolist(), strict=True) if columns[lab] in index]
    images = root / INPUT_DIR
    paths = []
    for name, _ in keep:
        p = images / f"{name}{IMAGE_SUFFIX}"
        if not p.is_file():
            raise InputFileError(p, f"listed in {GROUND_TRUTH_CSV} (image {name}) but missing")
        paths.append(p)
    out = DermImages(class_names=wanted, names=tuple(n for n, _ in keep), paths=tuple(paths),
                     labels=tuple(lab for _, lab in keep), lesions=tuple(lesions.get(n, n) for n, _ in keep))
    _require_every_class(out, gt)
    return out


def read_class_folders(root: str | Path, *, classes: str | Sequence[str] = ALL) -> DermImages:
    """Images in a folder-per-class layout, ``root/<class>/<image>.<suffix>``.

    Parameters
    ----------
    root : str or Path
    classes : str or sequence of str
        Folder names (the labels follow this order), or ``"all"``: every sub-folder holding images,
        sorted by name.

    Returns
    -------
    DermImages
        Sorted by class, then file name; each image is its own lesion.

    Raises
    ------
    InputFileError
        A named class folder is missing or holds no images, or fewer than two classes were found.
    """
    root = Path(root)
    wanted = parse_classes(classes)
    if wanted is None:
        wanted = tuple(sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                              and _images_in(d)))
        if len(wanted) < 2:
            raise InputFileError(root, f"found {len(wanted)} class folder(s) with images; need at least two "
                                 f"(folder per class, or the ISIC 2019 layout with {GROUND_TRUTH_CSV})")
    names, paths, labels, lesions = [], [], [], []
    for label, c in enumerate(wanted):
        folder = root / c
        if not folder.is_dir():
            raise InputFileError(folder, f"no such class folder (classes: {', '.join(wanted)})")
        for p in _images_in(folder):
            names.append(p.stem)
            paths.append(p)
            labels.append(label)
            lesions.append(f"{c}/{p.name}")
    out = DermImages(wanted, tuple(names), tuple(paths), tuple(labels), tuple(lesions))
    _require_every_class(out, root)
    return out


def read_derm_data(root: str | Path, *, classes: str | Sequence[str] = DEFAULT_CLASSES) -> DermImages:
    """The ISIC 2019 layout when ``root`` holds its ground-truth CSV, else folder-per-class.

    See :func:`read_isic_layout` and :func:`read_class_folders`.
    """
    if is_isic_layout(root):
        return read_isic_layout(root, classes=classes)
    return read_class_folders(root, classes=classes)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def _require_every_class(data: DermImages, source: Path) -> None:
    empty = [c for c, n in data.counts().items() if n == 0]
    if empty:
        raise InputFileError(source, f"no images of class {', '.join(empty)}")
