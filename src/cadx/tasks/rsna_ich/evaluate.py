"""``cadx evaluate ct``: score RSNA 2019 predictions against the ground truth, both in the long format.

Both files are Kaggle long format, ``ID,Label`` with ``ID_<image>_<subtype>`` and six rows per image
(the submission that ``cadx predict ct`` writes, and ``stage_2_train.csv``). The score is the
competition's weighted multi-label log loss (:func:`cadx.metrics.multilabel.weighted_log_loss`);
beside it each label's log loss and ROC AUC, and a per-label ROC plot.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import CadxError, InputFileError
from cadx.io.atomic import atomic_path, ensure_not_input
from cadx.metrics.classification import roc_auc
from cadx.metrics.multilabel import per_label_log_loss, weighted_log_loss
from cadx.tasks.rsna_ich.layout import LABELS_CSV, SUBTYPES, read_long_csv
from cadx.viz.plots import plot_roc_multilabel

log = logging.getLogger(__name__)

#: File names looked for when ``--pred`` / ``--truth`` name a folder.
SUBMISSION_CSV = "submission.csv"
#: Columns of ``per_label.csv``.
PER_LABEL_COLUMNS = ("label", "weight", "positives", "log_loss", "auc")


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


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    return float(roc_auc(y, p)) if 0 < y.sum() < y.size else None


def evaluate_ct(pred_csv: str | Path, truth_csv: str | Path, *, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Weighted log loss, per-label log loss and AUC of a submission; ``roc.png``.

    Parameters
    ----------
    pred_csv : path
        The submission (long format, probabilities), or a folder holding ``submission.csv``.
    truth_csv : path
        The ground truth (long format, 0/1), or a folder holding ``stage_2_train.csv``.
    out_dir : path, optional
        Where ``metrics.json``, ``per_label.csv`` and ``roc.png`` go (default: the folder of the
        predictions).

    Returns
    -------
    dict
        What ``metrics.json`` holds: ``images``, ``weighted_log_loss``, ``per_label`` (rows of
        :data:`PER_LABEL_COLUMNS`, AUC ``None`` for a label always or never present),
        ``mean_auc`` (over the labels with an AUC), ``truth_images_not_predicted``,
        ``predictions``, ``truth``.

    Raises
    ------
    InputFileError
        A file missing or malformed (see :func:`~cadx.tasks.rsna_ich.layout.read_long_csv`), or a
        predicted image without ground truth (named with its row).
    """
    pred_path = _resolve(pred_csv, SUBMISSION_CSV, "predictions")
    truth_path = _resolve(truth_csv, LABELS_CSV, "ground-truth")
    out = Path(out_dir) if out_dir is not None else pred_path.parent
    for name in ("metrics.json", "per_label.csv", "roc.png"):
        ensure_not_input(out / name, pred_path, truth_path)
    pred = read_long_csv(pred_path, what="predictions", binary=False)
    truth = read_long_csv(truth_path, what="ground-truth")
    where = {name: i for i, name in enumerate(truth.image_ids)}
    order = []
    for name, row in zip(pred.image_ids, pred.rows, strict=True):
        if name not in where:
            raise InputFileError(truth_path, f"no rows for image {name} (predictions {pred_path.name} row {row})")
        order.append(where[name])
    if not order:  # read_long_csv refuses an empty file; kept for clarity
        raise CadxError(f"{pred_path}: no predictions")
    y = truth.values[np.asarray(order)].astype(np.int64)
    p = pred.values
    weights = (1.0, 1.0, 1.0, 1.0, 1.0, 2.0)
    ll = per_label_log_loss(y, p)
    per_label = [{"label": name, "weight": w, "positives": int(y[:, k].sum()), "log_loss": float(ll[k]),
                  "auc": _auc(y[:, k], p[:, k])} for k, (name, w) in enumerate(zip(SUBTYPES, weights, strict=True))]
    aucs = [r["auc"] for r in per_label if r["auc"] is not None]
    metrics: dict[str, Any] = {
        "images": int(len(order)),
        "weighted_log_loss": weighted_log_loss(y, p, weights=weights),
        "per_label": per_label,
        "mean_auc": float(np.mean(aucs)) if aucs else None,
        "truth_images_not_predicted": len(truth.image_ids) - len(set(order)),
        "predictions": str(pred_path),
        "truth": str(truth_path),
    }
    if metrics["truth_images_not_predicted"]:
        log.warning("%s: %d ground-truth images have no prediction (left out of the score)", pred_path,
                    metrics["truth_images_not_predicted"])
    out.mkdir(parents=True, exist_ok=True)
    plot_roc_multilabel(out / "roc.png", y, p, SUBTYPES, title="Per-label ROC (head CT)")
    with atomic_path(out / "per_label.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(PER_LABEL_COLUMNS))
        w.writeheader()
        for r in per_label:
            w.writerow({k: ("" if r[k] is None else r[k]) for k in PER_LABEL_COLUMNS})
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    return metrics
