"""Small CSV tables: one reader each, and every bad cell named by file, row and column.

- detections: ``prob,X,Y`` per line (level-0 px), the CAMELYON16 submission format;
- slide scores: ``slide_scores.csv`` (``slide,score,...``) as ``cadx predict slides`` writes it;
- reference: the CAMELYON16 ``reference.csv`` (``name,Tumor|Normal,...``);
- class tables: ``image`` + one numeric column per class, the layout of the ISIC ground truth
  (``ISIC_2019_Training_GroundTruth.csv``, one-hot) and of an ISIC submission (probabilities).

Files are read as UTF-8 with an optional byte-order mark (Excel's "CSV UTF-8" writes one). Rows
are numbered as a spreadsheet shows them: the first line of the file is row 1.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadx.errors import InputFileError
from cadx.io.annotations import Detection
from cadx.io.atomic import atomic_path

#: Column names of a detections file (the official CAMELYON16 header, when there is one).
DETECTION_COLUMNS = ("prob", "X", "Y")


def _rows(path: Path, what: str) -> Iterator[tuple[int, list[str]]]:
    """``(row number, cells)`` of each non-blank line; row 1 is the first line."""
    if not path.is_file():
        raise InputFileError(path, f"no such {what} file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for number, row in enumerate(csv.reader(fh), start=1):
                if any(cell.strip() for cell in row):
                    yield number, [cell.strip() for cell in row]
    except UnicodeDecodeError as exc:
        raise InputFileError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise InputFileError(path, f"not a readable CSV file ({exc})") from None


def _number(path: Path, row: int, column: str, text: str) -> float:
    """A finite float, or an InputFileError naming the cell."""
    try:
        value = float(text)
    except ValueError:
        raise InputFileError(path, f"row {row}, column {column}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InputFileError(path, f"row {row}, column {column}: {text!r} is not a finite number")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_rows(path: str | Path, *, what: str = "CSV") -> Iterator[tuple[int, list[str]]]:
    """``(row number, stripped cells)`` of each non-blank line of a CSV file; row 1 is the first line.

    For readers of other tables (e.g. the ISIC ground truth): UTF-8 with an optional byte-order
    mark, and the same errors as the readers here.

    Raises
    ------
    InputFileError
        No such file (``what`` names its kind), not UTF-8, or not readable as CSV.
    """
    return _rows(Path(path), what)


def csv_number(path: str | Path, row: int, column: str, text: str) -> float:
    """``text`` as a finite float, or an :class:`~cadx.errors.InputFileError` naming file, row and column.

    Examples
    --------
    >>> csv_number("t.csv", 2, "MEL", "1.0")
    1.0
    >>> csv_number("t.csv", 2, "MEL", "yes")
    Traceback (most recent call last):
    ...
    cadx.errors.InputFileError: t.csv: row 2, column MEL: 'yes' is not a number
    """
    return _number(Path(path), row, column, text)


def read_detections_csv(path: str | Path) -> list[Detection]:
    """Read a ``prob,X,Y`` detections file (CAMELYON16 submission format).

    A first row that is not numeric is a header and skipped (``prob,X,Y``, or any other names);
    later rows must hold three finite numbers. Extra columns are ignored.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    list of Detection
        In file order; ``x``, ``y`` in level-0 pixels.

    Raises
    ------
    InputFileError
        Missing file, a row with fewer than three cells, text or NaN where a number belongs; the
        message names the file, the row and the column.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "test_001.csv"
    >>> _ = p.write_text("prob,X,Y\\n0.9,1200,3400\\n0.2,50.5,60\\n")
    >>> [(d.prob, d.x, d.y) for d in read_detections_csv(p)]
    [(0.9, 1200.0, 3400.0), (0.2, 50.5, 60.0)]
    >>> _ = p.write_text("0.9,1200,3400\\n0.2,,60\\n")
    >>> read_detections_csv(p)
    Traceback (most recent call last):
    ...
    cadx.errors.InputFileError: ...test_001.csv: row 2, column X: '' is not a number
    """
    path = Path(path)
    out: list[Detection] = []
    for i, (number, row) in enumerate(_rows(path, "detections")):
        if i == 0 and row and not _is_number(row[0]):
            continue  # header
        if len(row) < len(DETECTION_COLUMNS):
            missing = DETECTION_COLUMNS[len(row)]
            raise InputFileError(path, f"row {number}, column {missing}: missing (expected prob,X,Y)")
        prob, x, y = (_number(path, number, c, t) for c, t in zip(DETECTION_COLUMNS, row, strict=False))
        out.append(Detection(prob, x, y))
    return out


def write_detections_csv(path: str | Path, detections: Sequence[Detection]) -> Path:
    """CAMELYON16 submission CSV: ``prob,X,Y`` per line, no header (what the official script reads).

    Written atomically; probabilities to 6 decimals, coordinates (level-0 px) to 0.1 px.
    """
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        for d in detections:
            w.writerow([f"{d.prob:.6f}", f"{d.x:.1f}", f"{d.y:.1f}"])
    return Path(path)


def read_slide_scores(path: str | Path, *, columns: Sequence[str] = ("score",)) -> tuple[list[str], np.ndarray]:
    """Slide names and numeric columns of a ``slide_scores.csv`` (header ``slide,<column>,...``).

    Parameters
    ----------
    path : str or Path
    columns : sequence of str
        Columns to return, in this order.

    Returns
    -------
    names : list of str
        The ``slide`` column, in file order.
    values : ndarray of float64, shape (n_slides, len(columns))

    Raises
    ------
    InputFileError
        Missing file, no header, a missing column, a repeated slide, or a cell that is not a
        finite number (named by row and column).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "slide_scores.csv"
    >>> _ = p.write_text("slide,score,rf_score\\ntest_001,0.9,0.8\\ntest_002,0.1,0.3\\n")
    >>> names, v = read_slide_scores(p, columns=["rf_score"])
    >>> names, v.tolist()
    (['test_001', 'test_002'], [[0.8], [0.3]])
    """
    path = Path(path)
    rows = _rows(path, "slide-scores")
    try:
        header_row, header = next(rows)
    except StopIteration:
        raise InputFileError(path, "empty: expected a header slide,score,...") from None
    for name in ("slide", *columns):
        if name not in header:
            raise InputFileError(path, f"row {header_row}: no {name!r} column (columns: {', '.join(header)})")
    at = [header.index(c) for c in columns]
    names: list[str] = []
    values: list[list[float]] = []
    for number, row in rows:
        row = row + [""] * (len(header) - len(row))
        slide = row[header.index("slide")]
        if not slide:
            raise InputFileError(path, f"row {number}, column slide: empty")
        if slide in names:
            raise InputFileError(path, f"row {number}, column slide: {slide!r} appears twice")
        names.append(slide)
        values.append([_number(path, number, c, row[j]) for c, j in zip(columns, at, strict=True)])
    return names, np.asarray(values, np.float64).reshape(len(names), len(at))


def read_reference(path: str | Path) -> dict[str, int]:
    """CAMELYON16 ``reference.csv`` -> ``{slide: 1 tumour / 0 normal}`` with lower-case names.

    Rows are ``name,Tumor|Normal[,lesion type,size class]``; a first row named ``image``,
    ``name`` or ``slide`` is a header.

    Raises
    ------
    InputFileError
        Missing file, or a row whose second cell is not Tumor/Normal (named by row).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "reference.csv"
    >>> _ = p.write_text("Test_001,Tumor,Macro,Primary\\ntest_002,Normal\\n")
    >>> read_reference(p)
    {'test_001': 1, 'test_002': 0}
    """
    path = Path(path)
    out: dict[str, int] = {}
    for i, (number, row) in enumerate(_rows(path, "reference.csv")):
        if i == 0 and row[0].lower() in ("image", "name", "slide"):
            continue
        label = row[1].lower() if len(row) > 1 else ""
        if label not in ("tumor", "normal"):
            raise InputFileError(path, f"row {number}, column 2: {label or 'missing'!r}: "
                                       "expected name,Tumor|Normal,...")
        out[row[0].lower()] = int(label == "tumor")
    return out


@dataclass(frozen=True)
class ClassTable:
    """An ``image,<class>,<class>,...`` table: one row per image, one finite number per class.

    Attributes
    ----------
    path : Path
        The file read (for error messages).
    images : tuple of str
        The ``image`` column, in file order (each at most once).
    columns : tuple of str
        The class columns, in file order.
    values : ndarray of float64, shape (len(images), len(columns))
    rows : tuple of int
        The file row of each image (row 1 is the first line of the file).
    header_row : int
        The file row of the header.
    """

    path: Path
    images: tuple[str, ...]
    columns: tuple[str, ...]
    values: np.ndarray
    rows: tuple[int, ...]
    header_row: int = 1


def read_class_table(path: str | Path, *, what: str = "class table") -> ClassTable:
    """Read an ``image,<class>,...`` CSV: the ISIC ground truth or an ISIC submission.

    The header must start with ``image``; every other column is a class and every cell below
    it a finite number. Cells are stripped of spaces; a UTF-8 byte-order mark is accepted.

    Parameters
    ----------
    path : str or Path
    what : str
        What the file is, for the messages (e.g. ``"ground-truth"``).

    Returns
    -------
    ClassTable

    Raises
    ------
    InputFileError
        Missing or empty file, a header not starting with ``image``, an empty or repeated column
        name, a repeated or empty image name, or a missing / non-numeric / NaN cell; the message
        names the file, the row and the column.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "predictions.csv"
    >>> _ = p.write_text("\\ufeffimage,MEL,NV\\nISIC_0000000,0.9,0.1\\nISIC_0000001,0.2,0.8\\n", encoding="utf-8")
    >>> t = read_class_table(p)
    >>> t.images, t.columns, t.values.tolist(), t.rows
    (('ISIC_0000000', 'ISIC_0000001'), ('MEL', 'NV'), [[0.9, 0.1], [0.2, 0.8]], (2, 3))
    >>> _ = p.write_text("image,MEL,NV\\nISIC_0000000,0.9,nan\\n")
    >>> read_class_table(p)
    Traceback (most recent call last):
    ...
    cadx.errors.InputFileError: ...predictions.csv: row 2, column NV: 'nan' is not a finite number
    """
    path = Path(path)
    rows = _rows(path, what)
    try:
        header_row, header = next(rows)
    except StopIteration:
        raise InputFileError(path, "empty: expected a header image,<class>,...") from None
    if header[0].lower() != "image":
        raise InputFileError(path, f"row {header_row}, column 1: {header[0]!r}: the first column must be 'image'")
    columns = tuple(header[1:])
    if not columns:
        raise InputFileError(path, f"row {header_row}: no class columns after 'image'")
    for j, name in enumerate(columns, start=2):
        if not name:
            raise InputFileError(path, f"row {header_row}, column {j}: empty column name")
        if columns.index(name) != j - 2:
            raise InputFileError(path, f"row {header_row}, column {name}: appears twice")
    images: list[str] = []
    seen: dict[str, int] = {}
    values: list[list[float]] = []
    numbers: list[int] = []
    for number, row in rows:
        if len(row) < len(header):
            raise InputFileError(path, f"row {number}, column {header[len(row)]}: missing")
        image = row[0]
        if not image:
            raise InputFileError(path, f"row {number}, column image: empty")
        if image in seen:
            raise InputFileError(path, f"row {number}, column image: {image!r} already on row {seen[image]}")
        seen[image] = number
        images.append(image)
        numbers.append(number)
        values.append([_number(path, number, c, t) for c, t in zip(columns, row[1:], strict=False)])
    return ClassTable(path, tuple(images), columns, np.asarray(values, np.float64).reshape(len(images), len(columns)),
                      tuple(numbers), header_row)
