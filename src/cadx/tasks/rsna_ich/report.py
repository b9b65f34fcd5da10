"""The head-CT HTML report (``templates/rsna_ich.html.j2``): one self-contained page.

Nothing is computed here: the caller passes the numbers (the weighted log loss, per-label log loss and
AUC of the per-slice model and, if trained, of the study sequence model), the ROC PNGs and the
Grad-CAM overlays, and the page prints exactly those, autoescaped, with the images inlined.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cadx.report.html import require_keys, write_html

__all__ = ["PLOT_KEYS", "TEMPLATE", "write_ct_report"]

TEMPLATE = "rsna_ich.html.j2"
#: Keys of ``plots`` the page shows; ``roc_sequence`` may be left out.
PLOT_KEYS = ("roc", "roc_sequence")
_METRIC_KEYS = {"weighted_log_loss", "per_label"}
_LABEL_KEYS = {"label", "log_loss", "auc"}
_GALLERY_KEYS = {"image_png", "caption"}


def write_ct_report(
    path: str | Path,
    *,
    metrics_slice: Mapping[str, Any],
    metrics_sequence: Mapping[str, Any] | None,
    plots: Mapping[str, str | Path],
    gallery: Sequence[Mapping[str, Any]],
    facts: Mapping[str, Any],
    title: str = "RSNA 2019 head CT: intracranial haemorrhage second opinion",
    synthetic: bool = True,
) -> Path:
    """Write the head-CT report to ``path`` (atomically) and return ``path``.

    Parameters
    ----------
    path : str or Path
        The HTML file.
    metrics_slice : mapping
        The per-slice model on the held-out slices: ``weighted_log_loss`` (float), ``per_label`` (a
        sequence of ``{"label": str, "log_loss": float, "auc": float or None}``, in the order of the
        table), optionally ``slices`` and ``studies`` (counts). ``None`` values print as ``n/a``.
    metrics_sequence : mapping or None
        The same for the study sequence model on the same slices (its ``per_label`` rows are
        matched by ``label``), or ``None`` when no sequence model was trained.
    plots : mapping
        PNG paths: ``roc`` (per-label ROC curves of the per-slice model) and, optionally,
        ``roc_sequence``.
    gallery : sequence of mapping
        Grad-CAM overlays over the brain window: ``{"image_png": path, "caption": str}``, in order.
    facts : mapping
        "How this was made": label -> value (model, data, seed, durations, machine, ...).
    title : str
    synthetic : bool
        Say that the studies are synthetic (the demo) rather than real RSNA studies.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        A required key is missing, or ``metrics_sequence`` lacks a label of ``metrics_slice``
        (a caller's bug).
    """
    if "roc" not in plots:
        raise ValueError("plots lacks 'roc'")
    unknown = sorted(set(plots) - set(PLOT_KEYS))
    if unknown:
        raise ValueError(f"plots has unknown keys {unknown}")
    per_slice = _check_metrics(metrics_slice, "metrics_slice")
    rows = [dict(r) for r in per_slice]
    if metrics_sequence is not None:
        by_label = {r["label"]: r for r in _check_metrics(metrics_sequence, "metrics_sequence")}
        for row in rows:
            if row["label"] not in by_label:
                raise ValueError(f"metrics_sequence has no row for label {row['label']!r}")
            row["seq_log_loss"] = by_label[row["label"]]["log_loss"]
            row["seq_auc"] = by_label[row["label"]]["auc"]
    items = require_keys(gallery, _GALLERY_KEYS, "gallery")
    return write_html(path, TEMPLATE, title=title, synthetic=bool(synthetic), metrics_slice=dict(metrics_slice),
                      metrics_sequence=None if metrics_sequence is None else dict(metrics_sequence), rows=rows,
                      plots={k: Path(v) for k, v in plots.items()}, gallery=items, facts=dict(facts))


def _check_metrics(metrics: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
    missing = _METRIC_KEYS - set(metrics)
    if missing:
        raise ValueError(f"{what} lacks {', '.join(sorted(missing))}")
    return require_keys(metrics["per_label"], _LABEL_KEYS, f"{what}.per_label")

