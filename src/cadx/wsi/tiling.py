"""Tile a slide at a chosen magnification and write its coordinates file.

Memory stays flat in the slide's size: the tissue mask is read at ~16 um/px, annotations are
rasterised at 1/32 of a tile, and tile fractions come from integral images.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cadx import __version__
from cadx.errors import CadxError
from cadx.io.annotations import Annotation, check_within, polygons_in_paint_order, read_asap_xml
from cadx.io.atomic import ensure_not_input, prepare_output_folder, remove_stale_parts
from cadx.io.digest import file_sha256
from cadx.io.h5 import attrs_differ, read_coords_attrs, write_coords_h5
from cadx.io.resolution import DEFAULT_MPP_TOLERANCE, ReadPlan, plan_read
from cadx.io.slide import SlideReader, open_slide
from cadx.preprocessing.masks import rasterize_polygons
from cadx.preprocessing.tiling import TileGrid, box_fractions, integral_image, tile_grid
from cadx.preprocessing.tissue import TissueMask
from cadx.wsi.tissue import DEFAULT_MASK_MPP, detect_tissue

log = logging.getLogger(__name__)

#: Annotation rasters use this many samples per tile side for tumour fractions.
ANNOTATION_SAMPLES_PER_TILE = 32


@dataclass
class TilingResult:
    """Tiles of one slide, the tissue mask they came from, and how they were made."""

    grid: TileGrid
    plan: ReadPlan
    tissue: TissueMask
    attrs: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def coords_xy(self) -> np.ndarray:
        return self.grid.coords_xy


def tile_slide(
    slide: SlideReader,
    *,
    target_mpp: float | None = 0.5,
    tile_size_px: int = 256,
    overlap_px: int = 0,
    min_tissue: float = 0.5,
    level: int | None = None,
    annotations: Sequence[Annotation] | None = None,
    annotations_path: str | Path | None = None,
    mask_mpp: float = DEFAULT_MASK_MPP,
    mpp_tolerance: float = DEFAULT_MPP_TOLERANCE,
) -> TilingResult:
    """Tissue tiles of a slide at ``target_mpp`` (or at a fixed ``level``).

    Parameters
    ----------
    slide : SlideReader
    target_mpp : float, optional
        Tile resolution in um/px (0.5 is "20x"). Ignored when ``level`` is given.
    tile_size_px : int
        Tile side at the target resolution.
    overlap_px : int
        Overlap between neighbours at the target resolution (stride = tile - overlap).
    min_tissue : float
        Minimum tissue fraction of a tile's footprint.
    level : int, optional
        Read this level as is, instead of choosing one by mpp.
    annotations : sequence of Annotation, optional
        Lesion polygons; adds ``tumor_fraction`` (whole tile) and ``tumor_fraction_center``
        (central half, as Liu et al. label patches) per tile.
    annotations_path : path, optional
        Where the annotations came from (for messages and attributes).
    mask_mpp : float
        Tissue-mask resolution.

    Returns
    -------
    TilingResult
    """
    t0 = time.perf_counter()
    if overlap_px < 0 or overlap_px >= tile_size_px:
        raise ValueError(f"overlap must be in [0, tile size), got {overlap_px}")
    if level is not None:
        level = slide.check_level(level)
        plan = ReadPlan(level=level, level_downsample=slide.level_downsamples[level], level_mpp=slide.level_mpp(level),
                        target_mpp=slide.level_mpp(level), out_size_px=tile_size_px, read_size_px=tile_size_px)
    else:
        if target_mpp is None:
            raise ValueError("give target_mpp or level")
        plan = plan_read(slide, target_mpp, tile_size_px, tolerance=mpp_tolerance)
    tissue = detect_tissue(slide, mask_mpp=mask_mpp)
    t1 = time.perf_counter()
    size0 = plan.size_level0_px
    stride0 = int(round((tile_size_px - overlap_px) * plan.read_size_px / plan.out_size_px * plan.level_downsample))
    mask_ds = tissue.mpp / slide.mpp
    grid = tile_grid(tissue.mask, mask_downsample=mask_ds, slide_size_wh=slide.dimensions,
                     tile_size_level0_px=size0, stride_level0_px=stride0, min_fraction=min_tissue)
    t2 = time.perf_counter()
    arrays: dict[str, np.ndarray] = {"tissue_fraction": grid.tissue_fraction}
    if annotations is not None:
        check_within(annotations, slide.dimensions, path=annotations_path or "annotations")
        arrays.update(tumor_fractions(annotations, grid.coords_xy, size0, slide.dimensions))
    t3 = time.perf_counter()
    w0, h0 = slide.dimensions
    lw, lh = slide.level_dimensions[plan.level]
    attrs: dict[str, Any] = {
        # CLAM's names, so its feature extractors read these files unchanged.
        "name": slide.name,
        "patch_size": plan.read_size_px,
        "patch_level": plan.level,
        "downsample": [plan.level_downsample, plan.level_downsample],
        "level_dim": [lw, lh],
        "downsampled_level_dim": [lw, lh],
        # cadx's own.
        "slide_path": str(slide.path),
        "slide_dimensions_wh": [w0, h0],
        "level0_mpp": slide.mpp,
        "target_mpp": plan.target_mpp,
        "level_mpp": plan.level_mpp,
        "effective_mpp": plan.effective_mpp,
        "tile_size_px": plan.out_size_px,
        "read_size_px": plan.read_size_px,
        "tile_size_level0_px": size0,
        "stride_level0_px": stride0,
        "overlap_px": overlap_px,
        "min_tissue": min_tissue,
        "tissue_mask_mpp": tissue.mpp,
        "tissue_method": tissue.method,
        "tissue_saturation_threshold": tissue.saturation_threshold,
        "annotations": str(annotations_path) if annotations_path else "",
        "cadx_version": __version__,
        "created_unix": time.time(),
    }
    # What was asked for, so that a rerun can tell whether this file answers the same request.
    attrs.update(tiling_request(
        slide, target_mpp=target_mpp, tile_size_px=tile_size_px, overlap_px=overlap_px, min_tissue=min_tissue,
        level=level, annotated=annotations is not None,
        annotations_sha256=_sha256_or_empty(annotations_path) if annotations is not None else "",
        mask_mpp=mask_mpp, mpp_tolerance=mpp_tolerance))
    return TilingResult(grid=grid, plan=plan, tissue=tissue, attrs=attrs, arrays=arrays,
                        seconds={"tissue_mask": t1 - t0, "tile_grid": t2 - t1, "annotations": t3 - t2})


def tiling_request(
    slide: SlideReader,
    *,
    target_mpp: float | None = 0.5,
    tile_size_px: int = 256,
    overlap_px: int = 0,
    min_tissue: float = 0.5,
    level: int | None = None,
    annotated: bool = False,
    annotations_sha256: str = "",
    mask_mpp: float = DEFAULT_MASK_MPP,
    mpp_tolerance: float = DEFAULT_MPP_TOLERANCE,
) -> dict[str, Any]:
    """The attributes that decide a slide's tiles: a coordinates file recording these answers the request.

    :func:`tile_slide` records them; :func:`tile_cohort` compares them (with
    :func:`~cadx.io.h5.attrs_differ`) to skip slides a previous run finished with the same settings.
    The slide enters by its size and level-0 mpp (``--mpp-override`` included), the annotations by
    the SHA-256 of their file (``annotated`` with an empty digest: annotations given, none for this
    slide).
    """
    request: dict[str, Any] = {
        "slide_dimensions_wh": [int(v) for v in slide.dimensions],
        "level0_mpp": float(slide.mpp),
        "fixed_level": -1 if level is None else int(level),
        "tile_size_px": int(tile_size_px),
        "overlap_px": int(overlap_px),
        "min_tissue": float(min_tissue),
        "mask_mpp": float(mask_mpp),
        "annotated": bool(annotated),
        "annotations_sha256": annotations_sha256,
    }
    if level is None:
        request["target_mpp"] = float(target_mpp) if target_mpp is not None else -1.0
        request["mpp_tolerance"] = float(mpp_tolerance)
    return request


def _sha256_or_empty(path: str | Path | None) -> str:
    return file_sha256(path) if path is not None and Path(path).is_file() else ""


def tumor_fractions(
    annotations: Sequence[Annotation], coords_xy: np.ndarray, size_level0_px: int, slide_size_wh: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per-tile tumour fraction of the whole tile and of its central half.

    The label mask (``_2`` holes painted last) is rasterised at ``size / 32`` level-0 px per
    sample, so its size is bounded by the tile count, not the level-0 area.
    """
    ds = max(1.0, size_level0_px / ANNOTATION_SAMPLES_PER_TILE)
    w0, h0 = slide_size_wh
    shape = (math.ceil(h0 / ds), math.ceil(w0 / ds))
    label = rasterize_polygons(polygons_in_paint_order(annotations), shape, downsample=ds)
    table = integral_image(label)
    return {
        "tumor_fraction": box_fractions(table, coords_xy, size_level0_px, mask_downsample=ds),
        "tumor_fraction_center": box_fractions(table, coords_xy, size_level0_px, mask_downsample=ds, inset_frac=0.25),
    }


