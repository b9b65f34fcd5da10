"""``cadx predict seg``: a segmentation checkpoint over many slides, the outputs viewers and reviewers want.

Per slide, in the output folder: ``<slide>_mask.tif`` (pyramidal tumour probability x 255, with
mpp: OpenSlide, QuPath and ASAP open it), ``<slide>.xml`` (ASAP) and ``<slide>.geojson`` (QuPath)
outlines of the thresholded mask in level-0 coordinates, ``<slide>.png`` (H&E with the
ground-truth outline | predicted probability) and ``<slide>_seg.json`` (settings and timings,
written last: it vouches for the others). For the run, ``predict.json``. A rerun skips slides whose
``<slide>_seg.json`` records the same model and settings.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import CadxError
from cadx.inference.predictor import Predictor
from cadx.inference.segment import segment_slide
from cadx.io.annotations import Annotation, read_asap_xml, write_asap_xml, write_geojson
from cadx.io.atomic import atomic_path, ensure_not_input, prepare_output_folder, remove_stale_parts
from cadx.io.slide import SlideReader, open_slide
from cadx.parallel.jobs import map_jobs
from cadx.preprocessing.masks import polygons_from_mask
from cadx.viz.overlay import draw_outlines, thumbnail_scale

log = logging.getLogger(__name__)

#: Output suffixes per slide.
MASK_SUFFIX, RECORD_SUFFIX = "_mask.tif", "_seg.json"


@dataclass
class SegPredictReport:
    """What :func:`predict_seg` did.

    Attributes
    ----------
    masks : dict of str to Path
        Slide name -> probability TIFF, for every slide predicted or skipped.
    failures : list of (Path, str)
        Slides left out for a user error, with the message.
    seconds : dict of str to dict
        Slide name -> timings of :func:`~cadx.inference.segment.segment_slide` (slides predicted now).
    skipped : list of Path
        Slides a previous run finished with the same model and settings.
    """

    masks: dict[str, Path] = field(default_factory=dict)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: list[Path] = field(default_factory=list)


def predict_seg(
    slides: Sequence[str | Path],
    predictor: Predictor,
    out_dir: str | Path,
    *,
    tile: dict[str, Any],
    overlap_px: int | None = None,
    out_downsample: int = 4,
    threshold: float = 0.5,
    min_tissue: float = 0.1,
    batch_size: int = 16,
    polygon_mpp: float = 4.0,
    annotations: str | Path | None = None,
    mpp_override: float | None = None,
    model_id: str | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> SegPredictReport:
    """Segment each slide and write its outputs; carry on past bad slides; resume a killed run.

    Parameters
    ----------
    slides : sequence of path
    predictor : Predictor
        ``predict((N, H, W, 3) uint8) -> (N, 1, H, W)`` tumour probabilities.
    out_dir : path
    tile : dict
        The checkpoint's tile spec: ``{"mpp": ..., "size_px": ...}``.
    overlap_px, out_downsample, min_tissue, batch_size
        See :func:`~cadx.inference.segment.segment_slide`.
    threshold : float
        Probability above which a pixel is tumour, for the polygons.
    polygon_mpp : float
        Resolution (um/px) of the mask level the polygons are traced on (the coarsest pyramid level
        at least this fine; coarser keeps memory and vertex counts down).
    annotations : path, optional
        Ground truth for the figure's outline: a folder with ``<slide>.xml`` (or
        ``lesion_annotations/<slide>.xml``). Without it, ``lesion_annotations/<slide>.xml``
        beside the slide's folder (the CAMELYON16 layout) is used when present.
    mpp_override : float, optional
        Level-0 um/px for slides that do not record it.
    model_id : str, optional
        The checkpoint's SHA-256; without it nothing is skipped.
    overwrite : bool
        Predict every slide again.
    show_progress : bool
        A tqdm bar over tiles.

    Returns
    -------
    SegPredictReport

    Raises
    ------
    OutputPathError
        ``out_dir`` is a file or cannot be created.
    """
    from tqdm.auto import tqdm

    out = prepare_output_folder(out_dir)
    remove_stale_parts(out)
    settings = {"target_mpp": float(tile["mpp"]), "tile_size_px": int(tile["size_px"]),
                "overlap_px": int(tile["size_px"]) // 4 if overlap_px is None else int(overlap_px),
                "out_downsample": int(out_downsample), "threshold": float(threshold), "min_tissue": float(min_tissue),
                "polygon_mpp": float(polygon_mpp), "model_checkpoint_sha256": model_id or ""}
    paths = [Path(p) for p in slides]

    def done(path: Path) -> bool:
        return bool(model_id) and not overwrite and _finished(out, path.stem, settings)

    with tqdm(desc="segment", unit="tile", disable=not show_progress) as bar:
        def one(path: Path) -> dict[str, Any]:
            return _predict_one(path, predictor, out, settings=settings, batch_size=batch_size,
                                annotations=Path(annotations) if annotations else None, mpp_override=mpp_override,
                                progress=bar.update)

        jobs = map_jobs(one, paths, skip_done=done)
    report = SegPredictReport(failures=list(jobs.failures), skipped=list(jobs.skipped))
    for p in report.skipped:
        report.masks[p.stem] = out / f"{p.stem}{MASK_SUFFIX}"
    for _, r in jobs.done:
        report.masks[r["name"]] = r["mask"]
        report.seconds[r["name"]] = r["seconds"]
    with atomic_path(out / "predict.json") as tmp:
        tmp.write_text(json.dumps({**settings, "model": predictor.config.to_dict(), "seconds": report.seconds,
                                   "skipped": [str(p) for p in report.skipped], "created_unix": time.time(),
                                   "failures": [[str(p), w] for p, w in report.failures]}, indent=2))
    return report


def _finished(out: Path, name: str, settings: dict[str, Any]) -> bool:
    """True when ``<name>_seg.json`` records ``settings`` and every output it vouches for exists."""
    record = out / f"{name}{RECORD_SUFFIX}"
    try:
        recorded = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    outputs = [out / f"{name}{s}" for s in (MASK_SUFFIX, ".xml", ".geojson", ".png")]
    same = all(recorded.get(k) == v for k, v in settings.items())
    return same and all(p.is_file() and p.stat().st_mtime_ns <= record.stat().st_mtime_ns for p in outputs)


def _predict_one(path: Path, predictor: Predictor, out: Path, *, settings: dict[str, Any], batch_size: int,
                 annotations: Path | None, mpp_override: float | None, progress: Any) -> dict[str, Any]:
    with open_slide(path, mpp=mpp_override) as slide:
        name = slide.name
        mask_path, xml, geojson, png, record = (out / f"{name}{s}" for s in (
            MASK_SUFFIX, ".xml", ".geojson", ".png", RECORD_SUFFIX))
        truth_xml = _truth_xml(path, name, annotations)
        for output in (mask_path, xml, geojson, png, record):
            ensure_not_input(output, path, truth_xml)
        result = segment_slide(slide, predictor, mask_path, mpp=settings["target_mpp"],
                               tile_size_px=settings["tile_size_px"], overlap_px=settings["overlap_px"],
                               out_downsample=settings["out_downsample"], min_tissue=settings["min_tissue"],
                               batch_size=batch_size, attrs={"model_checkpoint_sha256": settings[
                                   "model_checkpoint_sha256"]}, progress=progress)
        truth = read_asap_xml(truth_xml) if truth_xml is not None else []
        polys = mask_annotations(mask_path, threshold=settings["threshold"], polygon_mpp=settings["polygon_mpp"])
        write_asap_xml(xml, polys)
        write_geojson(geojson, polys)
        write_side_by_side(png, slide, mask_path, truth)
    with atomic_path(record) as tmp:
        tmp.write_text(json.dumps({**settings, **result.attrs, "seconds": result.seconds,
                                   "polygons": len(polys), "truth": str(truth_xml or "")}, indent=2))
    return {"name": name, "mask": mask_path, "seconds": result.seconds}


def _truth_xml(slide_path: Path, name: str, annotations: Path | None) -> Path | None:
    roots = [annotations, annotations / "lesion_annotations"] if annotations else [
        slide_path.parent.parent / "lesion_annotations"]
    return next((r / f"{name}.xml" for r in roots if (r / f"{name}.xml").is_file()), None)


def read_mask_level(mask_path: str | Path, *, mpp: float) -> tuple[np.ndarray, float]:
    """The probability TIFF's coarsest level at least as fine as ``mpp`` um/px, as float32 in [0, 1].

    Returns
    -------
    probs : ndarray of float32, shape (rows, cols)
    downsample : float
        Slide level-0 pixels per pixel of ``probs``.
    """
    from cadx.inference.segment import read_mask_attrs

    attrs = read_mask_attrs(mask_path)
    with open_slide(mask_path, mpp=float(attrs["mpp"])) as m:
        level = m.best_level_for_downsample(max(1.0, mpp / m.mpp))
        img = m.read_region((0, 0), level, m.level_dimensions[level])[:, :, 0]
        ds = float(attrs["downsample"]) * m.level_downsamples[level]
    return img.astype(np.float32) / 255.0, ds


def mask_annotations(mask_path: str | Path, *, threshold: float = 0.5, polygon_mpp: float = 4.0) -> list[Annotation]:
    """Outlines of ``probability > threshold`` as ASAP annotations in slide level-0 coordinates.

    Outer boundaries are group ``Tumor``; holes are ``_2`` (CAMELYON16's exclusion group, so
    rasterising the annotations back gives the mask).
    """
    probs, ds = read_mask_level(mask_path, mpp=polygon_mpp)
    polys = polygons_from_mask(probs > threshold, downsample=ds)
    return [Annotation(xy, group="Tumor" if v else "_2", name=f"Annotation {i}") for i, (xy, v) in enumerate(polys)]


def write_side_by_side(path: str | Path, slide: SlideReader, mask_path: str | Path, truth: Sequence[Annotation], *,
                       max_size_px: int = 1024) -> Path:
    """The original project's figure: H&E with the ground-truth outline | predicted probability (greyscale).

    Both panels carry the ground-truth outline (red), so the prediction can be compared with it.
    """
    from PIL import Image

    thumb = slide.get_thumbnail((max_size_px // 2, max_size_px // 2))
    scale = thumbnail_scale(thumb.shape[:2], slide.dimensions)
    outlines = [a.coords_xy for a in truth if a.label]
    left = draw_outlines(thumb, outlines, scale=scale)
    probs, ds = read_mask_level(mask_path, mpp=slide.mpp / scale)
    h, w = thumb.shape[:2]
    # The mask pixels covering the slide, resized onto the thumbnail.
    rows, cols = math.ceil(slide.dimensions[1] / ds), math.ceil(slide.dimensions[0] / ds)
    grey = Image.fromarray((probs[:rows, :cols] * 255).round().astype(np.uint8)).resize(
        (w, h), Image.Resampling.BILINEAR)
    right = draw_outlines(np.repeat(np.asarray(grey)[:, :, None], 3, axis=2), outlines, scale=scale)
    gap = np.full((h, 8, 3), 255, np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate([left, gap, right], axis=1)).save(tmp, format="PNG")
    return Path(path)


def check_tile_spec(tile: dict[str, Any], source: str) -> None:
    """Raise a one-line error when a checkpoint's tile spec lacks mpp or size."""
    if "mpp" not in tile or "size_px" not in tile:
        raise CadxError(f"{source}: the checkpoint records no tile spec (mpp, size_px)")
