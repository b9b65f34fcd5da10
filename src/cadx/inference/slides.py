"""``cadx predict slides``: a checkpoint over many slides, every output a viewer or the challenge wants.

Per slide, in the output folder: ``<slide>.h5`` (heatmap + geometry), ``<slide>.png`` (overlay),
``<slide>.csv`` (CAMELYON16 ``prob,X,Y`` detections), ``<slide>.xml`` (ASAP) and
``<slide>.geojson`` (QuPath); for the run, ``slide_scores.csv`` (max probability and heatmap
features) and ``predict.json`` (settings and timings).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cadx.errors import CadxError
from cadx.inference.detections import FEATURE_NAMES, nms_detections, slide_features, write_detections_csv
from cadx.inference.heatmap import predict_slide, write_overlay_png
from cadx.inference.predictor import Predictor
from cadx.io.annotations import write_asap_xml, write_geojson
from cadx.io.atomic import atomic_path
from cadx.io.heatmap_h5 import write_heatmap_h5
from cadx.io.slide import open_slide

log = logging.getLogger(__name__)


@dataclass
class PredictReport:
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
    tile : dict
        The checkpoint's tile spec: ``{"mpp": ..., "size_px": ...}``.
    slide_classifier : path, optional
        A random forest from ``cadx slide-classifier fit``; adds the ``rf_score`` column.
    """
    from tqdm.auto import tqdm

    rf = None
    if slide_classifier is not None:
        from cadx.tasks.camelyon16.slide_forest import load_slide_forest

        rf = load_slide_forest(slide_classifier)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = PredictReport()
    feature_rows = []
    bar = tqdm(desc="predict", unit="tile", disable=not show_progress)
    for path in slides:
        path = Path(path)
        try:
            with open_slide(path, mpp=mpp_override) as slide:
                bar.set_postfix_str(slide.name)
                pred = predict_slide(slide, predictor, mpp=float(tile["mpp"]), tile_size_px=int(tile["size_px"]),
                                     context_mpp=tile.get("context_mpp"), stride_px=stride_px, tta=tta,
                                     batch_size=batch_size, progress=bar.update)
                hm = pred.heatmap
                write_heatmap_h5(out / f"{slide.name}.h5", hm,
                                 tiles={"coords": pred.tiling.coords_xy, "probs": pred.tile_probs})
                write_overlay_png(out / f"{slide.name}.png", slide, hm)
            dets = nms_detections(hm, threshold=nms_threshold, radius_um=nms_radius_um)
            write_detections_csv(out / f"{slide.name}.csv", dets)
            write_asap_xml(out / f"{slide.name}.xml", detections=dets)
            write_geojson(out / f"{slide.name}.geojson", detections=dets)
            feats = slide_features(hm)
            report.scores[slide.name] = float(feats[0])
            report.seconds[slide.name] = pred.seconds
            row = {"slide": slide.name, "score": f"{feats[0]:.6f}"}
            if rf is not None:
                from cadx.tasks.camelyon16.slide_forest import forest_scores

                row["rf_score"] = f"{forest_scores(rf, feats)[0]:.6f}"
            feature_rows.append({**row, **{n: f"{v:.6g}" for n, v in zip(FEATURE_NAMES, feats, strict=True)}})
        except (CadxError, ValueError) as exc:
            report.failures.append((path, str(exc)))
            log.warning("skipped %s: %s", path, exc)
    bar.close()
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
