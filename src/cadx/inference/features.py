"""Tile features for attention MIL: tissue tiles of a slide through a frozen encoder, one HDF5 per slide.

:func:`extract_slide_features` tiles a slide and reads its tiles exactly as slide inference does
(:func:`~cadx.inference.slide.read_tile_batches`: threads read ahead of the model), then keeps
``predictor.embed`` of every tile. :func:`extract_features` runs it over a cohort into CLAM's
layout: ``<out>/h5_files/<slide>.h5`` (``features`` N x D, ``coords`` N x 2, see
:func:`~cadx.io.h5.write_features_h5`) and ``<out>/pt_files/<slide>.pt`` (the features as a torch
tensor, read with ``torch.load(weights_only=True)``). :func:`load_encoder` builds the encoder's
predictor, on ONNX Runtime by default on CPU.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from cadx import __version__
from cadx.errors import CadxError, ConfigError
from cadx.inference.predictor import Predictor, TorchPredictor, cached_onnx_predictor
from cadx.inference.slide import read_tile_batches
from cadx.io.atomic import atomic_path, ensure_not_input, prepare_output_folder, remove_stale_parts
from cadx.io.digest import file_sha256
from cadx.io.h5 import TileFeatures, attrs_differ, read_features_attrs, read_features_h5, write_features_h5
from cadx.io.slide import SlideReader, open_slide
from cadx.models.device import resolve_device
from cadx.models.factory import DEFAULT_ENCODER, RESNET50_TRUNC, create_model
from cadx.models.weights import WeightsUnavailableError, builtin_weights_file, find_local_weights, how_to_provide
from cadx.parallel.jobs import JobReport, map_jobs
from cadx.wsi.tiling import tile_slide

log = logging.getLogger(__name__)

#: Sub-folders of an output folder, as CLAM names them, and the one holding exported encoders.
H5_DIR, PT_DIR, ENCODER_CACHE_DIR = "h5_files", "pt_files", "encoders"


def extract_slide_features(
    slide: SlideReader,
    predictor: Predictor,
    *,
    mpp: float,
    tile_size_px: int,
    min_tissue: float = 0.25,
    batch_size: int = 16,
    read_workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> TileFeatures:
    """The encoder's features of every tissue tile of a slide.

    Parameters
    ----------
    slide : SlideReader
    predictor : Predictor
        ``embed((N, H, W, C) uint8) -> (N, D)``; an encoder from :func:`load_encoder`, or any
        classifier (its pre-logit features).
    mpp, tile_size_px : float, int
        Tile resolution (um/px) and side (px); tiles do not overlap.
    min_tissue : float
        Minimum tissue fraction of a tile.
    batch_size : int
        Tiles per ``embed`` call.
    read_workers : int, optional
        Reader threads (see :func:`~cadx.inference.slide.read_tile_batches`).
    progress : callable, optional
        Called with the number of tiles done after each batch.

    Returns
    -------
    TileFeatures
        ``features[i]`` is the embedding of the tile at level-0 ``coords_xy[i]`` (top-left);
        ``attrs`` record the slide, tiling and encoder, and the time taken (``seconds``, of which
        ``seconds_tiling`` for tissue detection and the tile grid). A slide without tissue gives N = 0.

    Examples
    --------
    >>> from cadx.io.slide import ArraySlide
    >>> from cadx.models.config import ModelConfig
    >>> class MeanColour:  # a stand-in encoder: D = 3, the tile's mean RGB
    ...     config = ModelConfig("mean_rgb", 3, activation="none", kind="encoder")
    ...     def embed(self, x):
    ...         return x.mean(axis=(1, 2)).astype(np.float32)
    >>> img = np.full((512, 1024, 3), 255, np.uint8)
    >>> img[:, 512:] = (200, 120, 180)  # tissue on the right half
    >>> tf = extract_slide_features(ArraySlide(img, mpp=0.5, min_level_size_px=64), MeanColour(), mpp=2.0,
    ...                             tile_size_px=64)
    >>> tf.coords_xy.tolist()
    [[512, 0], [768, 0], [512, 256], [768, 256]]
    >>> tf.features.shape, tf.features[0].tolist()
    ((4, 3), [200.0, 120.0, 180.0])
    >>> tf.attrs["tile_size_level0_px"], tf.attrs["feature_dim"], tf.attrs["encoder"]
    (256, 3, 'mean_rgb')
    """
    t0 = time.perf_counter()
    tiling = tile_slide(slide, target_mpp=mpp, tile_size_px=tile_size_px, min_tissue=min_tissue)
    t_tiling = time.perf_counter() - t0
    coords = tiling.coords_xy
    features: np.ndarray | None = None
    reads = read_tile_batches(slide, tiling, batch_size=batch_size, read_workers=read_workers)
    with closing(reads) as batches:  # readers stopped before the caller can close the slide
        for sl, tiles in batches:
            out = np.asarray(predictor.embed(tiles), np.float32)
            if features is None:
                features = np.empty((len(coords), out.shape[1]), np.float32)
            features[sl] = out
            if progress is not None:
                progress(len(tiles))
    if features is None:  # no tissue: the feature length comes from one blank tile
        blank = np.full((1, tile_size_px, tile_size_px, predictor.config.in_chans), 255, np.uint8)
        features = np.zeros((0, predictor.embed(blank).shape[1]), np.float32)
    cfg = predictor.config
    plan = tiling.plan
    attrs = {"slide": slide.name, "slide_path": str(slide.path), "slide_wh": [int(v) for v in slide.dimensions],
             "level0_mpp": float(slide.mpp), "mpp": float(mpp), "tile_size_px": int(tile_size_px),
             "tile_size_level0_px": int(plan.size_level0_px), "level": int(plan.level),
             "min_tissue": float(min_tissue), "encoder": cfg.architecture, "weights": cfg.weights,
             "feature_dim": int(features.shape[1]), "cadx_version": __version__, "created_unix": time.time(),
             "seconds": time.perf_counter() - t0, "seconds_tiling": t_tiling}
    return TileFeatures(features=features, coords_xy=coords.astype(np.int64, copy=False), attrs=attrs)


def features_request(slide_path: str | Path, *, encoder: str, encoder_id: str, mpp: float, tile_size_px: int,
                     min_tissue: float, mpp_override: float | None = None) -> dict[str, Any]:
    """The attributes that decide a slide's features: a file recording these can be reused.

    The slide enters by its file size (no need to open it), the encoder by its name and
    ``encoder_id`` (from :func:`load_encoder`: weights and config).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.tif"
    >>> _ = p.write_bytes(b"12345")
    >>> features_request(p, encoder="resnet50_trunc", encoder_id="ab12", mpp=0.5, tile_size_px=224, min_tissue=0.25)
    ... # doctest: +NORMALIZE_WHITESPACE
    {'encoder': 'resnet50_trunc', 'encoder_id': 'ab12', 'mpp': 0.5, 'tile_size_px': 224, 'min_tissue': 0.25,
     'mpp_override': -1.0, 'slide_file_bytes': 5}
    """
    return {"encoder": encoder, "encoder_id": encoder_id, "mpp": float(mpp), "tile_size_px": int(tile_size_px),
            "min_tissue": float(min_tissue), "mpp_override": float(mpp_override or -1.0),
            "slide_file_bytes": int(Path(slide_path).stat().st_size)}


def extract_features(
    slides: Sequence[str | Path],
    predictor: Predictor,
    out_dir: str | Path,
    *,
    mpp: float,
    tile_size_px: int,
    min_tissue: float = 0.25,
    batch_size: int = 16,
    encoder_id: str | None = None,
    mpp_override: float | None = None,
    overwrite: bool = False,
    write_pt: bool = True,
    backend: str = "serial",
    progress: Callable[[int], None] | None = None,
) -> JobReport:
    """Features of every slide into CLAM's layout; skip finished slides, carry on past bad ones.

    Per slide ``<out_dir>/h5_files/<slide>.h5`` (:func:`~cadx.io.h5.write_features_h5`) and, with
    ``write_pt``, ``<out_dir>/pt_files/<slide>.pt`` (``torch.save`` of the (N, D) float32 tensor),
    both atomic: a killed run leaves no half-written file (``.*.part`` leftovers of a SIGKILL are
    removed at the start). The ``.pt`` is written first, the ``.h5`` last: a slide is finished when
    its ``.h5`` records the same request (:func:`features_request`: encoder and ``encoder_id``,
    mpp, tile size, tissue threshold, slide file size) and its ``.pt`` is no newer than it. Finished
    slides are skipped without being opened; a finished ``.h5`` whose ``.pt`` is missing gets the
    ``.pt`` back from its features, without running the encoder.

    Parameters
    ----------
    slides : sequence of path
    predictor : Predictor
    out_dir : path
    mpp, tile_size_px, min_tissue, batch_size
        See :func:`extract_slide_features`.
    encoder_id : str, optional
        What identifies the encoder's weights and config (:func:`load_encoder` returns it);
        without it nothing is skipped.
    mpp_override : float, optional
        Level-0 um/px for slides that do not record it.
    overwrite : bool
        Extract every slide again.
    write_pt : bool
        Also write the ``.pt`` files (without: a ``.pt`` of a slide extracted now is removed, as it
        would hold other features).
    backend : {"serial", "process"}
        See :func:`~cadx.parallel.jobs.map_jobs` (``"process"`` needs a picklable predictor; on CPU
        one slide at a time with every core given to the encoder is the fast choice).
    progress : callable, optional
        Called with the number of tiles done after each batch (serial backend).

    Returns
    -------
    JobReport
        ``done``: ``(slide path, {"name", "h5", "pt", "tiles", "seconds", "reused"})``, ``reused``
        when only the ``.pt`` was rebuilt; ``skipped``: slides already finished; ``failures``:
        ``(slide path, message)`` for slides that could not be read.

    Raises
    ------
    OutputPathError
        ``out_dir`` is a file or cannot be created.
    """
    out = prepare_output_folder(out_dir)
    for sub in (H5_DIR, PT_DIR):
        remove_stale_parts(out / sub)
    settings = {"mpp": mpp, "tile_size_px": tile_size_px, "min_tissue": min_tissue, "mpp_override": mpp_override}

    def wanted(path: Path) -> dict[str, Any] | None:
        if encoder_id is None or overwrite:
            return None
        return features_request(path, encoder=predictor.config.architecture, encoder_id=encoder_id, **settings)

    def finished(path: Path) -> bool:
        h5, pt = _outputs(out, path.stem)
        try:
            request = wanted(path)
        except OSError:  # a missing slide is reported by its job
            return False
        return (request is not None and _matches(h5, request)
                and (not write_pt or (pt.is_file() and pt.stat().st_mtime_ns <= h5.stat().st_mtime_ns)))

    job = partial(_extract_one, predictor=predictor, out=out, wanted=wanted, write_pt=write_pt,
                  batch_size=batch_size, progress=progress, **settings)
    return map_jobs(job, [Path(p) for p in slides], backend=backend, skip_done=finished)


def _outputs(out: Path, name: str) -> tuple[Path, Path]:
    return out / H5_DIR / f"{name}.h5", out / PT_DIR / f"{name}.pt"


def _matches(h5: Path, request: dict[str, Any]) -> bool:
    """Whether ``h5`` is a complete features file recording ``request``."""
    if not h5.is_file():
        return False
    try:
        recorded, _ = read_features_attrs(h5)
    except CadxError as exc:
        log.info("extracting again: %s", exc)
        return False
    differ = attrs_differ(recorded, request)
    if differ:
        log.info("extracting again: %s was made with other settings (%s)", h5, ", ".join(differ))
    return not differ


def _extract_one(path: Path, *, predictor: Predictor, out: Path, wanted: Callable[[Path], dict[str, Any] | None],
                 write_pt: bool, mpp: float, tile_size_px: int, min_tissue: float, mpp_override: float | None,
                 batch_size: int, progress: Callable[[int], None] | None) -> dict[str, Any]:
    """One slide of :func:`extract_features`."""
    with open_slide(path, mpp=mpp_override) as slide:
        h5, pt = _outputs(out, slide.name)
        for output in (h5, pt):
            ensure_not_input(output, path)
        request = wanted(path)
        if request is not None and _matches(h5, request):  # only the .pt is missing or stale
            tf = read_features_h5(h5)
            reused = True
        else:
            tf = extract_slide_features(slide, predictor, mpp=mpp, tile_size_px=tile_size_px, min_tissue=min_tissue,
                                        batch_size=batch_size, progress=progress)
            tf.attrs.update(request or {}, mpp_override=float(mpp_override or -1.0),
                            slide_file_bytes=int(path.stat().st_size))
            reused = False
    if write_pt:
        _write_pt(pt, tf.features)
    elif not reused:  # a .pt of earlier features would pass for these
        pt.unlink(missing_ok=True)
    if not reused:  # last: an .h5 no older than the .pt vouches for it
        write_features_h5(h5, tf.features, tf.coords_xy, tf.attrs)
    log.info("%s: %d tiles -> %s", path.name, len(tf), h5)
    return {"name": h5.stem, "h5": h5, "pt": pt if write_pt else None, "tiles": len(tf),
            "seconds": 0.0 if reused else float(tf.attrs["seconds"]), "reused": reused}


def _write_pt(path: Path, features: np.ndarray) -> Path:
    """``torch.save`` of the features as a float32 tensor (atomic); plain tensor data, no pickled objects."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(torch.from_numpy(np.ascontiguousarray(features, np.float32)), tmp)
    return path


