"""``cadx predict ct``: a head-CT checkpoint over DICOM slices -> the Kaggle submission and per-study results.

``OUT/submission.csv`` is the RSNA 2019 long format: ``ID,Label`` with ``ID_<image>_<subtype>`` and six
rows per slice (the image id from the header's SOPInstanceUID). ``OUT/studies.csv`` has one row per
study: ``study,patient,slices`` and, per label, the maximum probability over the study's slices.
``OUT/predict.json`` records the model, the input recipe and the files that failed. Slices are grouped
by series and sorted by position so 2.5D neighbours are the true neighbours; an unreadable file is
reported and the others are predicted (as neighbours it is left out). Localisers (scouts) and images
whose size or orientation differ from the rest of their series are left out and reported the same way
(:func:`cadx.io.dicom.leave_out_non_slices`).
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

import numpy as np

from cadx.datasets.ct_slices import context_indices, ct_input
from cadx.errors import CheckpointError
from cadx.inference.predictor import Predictor
from cadx.io.atomic import atomic_path
from cadx.parallel.jobs import map_jobs
from cadx.tasks.rsna_ich.layout import SUBTYPES, slice_z

log = logging.getLogger(__name__)

SUBMISSION_CSV = "submission.csv"
STUDIES_CSV = "studies.csv"


@dataclass
class CtPredictReport:
    """What :func:`predict_ct` did.

    Attributes
    ----------
    submission : Path
    studies_csv : Path
    image_ids : list of str
        Slices predicted, grouped by series in position order.
    probs : ndarray, (N, 6) float32
        Sigmoid probabilities in :data:`~cadx.tasks.rsna_ich.layout.SUBTYPES` order.
    studies : dict
        ``{study uid: (patient, slices, (6,) max probabilities)}``.
    failures : list of (Path, str)
    """

    submission: Path
    studies_csv: Path
    image_ids: list[str] = field(default_factory=list)
    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 6), np.float32))
    studies: dict[str, tuple[str, int, np.ndarray]] = field(default_factory=dict)
    failures: list[tuple[Path, str]] = field(default_factory=list)


def find_dicoms(inputs: Sequence[str | Path]) -> list[Path]:
    """Files given, plus every ``*.dcm`` (any case) under the folders given, sorted per folder."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            out += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() == ".dcm")
        else:
            out.append(item)
    return out


def checkpoint_ct_input(meta: dict[str, Any], checkpoint: str | Path = "checkpoint") -> dict[str, Any]:
    """The ``ct_input`` recipe a head-CT checkpoint records (``windows``, ``context_slices``, ``image_size``,
    and ``crop``, which checkpoints from before cadx 0.3 lack: they saw the whole image, ``"none"``).

    Raises
    ------
    CheckpointError
        None recorded (not a head-CT model).
    """
    raw = meta.get("ct_input")
    if not isinstance(raw, dict) or not {"windows", "context_slices", "image_size"} <= set(raw):
        raise CheckpointError(checkpoint, "records no CT input recipe: not a head-CT model "
                              "(train one with `cadx train ct`)")
    return {"crop": "none", **raw}


