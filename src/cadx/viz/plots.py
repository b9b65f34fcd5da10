"""ROC, FROC, confusion-matrix and reliability figures as PNG files.

Figures are built with :class:`matplotlib.figure.Figure` and saved with ``fig.savefig``: no pyplot,
no global figure registry, and the caller's matplotlib backend is never switched (a notebook or a
GUI keeps its own). Numbers come from :mod:`cadx.metrics` (curves passed in, or computed there for
the one-vs-rest ROC); this module only draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cadx.io.atomic import atomic_path
from cadx.metrics.classification import roc_auc, roc_curve


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def plot_roc(path: str | Path, fpr: np.ndarray, tpr: np.ndarray, *, auc: float, title: str) -> Path:
    """ROC curve PNG with the AUC in the legend (462 x 462 px).

    Parameters
    ----------
    path : str or Path
        Written atomically.
    fpr, tpr : array_like
        False- and true-positive rates of the curve's points (e.g. ``sklearn.metrics.roc_curve``).
    auc : float
        Shown in the legend.
    title : str

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = plot_roc(pathlib.Path(tempfile.mkdtemp()) / "roc.png", [0, 0, 1], [0, 1, 1], auc=1.0, title="ROC")
    >>> p.read_bytes()[:4]
    b'\\x89PNG'
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 4.2), dpi=110)
    ax = fig.subplots()
    ax.plot(fpr, tpr, lw=2, label=f"AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_froc(path: str | Path, avg_fp: np.ndarray, sensitivity: np.ndarray, at_rates: np.ndarray,
              rates: Sequence[float], *, score: float) -> Path:
    """FROC curve PNG (log FP axis) with the challenge's operating points (550 x 462 px).

    Parameters
    ----------
    path : str or Path
    avg_fp, sensitivity : ndarray
        The curve (:func:`cadx.metrics.froc.froc_curve`).
    at_rates, rates : array_like
        Sensitivity at each of the FP ``rates`` (:func:`cadx.metrics.froc.froc_score`).
    score : float
        The FROC score, shown in the legend.
    """
    from matplotlib.figure import Figure

    avg_fp = np.asarray(avg_fp, np.float64)
    sensitivity = np.asarray(sensitivity, np.float64)
    fig = Figure(figsize=(5, 4.2), dpi=110)
    ax = fig.subplots()
    order = np.argsort(avg_fp)
    ax.step(np.maximum(avg_fp[order], 1e-2), sensitivity[order], where="post", lw=2)
    ax.plot(rates, at_rates, "o", c="C3", label=f"FROC score {score:.3f}")
    ax.set_xscale("log")
    ax.set(xlabel="average false positives per slide", ylabel="lesion sensitivity", ylim=(0, 1.02),
           xlim=(0.1, max(16, float(avg_fp.max()) * 1.2) if avg_fp.size else 16), title="Lesion FROC")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def plot_confusion(path: str | Path, cm: np.ndarray, class_names: Sequence[str], *,
                   title: str = "Confusion matrix") -> Path:
    """Confusion matrix PNG: each cell shows its count and its share of the true class (row).

    Cells are shaded by the row share (recall on the diagonal), so a rare class reads as well as
    a common one.

    Parameters
    ----------
    path : str or Path
        Written atomically.
    cm : array_like of int, shape (n_classes, n_classes)
        Rows = true class, columns = predicted class (:func:`cadx.metrics.classification.confusion_matrix`).
    class_names : sequence of str, length n_classes
    title : str

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = plot_confusion(pathlib.Path(tempfile.mkdtemp()) / "cm.png", [[5, 1], [0, 4]], ["MEL", "NV"])
    >>> p.read_bytes()[:4]
    b'\\x89PNG'
    """
    from matplotlib.figure import Figure

    cm = np.asarray(cm, np.int64)
    names = [str(n) for n in class_names]
    k = len(names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix of shape {cm.shape} for {k} class names")
    support = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, support, out=np.zeros(cm.shape), where=support > 0)
    side = 2.2 + 0.75 * k
    fig = Figure(figsize=(side + 0.6, side), dpi=110)
    ax = fig.subplots()
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            colour = "white" if share[i, j] > 0.6 else "black"
            ax.text(j, i, f"{cm[i, j]}\n{100 * share[i, j]:.0f}%", ha="center", va="center",
                    color=colour, fontsize=9)
    ax.set_xticks(range(k), names, rotation=45 if k > 4 else 0)
    ax.set_yticks(range(k), [f"{n} ({int(c)})" for n, c in zip(names, support[:, 0], strict=True)])
    ax.set(xlabel="predicted class", ylabel="true class (images)", title=title)
    ax.tick_params(length=0)
    return _save(fig, path)


