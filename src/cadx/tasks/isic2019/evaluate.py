"""``cadx evaluate derm``: score ISIC-style class probabilities against the ISIC 2019 ground truth.

Predictions: an ISIC submission CSV (what ``cadx predict derm`` writes as ``predictions.csv``):
``image`` then one probability column per predicted class, e.g. ``image,MEL,NV,BCC``.
Ground truth: ``ISIC_2019_Training_GroundTruth.csv`` (``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK``,
one-hot, ``1.0`` / ``0.0``), or any CSV in that layout; its class columns are ISIC 2019 classes or
prediction columns (a model trained on a folder per class has its own class names).

The evaluation runs over the predicted classes: an image whose true class is not one of them (an
AK when the model knows MEL, NV and BCC) cannot be right, so it is counted, reported and left out.
The predicted class is the arg-max over the evaluated columns. Image names match with or without an
image suffix (``ISIC_0000000`` and ``ISIC_0000000.jpg`` are the same image).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import CadxError, InputFileError
from cadx.io.atomic import atomic_path, ensure_not_input, prepare_output_folder
from cadx.io.tables import ClassTable, read_class_table
from cadx.metrics.calibration import expected_calibration_error
from cadx.metrics.classification import per_class_report
from cadx.tasks.isic2019.layout import ISIC_CLASSES
from cadx.viz.plots import plot_confusion, plot_roc_ovr

log = logging.getLogger(__name__)

#: File names looked for when ``--pred`` / ``--truth`` name a folder.
PREDICTIONS_CSV = "predictions.csv"
GROUND_TRUTH_CSV = "ISIC_2019_Training_GroundTruth.csv"
#: Columns of ``per_class.csv`` (and keys of each ``per_class`` row).
PER_CLASS_COLUMNS = ("class", "images", "predicted", "sensitivity", "specificity", "precision", "f1", "auc")

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


def image_id(name: str) -> str:
    """The ISIC image id of a CSV cell: the file name without folder or image suffix.

    Examples
    --------
    >>> image_id("ISIC_0000000.jpg"), image_id("ISIC_0000001"), image_id("a/ISIC_0000002.JPG")
    ('ISIC_0000000', 'ISIC_0000001', 'ISIC_0000002')
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = base.rpartition(".")
    return stem if dot and f".{suffix.lower()}" in _IMAGE_SUFFIXES else base


def _resolve(path: str | Path, default_name: str, what: str) -> Path:
    p = Path(path)
    if p.is_dir():
        candidate = p / default_name
        if not candidate.is_file():
            raise InputFileError(candidate, f"no {what} file in this folder")
        return candidate
    if not p.is_file():
        raise InputFileError(p, f"no such {what} file")
    return p


def _truth_labels(table: ClassTable) -> dict[str, tuple[str, int]]:
    """``{image id: (true class, row)}`` of a one-hot ground-truth table (checked)."""
    v = table.values
    for i, row in enumerate(table.rows):
        bad = np.flatnonzero((v[i] != 0) & (v[i] != 1))
        if bad.size:
            col = table.columns[bad[0]]
            raise InputFileError(table.path, f"row {row}, column {col}: {v[i, bad[0]]:g} is not 0 or 1 (one-hot)")
        if v[i].sum() != 1:
            raise InputFileError(table.path, f"row {row}: {int(v[i].sum())} classes marked 1, expected exactly one")
    out: dict[str, tuple[str, int]] = {}
    for i, (name, row) in enumerate(zip(table.images, table.rows, strict=True)):
        key = image_id(name)
        if key in out:
            raise InputFileError(table.path, f"row {row}, column image: {key!r} already on row {out[key][1]}")
        out[key] = (table.columns[int(v[i].argmax())], row)
    return out


def _check_probabilities(table: ClassTable) -> None:
    bad = np.argwhere((table.values < 0) | (table.values > 1))
    if bad.size:
        i, j = bad[0]
        raise InputFileError(table.path, f"row {table.rows[i]}, column {table.columns[j]}: "
                                         f"{table.values[i, j]:g} is not a probability in [0, 1]")


def _plain(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _write_per_class(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(PER_CLASS_COLUMNS))
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r[k] is None else r[k]) for k in PER_CLASS_COLUMNS})


