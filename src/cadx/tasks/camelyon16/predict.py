"""``cadx predict slides``: a checkpoint over many slides, every output a viewer or the challenge wants.

Per slide, in the output folder: ``<slide>.h5`` (score grid, channel ``tumor_probability``, plus
geometry), ``<slide>.png`` (overlay), ``<slide>.csv`` (CAMELYON16 ``prob,X,Y`` detections),
``<slide>.xml`` (ASAP) and ``<slide>.geojson`` (QuPath); for the run, ``slide_scores.csv`` (max
probability and heatmap features) and ``predict.json`` (settings and timings). A rerun into the same
folder skips the slides finished with the same model and settings (see :func:`predict_slides`).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cadx.errors import CadxError
from cadx.inference.detections import FEATURE_NAMES, nms_detections, slide_features
from cadx.inference.predictor import Predictor
from cadx.inference.slide import predict_slide
from cadx.io.annotations import write_asap_xml, write_geojson
from cadx.io.atomic import atomic_path, ensure_not_input, prepare_output_folder, remove_stale_parts
from cadx.io.h5 import (
    ScoreGrid,
    attrs_differ,
    read_score_grid_attrs,
    read_score_grid_h5,
    update_score_grid_attrs,
    write_score_grid_h5,
)
from cadx.io.slide import SlideReader, open_slide
from cadx.io.tables import write_detections_csv
from cadx.parallel.jobs import map_jobs
from cadx.wsi.preview import write_overlay_png

log = logging.getLogger(__name__)

#: The score-grid channel of a CAMELYON16 tile classifier, and the softmax column it comes from.
TUMOR_CHANNEL = "tumor_probability"
TUMOR_CLASS = 1


@dataclass
class PredictReport:
    """What :func:`predict_slides` did.

    Attributes
    ----------
    scores : dict of str to float
        Slide name -> maximum tile probability, for every slide predicted or skipped.
    failures : list of (Path, str)
        Slides left out for a user error, with the message.
    seconds : dict of str to dict
        Slide name -> timings of :func:`~cadx.inference.slide.predict_slide` (slides predicted now).
    skipped : list of Path
        Slides whose score grid a previous run made with the same model and settings: the model did
        not run again (missing or stale overlays and detections were completed from the grid).
    """

    scores: dict[str, float] = field(default_factory=dict)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: list[Path] = field(default_factory=list)


def prediction_request(slide: SlideReader, *, model_id: str, tile: dict[str, Any], stride_px: int | None,
                       tta: bool) -> dict[str, Any]:
    """The score-grid attributes that decide a slide's scores: a grid recording these can be reused.

    The model enters by ``model_id`` (the checkpoint's SHA-256), the slide by its size and level-0
    mpp (``--mpp-override`` included); then the tile spec, the stride and TTA.
    """
    size = int(tile["size_px"])
    return {
        "model_checkpoint_sha256": model_id,
        "channel_names": [TUMOR_CHANNEL],
        "model_outputs": [TUMOR_CLASS],
        "target_mpp": float(tile["mpp"]),
        "tile_size_px": size,
        "context_mpp": float(tile.get("context_mpp") or 0.0),
        "stride_px": int(stride_px or size),
        "tta": bool(tta),
        "slide_size_wh": [int(v) for v in slide.dimensions],
        "mpp": float(slide.mpp),
    }


def predict_slides(
    slides: Sequence[str | Path],
    predictor: Predictor,
    out_dir: str | Path,
    *,
    tile: dict[str, Any],
    stride_px: int | None = None,
    tta: bool = False,
    batch_size: int = 16,
    nms_threshold: float = 0.1,
    nms_radius_um: float = 150.0,
    mpp_override: float | None = None,
    slide_classifier: str | Path | None = None,
    model_id: str | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> PredictReport:
    """Predict each slide and write its outputs; carry on past bad slides; resume a killed run.

    A rerun repeats nothing that finished. Each slide's score grid ``<slide>.h5`` is written last
    and records the model (``model_id``) and settings (:func:`prediction_request`) and the detection
    settings. A slide whose grid records the same model and settings is skipped: the model does not
    run again, and its overlay and detection files are rewritten from the grid only where missing,
    newer than the grid (left by a run killed before its grid was written) or made with other
    detection settings. ``slide_scores.csv`` covers every slide predicted or skipped. Temporary
    ``.*.part`` files a killed run left in ``out_dir`` are removed first.

    Parameters
    ----------
    slides : sequence of path
    predictor : Predictor
        A tumour/normal tile classifier (softmax column 1 is tumour).
    out_dir : path
    tile : dict
        The checkpoint's tile spec: ``{"mpp": ..., "size_px": ..., "context_mpp": ...}``.
    stride_px, tta, batch_size
        See :func:`~cadx.inference.slide.predict_slide`.
    nms_threshold, nms_radius_um : float
        Detections: lowest probability and suppression radius.
    mpp_override : float, optional
        Level-0 um/px for slides that do not record it.
    slide_classifier : path, optional
        A random forest from ``cadx slide-classifier fit``; adds the ``rf_score`` column.
    model_id : str, optional
        What identifies the predictor's weights: the checkpoint's SHA-256
        (``load_predictor(...)[1]["checkpoint_sha256"]``). Without it nothing is skipped.
    overwrite : bool
        Predict every slide again, even those finished with the same model and settings.
    show_progress : bool
        A tqdm bar over tiles.

    Returns
    -------
    PredictReport

    Raises
    ------
    OutputPathError
        ``out_dir`` is a file or cannot be created.
    """
    from tqdm.auto import tqdm

    rf = None
    if slide_classifier is not None:
        from cadx.tasks.camelyon16.slide_forest import load_slide_forest

        rf = load_slide_forest(slide_classifier)
    out = prepare_output_folder(out_dir)
    remove_stale_parts(out)
    bar = tqdm(desc="predict", unit="tile", disable=not show_progress)

    def one(path: Path) -> dict[str, Any]:
        return _predict_one(path, predictor, out, tile=tile, stride_px=stride_px, tta=tta, batch_size=batch_size,
                            nms_threshold=nms_threshold, nms_radius_um=nms_radius_um, mpp_override=mpp_override,
                            rf=rf, bar=bar, model_id=model_id, overwrite=overwrite)

    paths = [Path(p) for p in slides]
    try:
        jobs = map_jobs(one, paths)
    finally:
        bar.close()
    report = PredictReport(failures=list(jobs.failures))
    feature_rows = []
    for path, done in jobs.done:
        report.scores[done["name"]] = done["score"]
        if done["skipped"]:
            report.skipped.append(path)
        else:
            report.seconds[done["name"]] = done["seconds"]
        feature_rows.append(done["row"])
    if feature_rows:
        with atomic_path(out / "slide_scores.csv") as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(feature_rows[0]))
            w.writeheader()
            w.writerows(feature_rows)
    with atomic_path(out / "predict.json") as tmp:
        tmp.write_text(json.dumps({"tile": tile, "stride_px": stride_px, "tta": tta, "nms_threshold": nms_threshold,
                                   "nms_radius_um": nms_radius_um, "model": predictor.config.to_dict(),
                                   "model_checkpoint_sha256": model_id or "",
                                   "seconds": report.seconds, "skipped": [str(p) for p in report.skipped],
                                   "created_unix": time.time(),
                                   "failures": [[str(p), w] for p, w in report.failures]}, indent=2))
    return report


def _predict_one(path: Path, predictor: Predictor, out: Path, *, tile: dict[str, Any], stride_px: int | None,
                 tta: bool, batch_size: int, nms_threshold: float, nms_radius_um: float,
                 mpp_override: float | None, rf: Any, bar: Any, model_id: str | None,
                 overwrite: bool) -> dict[str, Any]:
    """One slide's outputs; returns its name, max probability, slide_scores row, timings, and whether skipped."""
    progress: Callable[[int], Any] = bar.update
    detection = {"nms_threshold": float(nms_threshold), "nms_radius_um": float(nms_radius_um)}
    seconds: dict[str, float] = {}
    tiles: dict[str, Any] = {}
    with open_slide(path, mpp=mpp_override) as slide:
        name = slide.name
        h5, png = out / f"{name}.h5", out / f"{name}.png"
        det_files = [out / f"{name}{ext}" for ext in (".csv", ".xml", ".geojson")]
        for output in (h5, png, *det_files):
            ensure_not_input(output, path)
        grid = None
        if model_id and not overwrite:
            wanted = prediction_request(slide, model_id=model_id, tile=tile, stride_px=stride_px, tta=tta)
            grid = _finished_grid(h5, wanted)
        skipped = grid is not None
        if grid is None:
            bar.set_postfix_str(name)
            pred = predict_slide(slide, predictor, mpp=float(tile["mpp"]), tile_size_px=int(tile["size_px"]),
                                 context_mpp=tile.get("context_mpp"), stride_px=stride_px, tta=tta,
                                 batch_size=batch_size, channels={TUMOR_CHANNEL: TUMOR_CLASS}, progress=progress)
            grid, seconds = pred.grid, pred.seconds
            tiles = {"coords": pred.tiling.coords_xy, "probs": pred.tile_scores[:, 0]}
            grid.attrs.update(model_checkpoint_sha256=model_id or "", **detection)
            redo_png = redo_detections = True
        else:
            committed = h5.stat().st_mtime_ns
            stale = [p for p in (png, *det_files) if not p.is_file() or p.stat().st_mtime_ns > committed]
            redo_png = png in stale
            redo_detections = bool(set(stale) & set(det_files)) or bool(attrs_differ(grid.attrs, detection))
            log.info("%s: skipped, %s records the same model and settings", path.name, h5)
        if redo_png:
            write_overlay_png(png, slide, grid, channel=TUMOR_CHANNEL)
    if redo_detections:
        dets = nms_detections(grid, channel=TUMOR_CHANNEL, threshold=nms_threshold, radius_um=nms_radius_um)
        write_detections_csv(det_files[0], dets)
        write_asap_xml(det_files[1], detections=dets)
        write_geojson(det_files[2], detections=dets)
    # The grid goes last: a grid no older than the overlay and detections vouches for them.
    if not skipped:
        write_score_grid_h5(h5, grid, tiles=tiles)
    elif redo_png or redo_detections:
        update_score_grid_attrs(h5, detection)
    feats = slide_features(grid, channel=TUMOR_CHANNEL)
    row = {"slide": name, "score": f"{feats[0]:.6f}"}
    if rf is not None:
        from cadx.tasks.camelyon16.slide_forest import forest_scores

        row["rf_score"] = f"{forest_scores(rf, feats)[0]:.6f}"
    row.update({n: f"{v:.6g}" for n, v in zip(FEATURE_NAMES, feats, strict=True)})
    return {"name": name, "score": float(feats[0]), "row": row, "seconds": seconds, "skipped": skipped}


def _finished_grid(h5: Path, wanted: dict[str, Any]) -> ScoreGrid | None:
    """The score grid in ``h5`` if it records ``wanted``, else None (missing, unreadable, other settings)."""
    if not h5.is_file():
        return None
    try:
        differ = attrs_differ(read_score_grid_attrs(h5), wanted)
        if differ:
            log.info("predicting again: %s was made with another model or settings (%s)", h5, ", ".join(differ))
            return None
        return read_score_grid_h5(h5)
    except CadxError as exc:
        log.info("predicting again: %s", exc)
        return None
