"""The CAMELYON16 folder layout, as published (and as ``cadx synth slides`` writes it).

::

    ROOT/training/tumor/tumor_001.tif          ROOT/training/lesion_annotations/tumor_001.xml
    ROOT/training/normal/normal_001.tif
    ROOT/testing/images/test_001.tif           ROOT/testing/lesion_annotations/test_001.xml
    ROOT/testing/reference.csv                 (name, Tumor|Normal, ...)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