def load_encoder(
    name: str = DEFAULT_ENCODER,
    *,
    weights: str | Path | None = None,
    input_size: int | None = None,
    backend: str = "auto",
    cache_dir: str | Path | None = None,
    device: str | None = None,
) -> tuple[Predictor, str]:
    """A predictor for a frozen encoder, and the ``encoder_id`` that identifies it.

    Parameters
    ----------
    name : str
        A timm backbone, or :data:`~cadx.models.factory.RESNET50_TRUNC` (CLAM's 1024-d ResNet-50).
    weights : path, optional
        A weights file (``.pth``/``.safetensors`` state dict); default: the offline weights
        (packaged for ``tf_efficientnet_lite0``, else ``$CADX_WEIGHTS_DIR/<name>.pth``).
    input_size : int, optional
        Tile side the encoder will see (the ONNX graph is exported for it); default: the
        architecture's.
    backend : {"auto", "torch", "onnx"}
        ``auto``: PyTorch on a CUDA device; else ONNX Runtime when it is installed, else PyTorch.
    cache_dir : path, optional
        Where the ONNX export is kept (``<name>-<id>.onnx``, reused while the id matches); needed
        for the ONNX backend.
    device : str, optional
        Torch device (default: CUDA when present).

    Returns
    -------
    predictor : Predictor
    encoder_id : str
        SHA-256 of the weights file's SHA-256 and the model config (input size, mean, std): equal
        ids give equal features (:func:`extract_features` skips on it).

    Raises
    ------
    WeightsUnavailableError
        No weights given and none offline, or a file that does not fit ``name``.
    ConfigError
        ``name`` is not an encoder cadx can build.
    """
    import timm

    if name != RESNET50_TRUNC and not timm.is_model(name):
        raise ConfigError(f"unknown encoder '{name}' (not a timm model name, nor {RESNET50_TRUNC})")
    source = Path(weights) if weights is not None else builtin_weights_file(name) or find_local_weights(name)
    if source is None:
        raise WeightsUnavailableError(how_to_provide(name, option="--weights FILE"))
    model = create_model(name, kind="encoder", pretrained=source, input_size=input_size)
    encoder_id = hashlib.sha256(f"{file_sha256(source)}\n{json.dumps(model.cadx_config.to_dict(), sort_keys=True)}"
                                .encode()).hexdigest()
    device = resolve_device(device or "auto")
    if backend == "auto":
        has_onnx = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
        backend = "onnx" if has_onnx and not device.startswith("cuda") else "torch"
    if backend == "torch":
        return TorchPredictor(model, device=device), encoder_id
    if backend != "onnx":
        raise ValueError(f"backend must be auto, torch or onnx, got {backend!r}")
    if cache_dir is None:
        raise ValueError("the ONNX backend needs a cache_dir for the exported encoder")
    onnx_path = Path(cache_dir) / f"{name}-{encoder_id[:16]}.onnx"
    return cached_onnx_predictor(model, onnx_path, digest=encoder_id), encoder_id