def evaluate_derm(pred_csv_or_dir: str | Path, truth: str | Path, *, out_dir: str | Path | None = None,
                  classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Balanced accuracy, accuracy, per-class metrics, one-vs-rest AUC, ECE; confusion and ROC plots.

    Parameters
    ----------
    pred_csv_or_dir : path
        The predictions CSV, or a folder holding ``predictions.csv``.
    truth : path
        The ground-truth CSV, or a folder holding ``ISIC_2019_Training_GroundTruth.csv``.
    out_dir : path, optional
        Where ``metrics.json``, ``per_class.csv``, ``confusion.png`` and ``roc.png`` go (default:
        the folder of the predictions).
    classes : sequence of str, optional
        The classes to evaluate, a subset of the prediction columns (default: all of them).

    Returns
    -------
    dict
        What ``metrics.json`` holds (NaN as ``None``): ``images``, ``classes``, ``class_counts``,
        ``balanced_accuracy``, ``accuracy``, ``mean_auc``, ``ece`` (15 bins, probabilities
        renormalised over the evaluated classes), ``per_class`` (rows of
        :data:`PER_CLASS_COLUMNS`), ``confusion_matrix`` (rows true, columns predicted),
        ``excluded`` (``images`` and ``by_class``: images whose true class is not evaluated),
        ``truth_images_not_predicted``, ``predictions``, ``truth``.

    Raises
    ------
    InputFileError
        A file missing or malformed (named with row and column): a prediction column that is not
        a class of the ground truth, a ground-truth column that is neither an ISIC 2019 class nor
        a prediction column (a typo), a predicted image without a ground-truth row, NaN or a value
        outside [0, 1], a ground-truth row that is not one-hot, an image listed twice.
    OutputPathError
        An output would replace an input, or ``out_dir`` is a file.
    CadxError
        ``classes`` names a class without a prediction column, or no image is left to evaluate.
    """
    pred_path = _resolve(pred_csv_or_dir, PREDICTIONS_CSV, "predictions")
    truth_path = _resolve(truth, GROUND_TRUTH_CSV, "ground-truth")
    out = Path(out_dir) if out_dir is not None else pred_path.parent
    names = ("metrics.json", "per_class.csv", "confusion.png", "roc.png")
    for name in names:
        ensure_not_input(out / name, pred_path, truth_path)

    pred = read_class_table(pred_path, what="predictions")
    gt = read_class_table(truth_path, what="ground-truth")
    for col in pred.columns:
        if col not in gt.columns:
            raise InputFileError(pred_path, f"row {pred.header_row}, column {col}: not a class of "
                                 f"the ground truth ({', '.join(gt.columns)})")
    for col in gt.columns:
        if col not in ISIC_CLASSES and col not in pred.columns:
            raise InputFileError(truth_path, f"row {gt.header_row}, column {col}: unknown class column (neither an "
                                 f"ISIC 2019 class nor a prediction column: {', '.join(pred.columns)})")
    _check_probabilities(pred)
    truth_of = _truth_labels(gt)
    chosen = tuple(pred.columns) if classes is None else tuple(classes)
    unknown = [c for c in chosen if c not in pred.columns]
    if unknown or not chosen:
        raise CadxError(f"{pred_path}: no prediction column for {', '.join(unknown) or 'any class'} "
                        f"(columns: {', '.join(pred.columns)})")

    keep, y, excluded = [], [], Counter()
    seen: dict[str, int] = {}
    for i, (name, row) in enumerate(zip(pred.images, pred.rows, strict=True)):
        key = image_id(name)
        if key in seen:
            raise InputFileError(pred_path, f"row {row}, column image: {key!r} already on row {seen[key]}")
        seen[key] = row
        if key not in truth_of:
            raise InputFileError(truth_path, f"no row for image {key!r} (predictions {pred_path.name} row {row})")
        cls = truth_of[key][0]
        if cls in chosen:
            keep.append(i)
            y.append(chosen.index(cls))
        else:
            excluded[cls] += 1
    if excluded:
        log.warning("%s: %d images left out, their true class is not evaluated: %s", pred_path,
                    sum(excluded.values()), ", ".join(f"{c} {n}" for c, n in sorted(excluded.items())))
    if not keep:
        raise CadxError(f"{pred_path}: no image whose true class is one of {', '.join(chosen)}")

    proba = pred.values[np.asarray(keep)][:, [pred.columns.index(c) for c in chosen]]
    labels = np.asarray(y, np.int64)
    report = per_class_report(labels, proba, chosen)
    total = proba.sum(axis=1, keepdims=True)
    normalised = np.divide(proba, total, out=np.full(proba.shape, 1.0 / len(chosen)), where=total > 0)
    per_class = [{"class": m.name, "images": m.support, "predicted": m.predicted,
                  "sensitivity": _plain(m.sensitivity), "specificity": _plain(m.specificity),
                  "precision": _plain(m.precision), "f1": _plain(m.f1), "auc": _plain(m.auc)}
                 for m in report.classes]
    metrics: dict[str, Any] = {
        "images": report.n_samples,
        "classes": list(chosen),
        "class_counts": {m.name: m.support for m in report.classes},
        "balanced_accuracy": _plain(report.balanced_accuracy),
        "accuracy": _plain(report.accuracy),
        "mean_auc": _plain(report.mean_auc),
        "ece": _plain(expected_calibration_error(normalised, labels)),
        "per_class": per_class,
        "confusion_matrix": report.confusion.tolist(),
        "excluded": {"images": int(sum(excluded.values())), "by_class": dict(sorted(excluded.items()))},
        "truth_images_not_predicted": len(set(truth_of) - set(seen)),
        "predictions": str(pred_path),
        "truth": str(truth_path),
    }
    prepare_output_folder(out)
    plot_confusion(out / "confusion.png", report.confusion, chosen)
    plot_roc_ovr(out / "roc.png", labels, proba, chosen)
    _write_per_class(out / "per_class.csv", per_class)
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    return metrics
