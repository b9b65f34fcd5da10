"""``cadx predict slides``: a checkpoint over many slides, every output a viewer or the challenge wants.

Per slide, in the output folder: ``<slide>.h5`` (score grid, channel ``tumor_probability``, plus
geometry), ``<slide>.png`` (overlay), ``<slide>.csv`` (CAMELYON16 ``prob,X,Y`` detections),
``<slide>.xml`` (ASAP) and ``<slide>.geojson`` (QuPath); for the run, ``slide_scores.csv`` (max
probability and heatmap features) and ``predict.json`` (settings and timings).
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

from cadx.inference.detections import FEATURE_NAMES, nms_detections, slide_features
from cadx.inference.predictor import Predictor
from cadx.inference.slide import predict_slide
from cadx.io.annotations import write_asap_xml, write_geojson
from cadx.io.atomic import atomic_path
from cadx.io.h5 import write_score_grid_h5
from cadx.io.slide import open_slide
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
        Slide name -> maximum tile probability.
    failures : list of (Path, str)
        Slides skipped for a user error, with the message.
    seconds : dict of str to dict
        Slide name -> timings of :func:`~cadx.inference.slide.predict_slide`.
    """

    scores: dict[str, float] = field(default_factory=dict)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)


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
    show_progress: bool = True,
) -> PredictReport:
    """Predict each slide and write its outputs; carry on past bad slides.

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
    show_progress : bool
        A tqdm bar over tiles.

    Returns
    -------
    PredictReport
    """
    from tqdm.auto import tqdm

    rf = None
    if slide_classifier is not None:
        from cadx.tasks.camelyon16.slide_forest import load_slide_forest

        rf = load_slide_forest(slide_classifier)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(desc="predict", unit="tile", disable=not show_progress)

    def one(path: Path) -> dict[str, Any]:
        return _predict_one(path, predictor, out, tile=tile, stride_px=stride_px, tta=tta, batch_size=batch_size,
                            nms_threshold=nms_threshold, nms_radius_um=nms_radius_um, mpp_override=mpp_override,
                            rf=rf, bar=bar)

    try:
        jobs = map_jobs(one, [Path(p) for p in slides])
    finally:
        bar.close()
    report = PredictReport(failures=list(jobs.failures))
    feature_rows = []
    for done in jobs.results:
        report.scores[done["name"]] = done["score"]
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
                                   "seconds": report.seconds, "created_unix": time.time(),
                                   "failures": [[str(p), w] for p, w in report.failures]}, indent=2))
    return report


def _predict_one(path: Path, predictor: Predictor, out: Path, *, tile: dict[str, Any], stride_px: int | None,
                 tta: bool, batch_size: int, nms_threshold: float, nms_radius_um: float,
                 mpp_override: float | None, rf: Any, bar: Any) -> dict[str, Any]:
    """One slide's outputs; returns its name, max probability, slide_scores row and timings."""
    progress: Callable[[int], Any] = bar.update
    with open_slide(path, mpp=mpp_override) as slide:
        bar.set_postfix_str(slide.name)
        pred = predict_slide(slide, predictor, mpp=float(tile["mpp"]), tile_size_px=int(tile["size_px"]),
                             context_mpp=tile.get("context_mpp"), stride_px=stride_px, tta=tta,
                             batch_size=batch_size, channels={TUMOR_CHANNEL: TUMOR_CLASS}, progress=progress)
        grid = pred.grid
        write_score_grid_h5(out / f"{slide.name}.h5", grid,
                            tiles={"coords": pred.tiling.coords_xy, "probs": pred.tile_scores[:, 0]})
        write_overlay_png(out / f"{slide.name}.png", slide, grid, channel=TUMOR_CHANNEL)
        name = slide.name
    dets = nms_detections(grid, channel=TUMOR_CHANNEL, threshold=nms_threshold, radius_um=nms_radius_um)
    write_detections_csv(out / f"{name}.csv", dets)
    write_asap_xml(out / f"{name}.xml", detections=dets)
    write_geojson(out / f"{name}.geojson", detections=dets)
    feats = slide_features(grid, channel=TUMOR_CHANNEL)
    row = {"slide": name, "score": f"{feats[0]:.6f}"}
    if rf is not None:
        from cadx.tasks.camelyon16.slide_forest import forest_scores

        row["rf_score"] = f"{forest_scores(rf, feats)[0]:.6f}"
    row.update({n: f"{v:.6g}" for n, v in zip(FEATURE_NAMES, feats, strict=True)})
    return {"name": name, "score": float(feats[0]), "row": row, "seconds": pred.seconds}
