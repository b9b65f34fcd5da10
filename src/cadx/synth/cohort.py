"""Write a synthetic cohort in the CAMELYON16 layout.

::

    OUT/training/tumor/tumor_001.tif          pyramidal tiled JPEG TIFF, 0.243 um/px
    OUT/training/normal/normal_001.tif
    OUT/training/lesion_annotations/tumor_001.xml   ASAP XML (_0/_1 tumour, _2 holes)
    OUT/testing/images/test_001.tif
    OUT/testing/lesion_annotations/test_001.xml
    OUT/testing/reference.csv                 name,Tumor|Normal,lesion type,Macro|Micro|ITC
    OUT/cohort.csv                            cadx's manifest: every slide, how it was made

Every slide follows from ``(seed, split, index)``; rerunning with the same arguments gives the
same files.
"""

from __future__ import annotations

import csv
import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadx import __version__
from cadx.io.annotations import Annotation, write_asap_xml
from cadx.io.atomic import atomic_path
from cadx.io.tiff import pyramid_level_count, write_pyramid_tiff
from cadx.synth.layout import CAMELYON_MPP, SlideLayout, make_layout
from cadx.synth.render import render_region

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthSlide:
    """One generated slide and where its files are."""

    name: str
    split: str
    path: Path
    annotation_path: Path | None
    layout: SlideLayout

    @property
    def label(self) -> str:
        return "Tumor" if self.layout.is_tumor else "Normal"


def snap_size(size_px: int, *, min_level_size_px: int = 512) -> tuple[int, int]:
    """Round a requested side to one with exact 2x pyramid levels.

    Returns
    -------
    size_px : int
        Nearest multiple of ``2 ** (n_levels - 1)``.
    n_levels : int
    """
    if size_px < 1024:
        raise ValueError(f"slides must be at least 1024 px wide, got {size_px}")
    n = pyramid_level_count((size_px, size_px), min_level_size_px=min_level_size_px)
    step = 2 ** (n - 1)
    return int(round(size_px / step)) * step, n


def slide_seed(seed: int, split: str, index: int) -> int:
    """A stable per-slide seed from the cohort seed."""
    return zlib.crc32(f"{seed}:{split}:{index}".encode()) & 0x7FFFFFFF


def layout_annotations(layout: SlideLayout) -> list[Annotation]:
    """ASAP annotations of a layout's lesions: outlines in their group, holes as ``_2``."""
    anns: list[Annotation] = []
    for les in layout.lesions:
        anns.append(Annotation(les.outline_xy, group=les.group, name=f"Annotation {len(anns)}"))
        for hole in les.holes_xy:
            anns.append(Annotation(hole, group="_2", name=f"Annotation {len(anns)}"))
    return anns


