"""Slide-level classifier on heatmap features: a random forest, as the CAMELYON16 winner used.

Fit on the heatmaps of training slides (features from :func:`~cadx.inference.detections.slide_features`),
applied to test slides' heatmaps. The forest is saved as JSON: the feature names it expects and each
tree's node arrays (children, split feature, threshold, class fractions). Loading re-assembles the
trees and predicts exactly as scikit-learn does; nothing in the file can run code. Pickle and joblib
files (the format of cadx 0.1) are recognised by their first bytes and refused unread, because
unpickling a crafted file runs arbitrary code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cadx import __version__
from cadx.errors import CadxError, CheckpointError, InputFileError
from cadx.inference.detections import FEATURE_NAMES
from cadx.io.atomic import atomic_path
from cadx.io.tables import read_slide_scores

FORMAT = "cadx-slide-forest"
FORMAT_VERSION = 2  # 1 was a joblib pickle
#: Default file name of a saved forest.
DEFAULT_NAME = "slide_forest.json"
_LEAF = -1
# First bytes of pickles (protocol 2+) and of the compressed containers joblib writes.
_PICKLE_MAGIC = (b"\x80", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x04\x22\x4d\x18", b"\x28\xb5\x2f\xfd", b"ZF",
                 b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")


@dataclass(frozen=True)
class Tree:
    """One decision tree as arrays over its nodes (scikit-learn's ``tree_`` layout).

    ``children_left[i] == -1`` marks a leaf. A sample goes left at node ``i`` when its feature
    ``feature[i]``, rounded to float32, is ``<= threshold[i]``; a NaN goes left when
    ``missing_go_to_left[i]``. ``value`` is ``(n_nodes, n_classes)`` class fractions.
    """

    children_left: np.ndarray
    children_right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_go_to_left: np.ndarray
    value: np.ndarray

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class fractions of the leaf each row of ``x`` ``(N, n_features)`` float32 lands in."""
        node = np.zeros(len(x), np.int64)
        rows = np.arange(len(x))
        active = self.children_left[node] != _LEAF
        while active.any():
            n, r = node[active], rows[active]
            v = x[r, self.feature[n]].astype(np.float64)
            go_left = np.where(np.isnan(v), self.missing_go_to_left[n], v <= self.threshold[n])
            node[active] = np.where(go_left, self.children_left[n], self.children_right[n])
            active = self.children_left[node] != _LEAF
        proba = self.value[node]
        total = proba.sum(axis=1, keepdims=True)
        total[total == 0.0] = 1.0
        return proba / total


@dataclass(frozen=True)
class SlideForest:
    """A fitted random forest that predicts like scikit-learn's and saves without pickle.

    Attributes
    ----------
    trees : tuple of Tree
    classes : tuple of int
        Labels of the probability columns (``(0, 1)``: normal, tumour).
    feature_names : tuple of str
        The heatmap features, in column order.
    """

    trees: tuple[Tree, ...]
    classes: tuple[int, ...]
    feature_names: tuple[str, ...]

    @classmethod
    def from_sklearn(cls, rf: Any, feature_names: Sequence[str] = FEATURE_NAMES) -> SlideForest:
        """The node arrays of a fitted ``RandomForestClassifier`` (single output)."""
        trees = []
        for est in rf.estimators_:
            t = est.tree_
            trees.append(Tree(
                children_left=np.asarray(t.children_left, np.int64),
                children_right=np.asarray(t.children_right, np.int64),
                feature=np.asarray(t.feature, np.int64),
                threshold=np.asarray(t.threshold, np.float64),
                missing_go_to_left=np.asarray(t.missing_go_to_left, bool),
                value=np.asarray(t.value[:, 0, :], np.float64),
            ))
        return cls(tuple(trees), tuple(int(c) for c in rf.classes_), tuple(feature_names))

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """``(N, n_classes)`` mean of the trees' class fractions, as scikit-learn computes it.

        Features are rounded to float32 first, as scikit-learn's trees do.
        """
        x = np.asarray(features, np.float64).astype(np.float32).reshape(-1, len(self.feature_names))
        out = np.zeros((len(x), len(self.classes)), np.float64)
        for tree in self.trees:
            out += tree.predict_proba(x)
        out /= len(self.trees)
        return out


def fit_slide_forest(features: np.ndarray, labels: Sequence[int], *, seed: int = 0,
                     n_trees: int = 300) -> SlideForest:
    """A random forest on ``(n_slides, n_features)`` heatmap features; labels 1 tumour / 0 normal.

    Raises
    ------
    CadxError
        The training slides are all of one class.
    """
    from sklearn.ensemble import RandomForestClassifier

    y = np.asarray(labels, int)
    if set(y.tolist()) != {0, 1}:
        raise CadxError(f"the slide classifier needs tumour (1) and normal (0) training slides, got labels "
                        f"{sorted(set(y.tolist()))}")
    rf = RandomForestClassifier(n_estimators=n_trees, min_samples_leaf=1, random_state=seed, n_jobs=1)
    rf.fit(np.asarray(features, float), y)
    return SlideForest.from_sklearn(rf)


def save_slide_forest(path: str | Path, forest: SlideForest | Any) -> Path:
    """Write ``forest`` (a :class:`SlideForest` or a fitted scikit-learn forest) as JSON (atomic)."""
    if not isinstance(forest, SlideForest):
        forest = SlideForest.from_sklearn(forest)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cadx_version": __version__,
        "created_unix": time.time(),
        "features": list(forest.feature_names),
        "classes": list(forest.classes),
        "trees": [{name: getattr(t, name).tolist() for name in Tree.__dataclass_fields__} for t in forest.trees],
    }
    with atomic_path(path) as tmp:
        # Python writes the shortest repr that reads back to the same float64: exact round trip.
        Path(tmp).write_text(json.dumps(payload, separators=(",", ":"), allow_nan=False))
    return Path(path)