def predict_ct(paths: Sequence[str | Path], predictor: Predictor, meta: dict[str, Any], out_dir: str | Path, *,
               batch_size: int = 32) -> CtPredictReport:
    """Predict each slice; write ``submission.csv``, ``studies.csv`` and ``predict.json`` under ``out_dir``.

    Parameters
    ----------
    paths : sequence of path
        DICOM slice files (see :func:`find_dicoms`).
    predictor : Predictor
        From :func:`cadx.inference.predictor.load_predictor` on a ``cadx train ct`` checkpoint.
    meta : dict
        That checkpoint's metadata (``meta["ct_input"]``).
    out_dir : path
    batch_size : int
        Slices per model call.

    Returns
    -------
    CtPredictReport

    Raises
    ------
    CheckpointError
        Not a head-CT checkpoint.
    """
    from cadx.io.dicom import leave_out_non_slices, read_ct_slice

    spec = checkpoint_ct_input(meta)
    windows = [tuple(w) for w in spec["windows"]]
    size, ctx, crop = int(spec["image_size"]), int(spec["context_slices"]), str(spec.get("crop", "none"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = CtPredictReport(submission=out / SUBMISSION_CSV, studies_csv=out / STUDIES_CSV)
    t0 = time.perf_counter()
    jobs = map_jobs(read_ct_slice, [Path(p) for p in paths])
    report.failures += [(Path(p), why) for p, why in jobs.failures]
    slices, seen = [], {}
    for p, s in jobs.done:
        if s.image_id in seen:
            report.failures.append((Path(p), f"same image id {s.image_id} as {seen[s.image_id]}"))
            continue
        seen[s.image_id] = p
        slices.append(s)
    by_series: dict[str, list] = {}
    for s in slices:
        by_series.setdefault(s.series_uid, []).append(s)
    left_out: set[int] = set()
    for members in by_series.values():  # localisers and images of another size or orientation
        kept, excluded = leave_out_non_slices(members)
        kept_ids = {id(s) for s in kept}
        left_out |= {id(s) for s in members if id(s) not in kept_ids}
        report.failures += [(Path(p), f"left out: {why}") for p, why in excluded]
    slices = [s for s in slices if id(s) not in left_out]
    context = context_indices([s.series_uid for s in slices], [slice_z(s.position_mm, s.orientation) for s in slices],
                              ctx)
    # group by series in position order
    keys = sorted(range(len(slices)), key=lambda i: (slices[i].series_uid,
                                                      slice_z(slices[i].position_mm, slices[i].orientation), i))
    rows: list[np.ndarray] = []
    for start in range(0, len(keys), batch_size):
        chunk = keys[start:start + batch_size]
        x = np.stack([ct_input([slices[j].hu for j in context[i]], windows=windows, image_size=size, crop=crop)
                      for i in chunk])
        rows.append(np.asarray(predictor.predict(x), np.float32))
    report.image_ids = [slices[i].image_id for i in keys]
    report.probs = np.concatenate(rows) if rows else np.zeros((0, len(SUBTYPES)), np.float32)
    for i, p in zip(keys, report.probs, strict=True):
        s = slices[i]
        patient, n, best = report.studies.get(s.study_uid, (s.patient_id, 0, np.zeros(len(SUBTYPES), np.float32)))
        report.studies[s.study_uid] = (patient, n + 1, np.maximum(best, p))
    write_submission(report.submission, report.image_ids, report.probs)
    with atomic_path(report.studies_csv) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["study", "patient", "slices", *SUBTYPES])
        for study, (patient, n, best) in report.studies.items():
            w.writerow([study, patient, n, *(f"{v:.6f}" for v in best)])
    with atomic_path(out / "predict.json") as tmp:
        tmp.write_text(json.dumps({
            "model": predictor.config.to_dict(), "ct_input": spec, "slices": len(report.image_ids),
            "studies": len(report.studies), "seconds": time.perf_counter() - t0, "created_unix": time.time(),
            "failures": [[str(p), why] for p, why in report.failures]}, indent=2))
    return report


def write_submission(path: str | Path, image_ids: Sequence[str], probs: np.ndarray) -> Path:
    """The Kaggle long format: ``ID,Label`` with six rows per image (atomic).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_submission(pathlib.Path(tempfile.mkdtemp()) / "s.csv", ["ID_1"], np.array([[0, .1, .2, .3, .4, .5]]))
    >>> p.read_text().splitlines()[:3]
    ['ID,Label', 'ID_1_epidural,0.000000', 'ID_1_intraparenchymal,0.100000']
    """
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ID", "Label"])
        for name, row in zip(image_ids, probs, strict=True):
            for label, v in zip(SUBTYPES, row, strict=True):
                w.writerow([f"{name}_{label}", f"{v:.6f}"])
    return Path(path)
