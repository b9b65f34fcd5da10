"""ROC and FROC figures as PNG files.

Figures are built with :class:`matplotlib.figure.Figure` and saved with ``fig.savefig``: no pyplot,
no global figure registry, and the caller's matplotlib backend is never switched (a notebook or a
GUI keeps its own). Curves come in already computed (see :mod:`cadx.metrics`); this module only draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cadx.io.atomic import atomic_path


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