def load_slide_forest(path: str | Path) -> SlideForest:
    """Read a forest written by :func:`save_slide_forest`.

    Raises
    ------
    CheckpointError
        Missing file; a pickle/joblib file (refused unread: unpickling can run code); not a cadx
        slide-forest JSON file; made for other features; malformed trees.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such slide-classifier file")
    data = path.read_bytes()
    if data.startswith(_PICKLE_MAGIC):
        raise CheckpointError(path, "a pickle/joblib file (the slide-classifier format of cadx 0.1): refused "
                              "unread, because unpickling a file can run code. Refit it with "
                              f"`cadx slide-classifier fit --out {DEFAULT_NAME}`")
    try:
        payload = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(path, "not a cadx slide-classifier file (not JSON)") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(path, "not a cadx slide classifier (no 'format: cadx-slide-forest' record)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(path, f"slide-classifier format {payload.get('format_version')!r} is not "
                              f"{FORMAT_VERSION}; refit it with this cadx")
    if payload.get("features") != list(FEATURE_NAMES):
        raise CheckpointError(path, f"made for features {payload.get('features')}, "
                              f"this cadx computes {list(FEATURE_NAMES)}")
    classes = payload.get("classes")
    trees = payload.get("trees")
    if classes != [0, 1] or not isinstance(trees, list) or not trees:
        raise CheckpointError(path, "malformed slide classifier (classes must be [0, 1], trees non-empty)")
    try:
        parsed = tuple(_tree_from_json(t, len(FEATURE_NAMES), len(classes)) for t in trees)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(path, f"malformed tree in the slide classifier: {exc}") from None
    return SlideForest(parsed, tuple(classes), tuple(FEATURE_NAMES))


def _tree_from_json(t: dict[str, Any], n_features: int, n_classes: int) -> Tree:
    """Arrays of one tree, checked so that prediction always ends at a leaf and never indexes out of range."""
    left = np.asarray(t["children_left"], np.int64)
    right = np.asarray(t["children_right"], np.int64)
    n = len(left)
    tree = Tree(left, right, np.asarray(t["feature"], np.int64), np.asarray(t["threshold"], np.float64),
                np.asarray(t["missing_go_to_left"], bool), np.asarray(t["value"], np.float64))
    if n == 0 or any(a.shape != (n,) for a in (right, tree.feature, tree.threshold, tree.missing_go_to_left)):
        raise ValueError("node arrays differ in length")
    if tree.value.shape != (n, n_classes) or not np.isfinite(tree.value).all() or (tree.value < 0).any():
        raise ValueError("value must be finite, non-negative, one row per node and one column per class")
    leaf = left == _LEAF
    idx = np.arange(n)
    if (right[leaf] != _LEAF).any():
        raise ValueError("a leaf has a right child")
    # Children come after their parent (depth-first order): every walk moves forward and ends.
    if ((left[~leaf] <= idx[~leaf]) | (left[~leaf] >= n) | (right[~leaf] <= idx[~leaf]) | (right[~leaf] >= n)).any():
        raise ValueError("child index out of order or out of range")
    if ((tree.feature[~leaf] < 0) | (tree.feature[~leaf] >= n_features)).any():
        raise ValueError("split feature out of range")
    if not np.isfinite(tree.threshold[~leaf]).all():
        raise ValueError("split threshold not finite")
    return tree


def forest_scores(rf: SlideForest | Any, features: np.ndarray) -> np.ndarray:
    """Tumour probability per slide, ``(n_slides,)``, from a :class:`SlideForest` (or a scikit-learn forest)."""
    return rf.predict_proba(np.asarray(features, float).reshape(-1, len(FEATURE_NAMES)))[:, 1]


def read_feature_table(pred_dir: str | Path) -> tuple[list[str], np.ndarray]:
    """Slide names and heatmap features ``(n_slides, n_features)`` from a predictions folder's ``slide_scores.csv``.

    Read by :func:`cadx.io.tables.read_slide_scores`, the one reader of that table: every cell is a
    finite number or the error names its row and column (a NaN would otherwise reach the forest,
    which takes it for a missing value and fits silently).

    Raises
    ------
    InputFileError
        No ``slide_scores.csv``, a missing feature column, a repeated slide, or a value that is not
        a finite number.
    """
    path = Path(pred_dir) / "slide_scores.csv"
    if not path.is_file():
        raise InputFileError(path, "no slide_scores.csv: run `cadx predict slides` first")
    names, values = read_slide_scores(path, columns=FEATURE_NAMES)
    return names, values.reshape(-1, len(FEATURE_NAMES))


def label_from_name(name: str) -> int:
    """CAMELYON16 training names: ``tumor_*`` is 1, ``normal_*`` is 0.

    Raises
    ------
    CadxError
        The name says neither.

    Examples
    --------
    >>> label_from_name("Tumor_001"), label_from_name("normal_042")
    (1, 0)
    """
    low = name.lower()
    if low.startswith("tumor"):
        return 1
    if low.startswith("normal"):
        return 0
    raise CadxError(f"cannot tell the label of '{name}' from its name; give a reference.csv")
