"""ROC and FROC figures (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cadx.io.atomic import atomic_path


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_roc(path: str | Path, labels: Sequence[int], scores: Sequence[float], *, title: str) -> Path:
    """ROC curve PNG with the AUC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _figure()
    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=110)
    ax.plot(fpr, tpr, lw=2, label=f"AUC {roc_auc_score(labels, scores):.3f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def plot_froc(path: str | Path, avg_fp: np.ndarray, sensitivity: np.ndarray, at_rates: np.ndarray,
              rates: Sequence[float], *, score: float) -> Path:
    """FROC curve PNG (log FP axis) with the six challenge operating points."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 4.2), dpi=110)
    order = np.argsort(avg_fp)
    ax.step(np.maximum(avg_fp[order], 1e-2), sensitivity[order], where="post", lw=2)
    ax.plot(rates, at_rates, "o", c="C3", label=f"FROC score {score:.3f}")
    ax.set_xscale("log")
    ax.set(xlabel="average false positives per slide", ylabel="lesion sensitivity", ylim=(0, 1.02),
           xlim=(0.1, max(16, float(avg_fp.max()) * 1.2) if avg_fp.size else 16), title="Lesion FROC")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