def plot_roc_ovr(path: str | Path, y_true: Sequence[int], proba: np.ndarray, class_names: Sequence[str], *,
                 title: str = "One-vs-rest ROC") -> Path:
    """One ROC curve per class (that class against the rest) with its AUC in the legend (462 x 462 px).

    A class that is absent, or the only one present, has no curve and is listed as ``n/a``.

    Parameters
    ----------
    path : str or Path
        Written atomically.
    y_true : sequence of int, length n_samples
        True class indices into ``class_names``.
    proba : array_like, shape (n_samples, n_classes)
        Class probabilities.
    class_names : sequence of str, length n_classes
    title : str

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = plot_roc_ovr(pathlib.Path(tempfile.mkdtemp()) / "roc.png", [0, 1, 2, 1],
    ...                  [[.7, .2, .1], [.2, .7, .1], [.1, .3, .6], [.5, .4, .1]], ["MEL", "NV", "BCC"])
    >>> p.read_bytes()[:4]
    b'\\x89PNG'
    """
    y = np.asarray(y_true, np.int64).ravel()
    p = np.asarray(proba, np.float64)
    names = [str(n) for n in class_names]
    if p.ndim != 2 or p.shape != (y.size, len(names)):
        raise ValueError(f"proba of shape {p.shape} for {y.size} labels and {len(names)} classes")
    # one class against the rest is one label of a multi-label problem: the same curves
    one_hot = (y[:, None] == np.arange(len(names))[None, :]).astype(np.int64)
    return plot_roc_multilabel(path, one_hot, p, names, title=title)


def plot_reliability(path: str | Path, bins_before, bins_after, *,
                     labels: tuple[str, str] = ("before", "after temperature scaling")) -> Path:
    """Reliability diagram PNG: accuracy against confidence per bin, before and after calibration.

    A calibrated model sits on the diagonal. Each curve's legend carries its expected calibration
    error; the lower panel shows how many images fall in each bin.

    Parameters
    ----------
    path : str or Path
        Written atomically.
    bins_before, bins_after : ReliabilityBins
        From :func:`cadx.metrics.calibration.reliability_bins` on the same samples (anything with
        ``edges``, ``count``, ``confidence``, ``accuracy`` and ``ece``).
    labels : (str, str)
        Legend names of the two curves.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from cadx.metrics.calibration import reliability_bins
    >>> b1 = reliability_bins([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]], [0, 1, 1], n_bins=5)
    >>> b2 = reliability_bins([[0.7, 0.3], [0.6, 0.4], [0.4, 0.6]], [0, 1, 1], n_bins=5)
    >>> p = plot_reliability(pathlib.Path(tempfile.mkdtemp()) / "rel.png", b1, b2)
    >>> p.read_bytes()[:4]
    b'\\x89PNG'
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 5.2), dpi=110)
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect calibration")
    width = float(np.diff(np.asarray(bins_before.edges)).min())
    for i, (b, name) in enumerate(zip((bins_before, bins_after), labels, strict=True)):
        full = np.asarray(b.count) > 0
        conf = np.asarray(b.confidence)[full]
        acc = np.asarray(b.accuracy)[full]
        ax.plot(conf, acc, "o-", c=f"C{i}", lw=1.5, ms=4, label=f"{name} (ECE {b.ece:.3f})")
        centres = (np.asarray(b.edges[:-1]) + np.asarray(b.edges[1:])) / 2
        hist.bar(centres + (i - 0.5) * width / 2, b.count, width=width / 2, color=f"C{i}")
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.02), title="Reliability (top class)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    hist.set(xlabel="confidence (top class probability)", ylabel="images")
    hist.grid(alpha=0.3)
    return _save(fig, path)


def plot_roc_multilabel(path: str | Path, y_true: np.ndarray, proba: np.ndarray, label_names: Sequence[str], *,
                        title: str = "Per-label ROC") -> Path:
    """One ROC curve per label of a multi-label problem, each label against its absence (462 x 462 px).

    A label that is always or never present has no curve and is listed as ``n/a``.

    Parameters
    ----------
    path : str or Path
        Written atomically.
    y_true : array_like, shape (n_samples, n_labels) of 0/1
    proba : array_like, shape (n_samples, n_labels)
        Per-label probabilities (sigmoid outputs; rows need not sum to 1).
    label_names : sequence of str, length n_labels
    title : str

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = plot_roc_multilabel(pathlib.Path(tempfile.mkdtemp()) / "roc.png", [[1, 0], [0, 0], [1, 1]],
    ...                         [[.9, .2], [.1, .3], [.6, .7]], ["subdural", "any"])
    >>> p.read_bytes()[:4]
    b'\\x89PNG'
    """
    from matplotlib.figure import Figure

    y = np.asarray(y_true, np.int64)
    p = np.asarray(proba, np.float64)
    names = [str(n) for n in label_names]
    if y.ndim != 2 or p.shape != y.shape or y.shape[1] != len(names):
        raise ValueError(f"labels {y.shape} and proba {p.shape} for {len(names)} labels")
    fig = Figure(figsize=(4.2, 4.2), dpi=110)
    ax = fig.subplots()
    for k, name in enumerate(names):
        if 0 < y[:, k].sum() < y.shape[0]:
            fpr, tpr, _ = roc_curve(y[:, k], p[:, k])
            ax.plot(fpr, tpr, lw=2, label=f"{name} AUC {roc_auc(y[:, k], p[:, k]):.3f}")
        else:
            ax.plot([], [], lw=2, label=f"{name} AUC n/a")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)
