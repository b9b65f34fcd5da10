"""``cadx predict mil``: a MIL checkpoint over features files; heatmaps, detections, galleries, slide scores.

Score-grid channels of a MIL prediction (``<slide>.h5``), one cell per features tile:

``attention``
    The bag's softmax attention, min-max scaled per slide on the log scale: ``(log a - min log a) /
    (max log a - min log a)``, so 1 is the slide's most attended tile and 0 its least (the same
    order as the raw attention, which spans orders of magnitude; the raw values are kept per tile
    under ``tiles/attention``). Comparable within a slide, not across slides.
``instance_probability``
    The instance classifier's tumour probability (sigmoid of its logit): comparable across slides.
``detection_score``
    ``attention * slide probability``: the attention map weighed by how likely the slide holds
    tumour, so that the peaks of a slide called normal rank low. Detections (non-maximum
    suppression) and the FROC come from this channel.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cadx import __version__
from cadx.errors import CadxError, CheckpointError, InputFileError
from cadx.inference.detections import nms_detections
from cadx.io.annotations import write_asap_xml, write_geojson
from cadx.io.atomic import atomic_path, prepare_output_folder, remove_stale_parts
from cadx.io.h5 import ScoreGrid, TileFeatures, read_features_h5, write_score_grid_h5
from cadx.io.images import write_png
from cadx.io.tables import csv_rows, write_detections_csv
from cadx.tasks.camelyon16.mil import features_files

log = logging.getLogger(__name__)

#: Score-grid channels of a MIL prediction (see the module docstring).
ATTENTION_CHANNEL = "attention"
INSTANCE_CHANNEL = "instance_probability"
DETECTION_CHANNEL = "detection_score"
MIL_CHANNELS = (ATTENTION_CHANNEL, INSTANCE_CHANNEL, DETECTION_CHANNEL)
#: Non-maximum suppression radius of detections (the CAMELYON16 convention), in microns.
NMS_RADIUS_UM = 150.0


# --- prediction ----------------------------------------------------------------------------------


@dataclass
class MilPredictReport:
    """What :func:`predict_mil` did.

    Attributes
    ----------
    scores : dict of str to float
        Slide -> tumour probability, for the slides predicted now.
    failures : list of (Path, str)
        Features files left out for a user error, with the message.
    galleries : dict of str to Path
        Slide -> PNG of its top-k attended tiles (slides whose image was found).
    overlays : dict of str to Path
        Slide -> PNG of the attention over its thumbnail (slides whose image was found).
    """

    scores: dict[str, float]
    failures: list[tuple[Path, str]]
    galleries: dict[str, Path]
    overlays: dict[str, Path]


def predict_mil(ckpt: str | Path, features_dir: str | Path, out_dir: str | Path, *,
                slides_dir: str | Path | None = None, slides: Sequence[str] | None = None, top_k: int = 8,
                nms_threshold: float = 0.1, nms_radius_um: float = NMS_RADIUS_UM) -> MilPredictReport:
    """Score each bag with a MIL checkpoint and write what a viewer or the challenge wants.

    Per slide, in ``out_dir``: ``<slide>.h5`` (score grid with :data:`MIL_CHANNELS`, see the module
    docstring; per tile under ``tiles/``: ``coords``, raw ``attention``, ``instance_probability``),
    ``<slide>.csv`` (CAMELYON16 ``prob,X,Y`` detections: non-maximum suppression of
    ``detection_score``), ``<slide>.xml`` (ASAP) and ``<slide>.geojson`` (QuPath). With the slide's
    image (``slides_dir``, or the path the features file records): ``<slide>.png`` (attention over
    the thumbnail) and ``<slide>_top<k>.png`` (the ``top_k`` most attended tiles, read from the
    slide, most attended first). ``slide_scores.csv`` (``slide,score,model``: the tumour
    probability and the checkpoint's file name) gains or replaces the rows of the slides predicted
    and keeps the others, so that k fold models can fill one folder with out-of-fold predictions.

    Parameters
    ----------
    ckpt : path
        A MIL checkpoint (``cadx train mil``, or a fold's ``model.pt``).
    features_dir : path
        See :func:`features_files`.
    out_dir : path
    slides_dir : path, optional
        Folder searched (recursively) for the slides, matched by file stem.
    slides : sequence of str, optional
        Only these slides (default: every features file).
    top_k : int
        Tiles in the gallery.
    nms_threshold, nms_radius_um : float
        Detections: lowest ``detection_score`` and suppression radius.

    Returns
    -------
    MilPredictReport

    Raises
    ------
    CheckpointError
        Not a MIL checkpoint.
    CadxError
        ``slides`` names a slide without features.
    """
    from cadx.models.checkpoint import load_checkpoint
    from cadx.training.mil import bag_predict

    ckpt = Path(ckpt)
    model, meta = load_checkpoint(ckpt)
    if meta["model"].get("kind") != "mil":
        raise CheckpointError(ckpt, f"a {meta['model'].get('kind')!r} model, not a MIL model (cadx train mil)")
    files = features_files(features_dir)
    if slides is not None:
        wanted = [s.lower() for s in slides]
        missing = [s for s in wanted if s not in files]
        if missing:
            raise CadxError(f"{features_dir}: no features for {', '.join(missing[:5])}")
        files = {s: files[s] for s in wanted}
    images = _slide_images(slides_dir)
    out = prepare_output_folder(out_dir)
    remove_stale_parts(out)
    report = MilPredictReport({}, [], {}, {})
    for name, path in files.items():
        try:
            feats = read_features_h5(path)
            if feats.features.shape[1] != model.cadx_config.in_chans:
                raise InputFileError(path, f"{feats.features.shape[1]}-d features, but {ckpt.name} takes "
                                           f"{model.cadx_config.in_chans}-d (another encoder?)")
            pred = bag_predict(model, feats.features)
            slide_path = images.get(name) or _recorded_slide(feats.attrs)
            result = _write_slide(out, name, feats, pred, slide_path, ckpt=ckpt, meta=meta, top_k=top_k,
                                  nms_threshold=nms_threshold, nms_radius_um=nms_radius_um)
        except CadxError as exc:
            report.failures.append((path, str(exc)))
            log.warning("%s", exc)
            continue
        report.scores[name] = pred["probability"]
        report.overlays.update(result.get("overlay", {}))
        report.galleries.update(result.get("gallery", {}))
    _merge_slide_scores(out / "slide_scores.csv", report.scores, ckpt.name)
    return report



def mil_grid(coords_xy: np.ndarray, *, attention: np.ndarray, instance_probability: np.ndarray,
             slide_probability: float, tile_size_level0_px: int, slide_size_wh: tuple[int, int], mpp: float,
             attrs: dict[str, Any] | None = None) -> ScoreGrid:
    """The score grid of one bag: :data:`MIL_CHANNELS` over non-overlapping tiles (see the module docstring).

    Parameters
    ----------
    coords_xy : ndarray of int, shape (N, 2)
        Level-0 top-left corners of the bag's tiles, on a grid of step ``tile_size_level0_px``.
    attention : ndarray of float, shape (N,)
        Softmax attention (positive, summing to one).
    instance_probability : ndarray of float, shape (N,)
    slide_probability : float
    tile_size_level0_px : int
    slide_size_wh : (int, int)
        Level-0 slide size.
    mpp : float
        Level-0 um/px.
    attrs : dict, optional
        Provenance attributes of the grid.

    Returns
    -------
    ScoreGrid
        NaN where no tile was in the bag.

    Examples
    --------
    Three tiles of 100 px on a 300 x 200 slide; attention 0.5, 0.25, 0.25 scales to 1, 0, 0:

    >>> g = mil_grid(np.array([[0, 0], [100, 0], [200, 100]]), attention=np.array([0.5, 0.25, 0.25]),
    ...              instance_probability=np.array([0.9, 0.2, 0.1]), slide_probability=0.8,
    ...              tile_size_level0_px=100, slide_size_wh=(300, 200), mpp=0.5)
    >>> g.shape_hw, g.channel("attention").tolist()
    ((2, 3), [[1.0, 0.0, nan], [nan, nan, 0.0]])
    >>> [round(float(v), 2) for v in g.channel("detection_score")[0, :2]]
    [0.8, 0.0]
    """
    coords = np.asarray(coords_xy, np.int64).reshape(-1, 2)
    stride = int(tile_size_level0_px)
    rows_n = max(0, (int(slide_size_wh[1]) - stride) // stride + 1)
    cols_n = max(0, (int(slide_size_wh[0]) - stride) // stride + 1)
    att = scale_attention(np.asarray(attention, np.float64))
    values = np.full((len(MIL_CHANNELS), rows_n, cols_n), np.nan, np.float32)
    r, c = coords[:, 1] // stride, coords[:, 0] // stride
    values[0, r, c] = att
    values[1, r, c] = np.asarray(instance_probability, np.float64)
    values[2, r, c] = att * float(slide_probability)
    return ScoreGrid(values, MIL_CHANNELS, stride_level0_px=stride, tile_size_level0_px=stride,
                     slide_size_wh=(int(slide_size_wh[0]), int(slide_size_wh[1])), mpp=float(mpp),
                     attrs=dict(attrs or {}))


def scale_attention(attention: np.ndarray) -> np.ndarray:
    """Softmax attention -> [0, 1] by min-max scaling of its logarithm (all 1 when the values are equal).

    Examples
    --------
    >>> scale_attention(np.array([0.7, 0.2, 0.1])).round(3).tolist()
    [1.0, 0.356, 0.0]
    >>> scale_attention(np.array([0.5, 0.5])).tolist()
    [1.0, 1.0]
    """
    log_a = np.log(np.maximum(np.asarray(attention, np.float64), np.finfo(np.float64).tiny))
    span = float(log_a.max() - log_a.min()) if log_a.size else 0.0
    if span <= 0:
        return np.ones_like(log_a)
    return (log_a - log_a.min()) / span


def _slide_images(slides_dir: str | Path | None) -> dict[str, Path]:
    """Lower-case stem -> slide file under ``slides_dir`` (searched recursively)."""
    if slides_dir is None:
        return {}
    from cadx.wsi.tiling import find_slides

    if not Path(slides_dir).is_dir():
        raise InputFileError(Path(slides_dir), "no such slides folder")
    return {p.stem.lower(): p for p in find_slides([slides_dir])}


def _recorded_slide(attrs: Mapping[str, Any]) -> Path | None:
    """The slide file a features file records, if it is still there."""
    for key in ("slide_path", "slide"):
        value = attrs.get(key)
        if isinstance(value, str) and value and Path(value).is_file():
            return Path(value)
    return None


def _geometry(feats: TileFeatures, slide_path: Path | None, path: Path) -> tuple[int, tuple[int, int], float]:
    """Tile side (level-0 px), slide size and level-0 mpp: from the features file, else from the slide."""
    a = feats.attrs
    size = a.get("tile_size_level0_px")
    wh, mpp = a.get("slide_wh") or a.get("slide_size_wh"), a.get("level0_mpp")
    if (wh is None or mpp is None) and slide_path is not None:
        from cadx.io.slide import open_slide

        with open_slide(slide_path) as slide:
            wh, mpp = wh or slide.dimensions, mpp or slide.mpp
    if size is None:  # a file CLAM wrote: the smallest step between tile corners
        steps = np.diff(np.unique(feats.coords_xy[:, 0]))
        size = int(steps.min()) if steps.size else None
    if size is None or wh is None or mpp is None:
        raise InputFileError(path, "records no tile size, slide size or mpp (give the slides with --slides)")
    return int(size), (int(wh[0]), int(wh[1])), float(mpp)


def _write_slide(out: Path, name: str, feats: TileFeatures, pred: dict[str, Any], slide_path: Path | None, *,
                 ckpt: Path, meta: dict[str, Any], top_k: int, nms_threshold: float,
                 nms_radius_um: float) -> dict[str, dict[str, Path]]:
    """One slide's grid, detections and (with its image) overlay and gallery."""
    size, wh, mpp = _geometry(feats, slide_path, Path(feats.attrs.get("features_path", name)))
    attrs = {"slide": name, "model": meta["model"]["architecture"], "model_checkpoint": ckpt.name,
             "model_checkpoint_sha256": meta.get("checkpoint_sha256", ""),
             "slide_probability": float(pred["probability"]), "attention_scaling": "min-max of log attention",
             "nms_threshold": float(nms_threshold), "nms_radius_um": float(nms_radius_um), "cadx_version": __version__,
             **{f"features_{k}": v for k, v in feats.attrs.items()
                if k in ("encoder", "weights", "mpp", "tile_size_px") and v is not None}}
    grid = mil_grid(feats.coords_xy, attention=pred["attention"], instance_probability=pred["instance"],
                    slide_probability=pred["probability"], tile_size_level0_px=size, slide_size_wh=wh, mpp=mpp,
                    attrs=attrs)
    dets = nms_detections(grid, channel=DETECTION_CHANNEL, threshold=nms_threshold, radius_um=nms_radius_um)
    write_detections_csv(out / f"{name}.csv", dets)
    write_asap_xml(out / f"{name}.xml", detections=dets)
    write_geojson(out / f"{name}.geojson", detections=dets)
    written: dict[str, dict[str, Path]] = {}
    if slide_path is not None:
        from cadx.io.slide import open_slide
        from cadx.wsi.preview import write_overlay_png

        with open_slide(slide_path, mpp=mpp) as slide:
            png = write_overlay_png(out / f"{name}.png", slide, grid, channel=ATTENTION_CHANNEL, max_size_px=600)
            order = np.argsort(-np.asarray(pred["attention"]), kind="stable")[:top_k]
            gallery = _gallery(slide, feats.coords_xy[order], size, feats.attrs.get("tile_size_px"))
            written = {"overlay": {name: png}, "gallery": {name: write_png(out / f"{name}_top{top_k}.png", gallery)}}
    write_score_grid_h5(out / f"{name}.h5", grid, tiles={  # last: a grid vouches for the files beside it
        "coords": feats.coords_xy, "attention": np.asarray(pred["attention"], np.float32),
        "instance_probability": np.asarray(pred["instance"], np.float32)})
    return written


def _gallery(slide: Any, corners_xy: np.ndarray, size_level0_px: int, tile_size_px: int | None, *,
             side_px: int = 128, gap_px: int = 4) -> np.ndarray:
    """The tiles at ``corners_xy`` (as the encoder saw them, shown ``side_px`` wide) in one white-spaced row."""
    from PIL import Image

    from cadx.io.resolution import plan_read, read_tile

    plan = plan_read(slide, slide.mpp * size_level0_px / tile_size_px, int(tile_size_px)) if tile_size_px else None
    strip = np.full((side_px, max(1, len(corners_xy)) * (side_px + gap_px) - gap_px, 3), 255, np.uint8)
    for i, (x, y) in enumerate(np.asarray(corners_xy, np.int64)):
        tile = (read_tile(slide, (int(x), int(y)), plan) if plan is not None
                else slide.read_region((int(x), int(y)), 0, (size_level0_px, size_level0_px)))
        tile = np.asarray(Image.fromarray(tile).resize((side_px, side_px), Image.Resampling.BILINEAR))
        strip[:, i * (side_px + gap_px): i * (side_px + gap_px) + side_px] = tile
    return strip


def _merge_slide_scores(path: Path, scores: Mapping[str, float], model: str) -> None:
    """Write ``slide,score,model`` rows for ``scores``, keeping the rows of other slides already in ``path``."""
    rows: dict[str, list[str]] = {}
    if path.is_file():
        for i, (_, row) in enumerate(csv_rows(path, what="slide-scores")):
            if i and row and row[0]:
                rows[row[0]] = (row + ["", ""])[:3]
    rows.update({n: [n, f"{p:.6f}", model] for n, p in scores.items()})
    if not rows:
        return
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slide", "score", "model"])
        w.writerows(rows[n] for n in sorted(rows))