@dataclass
class CohortTilingReport:
    """What a cohort run wrote, skipped and what failed.

    Attributes
    ----------
    written : list of Path
        Coordinates files written, in input order.
    failures : list of (Path, str)
        Slides skipped for a user error, with the message.
    n_tiles : int
        Tiles in the files written.
    skipped : list of Path
        Slides left alone: their coordinates file records the same settings (or, with
        ``skip_existing``, merely exists).
    """

    written: list[Path] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    n_tiles: int = 0
    skipped: list[Path] = field(default_factory=list)


SLIDE_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".bif")


def find_slides(inputs: Sequence[str | Path], *, suffixes: Sequence[str] = SLIDE_SUFFIXES) -> list[Path]:
    """Expand files and directories (searched recursively) into a sorted list of slide paths."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in suffixes
                              and not q.name.endswith("_Mask.tif")))
        else:
            out.append(p)
    return out


def tile_cohort(
    slides: Sequence[str | Path],
    out_dir: str | Path,
    *,
    annotations: str | Path | None = None,
    mpp_override: float | None = None,
    previews: bool = False,
    overwrite: bool = False,
    skip_existing: bool = False,
    backend: str = "serial",
    workers: int | None = None,
    show_progress: bool = True,
    **options: Any,
) -> CohortTilingReport:
    """Tile every slide into ``out_dir/<slide>.h5``; carry on past bad slides; resume a killed run.

    A rerun repeats nothing that finished: a slide whose ``<slide>.h5`` records the same settings
    (:func:`tiling_request`: resolution, tile size, overlap, tissue threshold, mask resolution,
    the slide's size and mpp, the annotation file's digest) and, with ``previews``, whose preview
    is no older than it, is skipped; one made with other settings is tiled again. Temporary
    ``.*.part`` files a killed run left in ``out_dir`` are removed first.

    Parameters
    ----------
    slides : sequence of path
        Slide files.
    out_dir : path
    annotations : path, optional
        An ASAP XML (single slide) or a directory holding ``<slide>.xml`` files; slides without
        one are tiled without tumour fractions.
    mpp_override : float, optional
        Level-0 mpp for files that lack it.
    previews : bool
        Also write ``<slide>.png``: thumbnail, tissue outline, tile grid.
    overwrite : bool
        Tile every slide again, even those finished with the same settings.
    skip_existing : bool
        Leave slides whose ``<slide>.h5`` exists alone whatever its settings, without opening them
        (reported in ``skipped``).
    backend : {"serial", "process"}
        See :func:`cadx.parallel.jobs.map_jobs`; ``"process"`` tiles ``workers`` slides at once.
    workers : int, optional
        Processes for the ``"process"`` backend.
    show_progress : bool
        A tqdm bar over slides (when there are at least two).
    **options
        Passed to :func:`tile_slide`.

    Returns
    -------
    CohortTilingReport

    Raises
    ------
    OutputPathError
        ``out_dir`` is a file or cannot be created.
    """
    from functools import partial

    from tqdm.auto import tqdm

    from cadx.parallel.jobs import map_jobs

    out = prepare_output_folder(out_dir)
    remove_stale_parts(out)
    paths = [Path(p) for p in slides]
    job = partial(_tile_one, out_dir=out, annotations=Path(annotations) if annotations else None,
                  mpp_override=mpp_override, previews=previews, overwrite=overwrite, options=options)
    with tqdm(total=len(paths), desc="tiling", unit="slide", disable=not show_progress or len(paths) < 2) as bar:
        jobs = map_jobs(job, paths, backend=backend, workers=workers, progress=lambda _event: bar.update(1),
                        skip_done=(lambda p: (out / f"{p.stem}.h5").exists()) if skip_existing else None)
    report = CohortTilingReport(failures=list(jobs.failures), skipped=list(jobs.skipped))
    for path, (h5, n_tiles, reused) in jobs.done:
        if reused:
            report.skipped.append(path)
        else:
            report.written.append(h5)
            report.n_tiles += n_tiles
    report.skipped.sort(key=paths.index)
    return report


def _tile_one(path: Path, *, out_dir: Path, annotations: Path | None, mpp_override: float | None, previews: bool,
              overwrite: bool, options: dict[str, Any]) -> tuple[Path, int, bool]:
    """Tile one slide of :func:`tile_cohort` (module level, so process workers can run it).

    Returns the coordinates file, its tile count, and whether it was kept from an earlier run.
    """
    from cadx.wsi.preview import write_tiling_preview

    anns = xml = None
    if annotations is not None:
        xml = annotations / f"{path.stem}.xml" if annotations.is_dir() else annotations
        anns = read_asap_xml(xml) if xml.exists() or not annotations.is_dir() else []
        xml = xml if xml.exists() else None
    with open_slide(path, mpp=mpp_override) as slide:
        h5, png = out_dir / f"{slide.name}.h5", out_dir / f"{slide.name}.png"
        for output in (h5, png) if previews else (h5,):
            ensure_not_input(output, path, xml)
        if not overwrite:
            wanted = tiling_request(slide, annotated=anns is not None, annotations_sha256=_sha256_or_empty(xml),
                                    **options)
            n_tiles = _finished(h5, wanted, png if previews else None)
            if n_tiles is not None:
                log.info("%s: skipped, %s records the same settings", path.name, h5)
                return h5, n_tiles, True
        result = tile_slide(slide, annotations=anns, annotations_path=xml, **options)
        h5 = write_coords_h5(h5, result.coords_xy, result.attrs, result.arrays)
        if previews:  # written after the coordinates: a preview older than them is stale
            write_tiling_preview(png, slide, result)
    log.info("%s: %d tiles -> %s", path.name, len(result.coords_xy), h5)
    return h5, len(result.coords_xy), False


def _finished(h5: Path, wanted: dict[str, Any], preview: Path | None) -> int | None:
    """The tile count of ``h5`` if it answers ``wanted`` (and ``preview`` is at least as new), else None."""
    if not h5.is_file():
        return None
    try:
        recorded, n_tiles = read_coords_attrs(h5)
    except CadxError as exc:
        log.info("tiling again: %s", exc)
        return None
    differ = attrs_differ(recorded, wanted)
    if differ:
        log.info("tiling again: %s was made with other settings (%s)", h5, ", ".join(differ))
        return None
    if preview is not None and (not preview.is_file() or preview.stat().st_mtime_ns < h5.stat().st_mtime_ns):
        return None
    return n_tiles