def write_synthetic_slide(
    path: str | Path,
    layout: SlideLayout,
    *,
    n_levels: int | None = None,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Render ``layout`` into a pyramidal TIFF at ``path`` (atomic, streaming)."""
    w, h = layout.size_wh
    n_levels = n_levels or pyramid_level_count((w, h))
    description = json.dumps(
        {"generator": "cadx.synth", "cadx_version": __version__, "seed": layout.seed, "centre": layout.centre,
         "mpp": layout.mpp, "tumor": layout.is_tumor, "tumor_contrast": layout.tumor_contrast}
    )
    return write_pyramid_tiff(
        path,
        (w, h),
        lambda x0, y0, tw, th, ds: render_region(layout, x0, y0, tw, th, ds),
        mpp=layout.mpp,
        n_levels=n_levels,
        description=description,
        workers=workers,
        progress=progress,
    )


def count_tiles(size_wh: tuple[int, int], n_levels: int, tile_size_px: int = 256) -> int:
    """Number of tiles in a pyramid (for progress bars)."""
    w, h = size_wh
    return sum(-(-(w >> k) // tile_size_px) * -(-(h >> k) // tile_size_px) for k in range(n_levels))


def generate_cohort(
    out_dir: str | Path,
    *,
    n_tumor: int,
    n_normal: int,
    n_test: int = 0,
    size_px: int = 8192,
    seed: int = 0,
    tumor_contrast: float = 0.6,
    max_lesion_um: float | None = None,
    artefacts: bool = True,
    workers: int = 2,
    show_progress: bool = True,
) -> list[SynthSlide]:
    """Generate a CAMELYON16-layout cohort (see the module docstring for the layout).

    Parameters
    ----------
    out_dir : str or Path
    n_tumor, n_normal : int
        Training slides of each kind.
    n_test : int
        Test slides (about half with tumour), with ``testing/reference.csv``.
    size_px : int
        Level-0 side, snapped with :func:`snap_size`.
    seed : int
    tumor_contrast : float
        0..1; lower makes tumour harder to tell from normal lymph node.
    max_lesion_um : float, optional
        Cap on lesion diameters (smaller lesions are harder to find).
    artefacts : bool
        Pen marks, black borders and blurred areas on some slides.
    workers : int
        Render threads per slide.
    show_progress : bool
        A tqdm bar over all tiles of the cohort.

    Returns
    -------
    list of SynthSlide
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    size, n_levels = snap_size(size_px)
    rng = np.random.default_rng(seed)
    plan: list[tuple[str, str, bool, Path, Path | None]] = []
    for i in range(n_tumor):
        name = f"tumor_{i + 1:03d}"
        plan.append((name, "training", True, out / "training/tumor" / f"{name}.tif",
                     out / "training/lesion_annotations" / f"{name}.xml"))
    for i in range(n_normal):
        name = f"normal_{i + 1:03d}"
        plan.append((name, "training", False, out / "training/normal" / f"{name}.tif", None))
    test_tumor = rng.permutation(n_test) < (n_test + 1) // 2
    for i in range(n_test):
        name = f"test_{i + 1:03d}"
        plan.append((name, "testing", bool(test_tumor[i]), out / "testing/images" / f"{name}.tif",
                     out / "testing/lesion_annotations" / f"{name}.xml" if test_tumor[i] else None))

    per_slide = count_tiles((size, size), n_levels)
    bar = tqdm(total=per_slide * len(plan), unit="tile", desc="synth slides", disable=not show_progress)
    slides: list[SynthSlide] = []
    try:
        for index, (name, split, tumor, path, xml_path) in enumerate(plan):
            centre = "A" if rng.random() < 0.5 else "B"
            layout = make_layout(size_wh=(size, size), seed=slide_seed(seed, split, index), tumor=tumor,
                                 centre=centre, tumor_contrast=tumor_contrast, artefacts=artefacts,
                                 max_lesion_um=max_lesion_um,
                                 mpp=CAMELYON_MPP)
            bar.set_postfix_str(name)
            write_synthetic_slide(path, layout, n_levels=n_levels, workers=workers, progress=bar.update)
            if xml_path is not None:
                write_asap_xml(xml_path, layout_annotations(layout))
            slides.append(SynthSlide(name, split, path, xml_path, layout))
    finally:
        bar.close()
    _write_reference(out, slides)
    _write_manifest(out, slides, seed=seed, size=size)
    log.info("wrote %d slides (%d px, %d levels) to %s", len(slides), size, n_levels, out)
    return slides


def _largest(layout: SlideLayout) -> tuple[str, float]:
    if not layout.lesions:
        return "", 0.0
    big = max(layout.lesions, key=lambda les: les.diameter_um)
    return big.size_class, big.diameter_um


def _write_reference(out: Path, slides: list[SynthSlide]) -> None:
    tests = [s for s in slides if s.split == "testing"]
    if not tests:
        return
    with atomic_path(out / "testing" / "reference.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        for s in tests:
            size_class, _ = _largest(s.layout)
            writer.writerow([s.name, s.label, "Primary" if s.layout.is_tumor else "", size_class])


def _write_manifest(out: Path, slides: list[SynthSlide], *, seed: int, size: int) -> None:
    fields = ["slide", "split", "label", "path", "annotation", "centre", "slide_seed", "cohort_seed", "size_px",
              "mpp", "n_lesions", "largest_lesion_um", "largest_class", "pen", "border", "blur", "tumor_contrast",
              "cadx_version"]
    with atomic_path(out / "cohort.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for s in slides:
            lay = s.layout
            size_class, diam = _largest(lay)
            writer.writerow({
                "slide": s.name, "split": s.split, "label": s.label, "path": str(s.path.relative_to(out)),
                "annotation": str(s.annotation_path.relative_to(out)) if s.annotation_path else "",
                "centre": lay.centre, "slide_seed": lay.seed, "cohort_seed": seed, "size_px": size,
                "mpp": lay.mpp, "n_lesions": len(lay.lesions), "largest_lesion_um": round(diam, 1),
                "largest_class": size_class, "pen": int(bool(lay.pens)), "border": int(lay.border_px > 0),
                "blur": int(bool(lay.blur_ellipses)), "tumor_contrast": lay.tumor_contrast,
                "cadx_version": __version__,
            })
