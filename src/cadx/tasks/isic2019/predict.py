"""``cadx predict derm``: a dermoscopy checkpoint over many images -> the ISIC submission CSV.

``OUT/predictions.csv`` has the ISIC 2019 submission layout: ``image`` (the file name without its
suffix) and one probability column per class, in the checkpoint's class order; probabilities are
softmax outputs with the checkpoint's temperature applied. ``OUT/predict.json`` records the model,
the preprocessing, the temperature and the images that failed. Images are read and preprocessed in a
background thread while the model runs on the previous batch; an image that cannot be read is
reported and the others are predicted.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import CheckpointError, ConfigError, OutputPathError
from cadx.inference.predictor import Predictor
from cadx.io.atomic import atomic_path, ensure_not_input, prepare_output_folder
from cadx.io.images import read_rgb
from cadx.parallel.jobs import JobReport, map_jobs
from cadx.parallel.prefetch import prefetch_map
from cadx.preprocessing.images import ImagePreprocess

log = logging.getLogger(__name__)

PREDICTIONS_CSV = "predictions.csv"
PREDICT_JSON = "predict.json"
#: The files :func:`predict_images` writes into its output folder.
OUTPUT_FILES = (PREDICTIONS_CSV, PREDICT_JSON)


@dataclass
class DermPredictReport:
    """What :func:`predict_images` did.

    Attributes
    ----------
    csv_path : Path
        ``OUT/predictions.csv``.
    class_names : tuple of str
        The probability columns, in order.
    names : list of str
        Images predicted (``image`` column), in input order.
    probs : ndarray, (N, K) float32
        Calibrated probabilities, one row per name.
    temperature : float
    failures : list of (Path, str)
        Images skipped for a user error, with the message.
    """

    csv_path: Path
    class_names: tuple[str, ...]
    names: list[str] = field(default_factory=list)
    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    temperature: float = 1.0
    failures: list[tuple[Path, str]] = field(default_factory=list)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(z / T)`` from ``softmax(z)``: ``p ** (1 / T)`` renormalised (exact, any predictor).

    Examples
    --------
    >>> p = np.array([[0.25, 0.75]])
    >>> [round(float(v), 3) for v in apply_temperature(p, 1.0)[0]]
    [0.25, 0.75]
    >>> [round(float(v), 3) for v in apply_temperature(p, 2.0)[0]]  # softmax(log([1, 3]) / 2)
    [0.366, 0.634]
    """
    if temperature == 1.0:
        return np.asarray(probs, np.float32)
    with np.errstate(divide="ignore"):
        z = np.log(np.asarray(probs, np.float64)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def checkpoint_preprocess(meta: dict[str, Any], checkpoint: str | Path = "checkpoint") -> ImagePreprocess:
    """The :class:`~cadx.preprocessing.images.ImagePreprocess` a dermoscopy checkpoint records.

    Raises
    ------
    CheckpointError
        The checkpoint records no ``preprocess`` (not a dermoscopy model), or an invalid one.
    """
    raw = meta.get("preprocess")
    if not isinstance(raw, dict):
        raise CheckpointError(checkpoint, "records no image preprocessing: not a dermoscopy model "
                              "(train one with `cadx train derm`)")
    try:
        return ImagePreprocess.from_dict(raw)
    except ConfigError as exc:
        raise CheckpointError(checkpoint, f"invalid preprocessing record: {exc}") from None


def check_outputs(paths: Sequence[str | Path], out_dir: str | Path) -> Path:
    """Refuse, before any work, an output folder that is a file or an output file that is an input.

    Returns
    -------
    Path
        ``out_dir`` (not created here).

    Raises
    ------
    OutputPathError
        ``out_dir`` is a file, or one of :data:`OUTPUT_FILES` in it is one of ``paths``.

    Examples
    --------
    >>> check_outputs(["a.jpg"], "out")
    PosixPath('out')
    >>> check_outputs(["out/predict.json"], "out")
    Traceback (most recent call last):
    ...
    cadx.errors.OutputPathError: out/predict.json: is also an input (out/predict.json); choose another output path
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputPathError(out, "is a file, not a folder")
    for name in OUTPUT_FILES:
        ensure_not_input(out / name, *paths)
    return out


def checkpoint_temperature(meta: dict[str, Any]) -> float:
    """The calibration temperature a checkpoint records (1.0 when none)."""
    t = (meta.get("calibration") or {}).get("temperature", 1.0)
    return float(t) if isinstance(t, (int, float)) and t > 0 else 1.0


def predict_images(
    paths: Sequence[str | Path],
    predictor: Predictor,
    meta: dict[str, Any],
    out_dir: str | Path,
    *,
    batch_size: int = 32,
    show_progress: bool = True,
) -> DermPredictReport:
    """Predict each image and write ``OUT/predictions.csv`` and ``OUT/predict.json``.

    Parameters
    ----------
    paths : sequence of path
        Image files (see :func:`cadx.io.images.find_images`).
    predictor : Predictor
        From :func:`cadx.inference.predictor.load_predictor` on a checkpoint of ``cadx train derm``.
    meta : dict
        That checkpoint's metadata: ``meta["preprocess"]``, ``meta["calibration"]`` and the class
        names in ``meta["model"]``.
    out_dir : path
    batch_size : int
        Images per model call.
    show_progress : bool
        A tqdm bar over images.

    Returns
    -------
    DermPredictReport

    Raises
    ------
    CheckpointError
        The checkpoint is not a dermoscopy model (no preprocessing record).
    OutputPathError
        ``out_dir`` is a file or cannot be created, or an output file is one of ``paths``.
    """
    from tqdm.auto import tqdm

    preprocess = checkpoint_preprocess(meta)
    temperature = checkpoint_temperature(meta)
    config = predictor.config
    classes = tuple(config.class_names) or tuple(f"class_{i}" for i in range(config.num_classes))
    out = prepare_output_folder(check_outputs(paths, out_dir))
    report = DermPredictReport(csv_path=out / PREDICTIONS_CSV, class_names=classes, temperature=temperature)
    items, seen = [], {}
    for p in map(Path, paths):
        if p.stem in seen:
            report.failures.append((p, f"another input has the same image name {p.stem!r} ({seen[p.stem]})"))
        else:
            seen[p.stem] = p
            items.append(p)
    chunks = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    load = partial(_load_chunk, preprocess=preprocess)
    rows: list[np.ndarray] = []
    t0 = time.perf_counter()
    with tqdm(total=len(items), desc="predict", unit="image", disable=not show_progress) as bar:
        with closing(prefetch_map(load, chunks, workers=1, ahead=2)) as results:
            for _, jobs in results:
                report.failures += [(Path(p), why) for p, why in jobs.failures]
                if jobs.done:
                    probs = predictor.predict(np.stack(jobs.results))
                    rows.append(apply_temperature(probs, temperature))
                    report.names += [Path(p).stem for p, _ in jobs.done]
                bar.update(len(jobs.done) + len(jobs.failures))
    seconds = time.perf_counter() - t0
    report.probs = np.concatenate(rows) if rows else np.zeros((0, len(classes)), np.float32)
    write_predictions_csv(report.csv_path, report.names, report.probs, classes)
    with atomic_path(out / PREDICT_JSON) as tmp:
        tmp.write_text(json.dumps({
            "model": config.to_dict(), "preprocess": preprocess.to_dict(), "temperature": temperature,
            "images": len(report.names), "seconds": seconds, "batch_size": batch_size, "created_unix": time.time(),
            "failures": [[str(p), why] for p, why in report.failures]}, indent=2))
    return report


def write_predictions_csv(path: str | Path, names: Sequence[str], probs: np.ndarray,
                          class_names: Sequence[str]) -> Path:
    """The ISIC submission layout: ``image,<class>,...`` with probabilities to 6 decimals (atomic).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_predictions_csv(pathlib.Path(tempfile.mkdtemp()) / "p.csv", ["ISIC_1"],
    ...                           np.array([[0.25, 0.75]]), ["MEL", "NV"])
    >>> p.read_text().splitlines()
    ['image,MEL,NV', 'ISIC_1,0.250000,0.750000']
    """
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", *class_names])
        for name, row in zip(names, probs, strict=True):
            w.writerow([name, *(f"{v:.6f}" for v in row)])
    return Path(path)


def _load_chunk(chunk: list[Path], *, preprocess: ImagePreprocess) -> JobReport:
    """Read and preprocess a batch of images; unreadable ones become failures."""
    return map_jobs(partial(_load_one, preprocess=preprocess), chunk)


def _load_one(path: Path, *, preprocess: ImagePreprocess) -> np.ndarray:
    return preprocess(read_rgb(path))
