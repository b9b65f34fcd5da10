"""The CAMELYON16 folder layout, as published (and as ``cadx synth slides`` writes it).

::

    ROOT/training/tumor/tumor_001.tif          ROOT/training/lesion_annotations/tumor_001.xml
    ROOT/training/normal/normal_001.tif
    ROOT/testing/images/test_001.tif           ROOT/testing/lesion_annotations/test_001.xml
    ROOT/testing/reference.csv                 (name, Tumor|Normal, ...)

:func:`slide_truth` gives every slide's label and annotation folder, training and testing alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cadx.errors import InputFileError
from cadx.io.tables import read_reference


@dataclass(frozen=True)
class Camelyon16Layout:
    """Paths of a CAMELYON16-layout folder; nothing is read until a method is called.

    Examples
    --------
    >>> lay = Camelyon16Layout("/data/CAMELYON16")
    >>> lay.training_annotations.as_posix(), lay.reference_csv.as_posix()
    ('/data/CAMELYON16/training/lesion_annotations', '/data/CAMELYON16/testing/reference.csv')
    """

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def training_tumor(self) -> Path:
        return self.root / "training" / "tumor"

    @property
    def training_normal(self) -> Path:
        return self.root / "training" / "normal"

    @property
    def training_annotations(self) -> Path:
        return self.root / "training" / "lesion_annotations"

    @property
    def testing(self) -> Path:
        """The folder ``cadx evaluate camelyon --truth`` takes."""
        return self.root / "testing"

    @property
    def testing_images(self) -> Path:
        return self.testing / "images"

    @property
    def testing_annotations(self) -> Path:
        return self.testing / "lesion_annotations"

    @property
    def reference_csv(self) -> Path:
        return self.testing / "reference.csv"

    def missing_training_folders(self) -> list[str]:
        """Which of ``training/tumor`` and ``training/normal`` are not folders."""
        return [f"training/{p.name}" for p in (self.training_tumor, self.training_normal) if not p.is_dir()]

    def training_slides(self) -> list[Path]:
        """Tumour then normal training slides, each sorted by name."""
        from cadx.wsi.tiling import find_slides

        return find_slides([self.training_tumor]) + find_slides([self.training_normal])

    def test_slides(self) -> list[Path]:
        """Test slides sorted by name."""
        from cadx.wsi.tiling import find_slides

        return find_slides([self.testing_images])


def slide_truth(truth_dir: str | Path) -> dict[str, tuple[int, Path]]:
    """Slide -> (label, the folder holding its ``lesion_annotations/``), from a CAMELYON16 folder.

    Parameters
    ----------
    truth_dir : path
        A CAMELYON16 root (``training/tumor``, ``training/normal`` and ``training/lesion_annotations``;
        ``testing/reference.csv`` and ``testing/lesion_annotations``: both parts optional), or a
        ``testing``-like folder (``reference.csv`` + ``lesion_annotations/``).

    Returns
    -------
    dict of str to (int, Path)
        Lower-case slide names; label 1 tumour, 0 normal.

    Raises
    ------
    InputFileError
        Neither layout, or no slide in it.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "lesion_annotations").mkdir()
    >>> _ = (root / "reference.csv").write_text("Test_001,Tumor,Macro\\ntest_002,Normal\\n")
    >>> {k: (y, d == root) for k, (y, d) in slide_truth(root).items()}
    {'test_001': (1, True), 'test_002': (0, True)}
    """
    root = Path(truth_dir)
    if not root.is_dir():
        raise InputFileError(root, "no such truth folder")
    if (root / "reference.csv").is_file():
        return {name: (label, root) for name, label in read_reference(root / "reference.csv").items()}
    layout = Camelyon16Layout(root)
    out: dict[str, tuple[int, Path]] = {}
    if not layout.missing_training_folders():
        from cadx.wsi.tiling import find_slides

        for label, folder in ((1, layout.training_tumor), (0, layout.training_normal)):
            out.update({p.stem.lower(): (label, root / "training") for p in find_slides([folder])})
    if layout.reference_csv.is_file():
        out.update({n: (y, layout.testing) for n, y in read_reference(layout.reference_csv).items()})
    if not out:
        raise InputFileError(root, "no slides: expected reference.csv, or a CAMELYON16 root with training/tumor, "
                                   "training/normal and/or testing/reference.csv")
    return out


def check_training_root(value: str) -> str:
    """``value`` if it is a CAMELYON16 root with the training folders, else ``ValueError`` saying what is missing.

    The one check behind the ``data_dir`` of every CAMELYON16 training config (pydantic validators
    turn the ValueError into a one-line config error naming the key).
    """
    root = Path(value)
    if not root.is_dir():
        raise ValueError(f"no such folder: {value}")
    missing = Camelyon16Layout(root).missing_training_folders()
    if missing:
        raise ValueError(f"{value} has no {' or '.join(missing)} folder (CAMELYON16 layout)")
    return value
