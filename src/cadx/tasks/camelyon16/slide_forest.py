"""Slide-level classifier on heatmap features: a random forest, as the CAMELYON16 winner used.

Fit on the heatmaps of training slides (features from :func:`slide_features`), applied to test
slides' heatmaps. Saved with joblib together with the feature names it expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import CheckpointError
from cadx.inference.detections import FEATURE_NAMES
from cadx.io.atomic import atomic_path


def fit_slide_forest(features: np.ndarray, labels: Sequence[int], *, seed: int = 0, n_trees: int = 300) -> Any:
    """A random forest on ``(n_slides, n_features)`` heatmap features; labels 1 tumour / 0 normal."""
    from sklearn.ensemble import RandomForestClassifier

    y = np.asarray(labels, int)
    if len(set(y.tolist())) < 2:
        raise ValueError("the slide classifier needs tumour and normal training slides")
    rf = RandomForestClassifier(n_estimators=n_trees, min_samples_leaf=1, random_state=seed, n_jobs=1)
    rf.fit(np.asarray(features, float), y)
    return rf


def save_slide_forest(path: str | Path, rf: Any) -> Path:
    import joblib

    with atomic_path(path) as tmp:
        joblib.dump({"format": "cadx-slide-forest", "features": list(FEATURE_NAMES), "model": rf}, tmp)
    return Path(path)


def load_slide_forest(path: str | Path) -> Any:
    import joblib

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such slide-classifier file")
    payload = joblib.load(path)
    if not isinstance(payload, dict) or payload.get("format") != "cadx-slide-forest":
        raise CheckpointError(path, "not a cadx slide classifier")
    if payload["features"] != list(FEATURE_NAMES):
        raise CheckpointError(path, f"made for features {payload['features']}, this cadx computes {list(FEATURE_NAMES)}")
    return payload["model"]


def forest_scores(rf: Any, features: np.ndarray) -> np.ndarray:
    """Tumour probability per slide."""
    return rf.predict_proba(np.asarray(features, float).reshape(-1, len(FEATURE_NAMES)))[:, 1]


def read_feature_table(pred_dir: str | Path) -> tuple[list[str], np.ndarray]:
    """Slide names and heatmap features from a predictions folder's ``slide_scores.csv``."""
    import csv

    path = Path(pred_dir) / "slide_scores.csv"
    if not path.is_file():
        raise CheckpointError(path, "no slide_scores.csv: run `cadx predict slides` first")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["slide"] for r in rows], np.array([[float(r[n]) for n in FEATURE_NAMES] for r in rows])


def label_from_name(name: str) -> int:
    """CAMELYON16 training names: ``tumor_*`` is 1, ``normal_*`` is 0."""
    low = name.lower()
    if low.startswith("tumor"):
        return 1
    if low.startswith("normal"):
        return 0
    raise ValueError(f"cannot tell the label of '{name}' from its name; give a reference.csv")
