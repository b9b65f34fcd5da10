"""The dermoscopy HTML report (``templates/isic2019.html.j2``): one self-contained page.

Nothing is computed here: the caller passes the numbers (from :func:`cadx.tasks.isic2019.evaluate.
evaluate_derm`, the temperature fit, the Grad-CAM faithfulness check) and the PNG files, and the page
prints exactly those, autoescaped, with the images inlined.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cadx.report.html import require_keys, write_html

TEMPLATE = "isic2019.html.j2"
#: Keys of ``plots`` the page shows; ``reliability`` may be left out (no calibration diagram).
PLOT_KEYS = ("confusion", "roc", "reliability")
_GALLERY_KEYS = {"image_png", "caption", "correct"}
_FAITHFULNESS_KEYS = {"method", "drop_top", "drop_random", "passed"}
_CALIBRATION_KEYS = {"temperature", "ece_before", "ece_after"}



def write_derm_report(path: str | Path, *, metrics: Mapping[str, Any], calibration: Mapping[str, Any],
                      gallery: Sequence[Mapping[str, Any]], faithfulness: Sequence[Mapping[str, Any]],
                      plots: Mapping[str, str | Path], facts: Mapping[str, Any],
                      title: str = "ISIC 2019 dermoscopy: MEL / NV / BCC second opinion",
                      synthetic: bool = True) -> Path:
    """Write the dermoscopy report to ``path`` (atomically) and return ``path``.

    Parameters
    ----------
    path : str or Path
        The HTML file.
    metrics : mapping
        What :func:`~cadx.tasks.isic2019.evaluate.evaluate_derm` returns on the held-out images
        (``balanced_accuracy``, ``accuracy``, ``mean_auc``, ``images``, ``class_counts``,
        ``per_class``, optionally ``excluded``), plus optionally ``lesions``: how many distinct
        held-out lesions those images show. ``None`` prints as ``n/a``.
    calibration : mapping
        ``temperature`` (fitted on the validation split), ``ece_before`` and ``ece_after`` (on the
        held-out images); optionally ``fit_images`` (validation images of the fit) and ``n_bins``.
    gallery : sequence of mapping
        Grad-CAM overlays: ``{"image_png": path, "caption": str, "correct": bool}``; shown in two
        groups, correct and wrong, in the given order.
    faithfulness : sequence of mapping
        One row per CAM method: ``{"method": str, "drop_top": float, "drop_random": float,
        "passed": bool}`` (mean drop of the target class's confidence after deleting the most
        salient pixels, and the same number of random pixels).
    plots : mapping
        PNG paths by name: ``confusion``, ``roc`` and (optional) ``reliability``.
    facts : mapping
        "How this was made": label -> value (model, data, seed, durations, machine, ...).
    title : str
    synthetic : bool
        Say that the images are synthetic (the demo) rather than real ISIC images.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        A required key is missing from ``plots``, ``calibration`` or an item (a caller's bug).
    """
    for key in PLOT_KEYS[:2]:
        if key not in plots:
            raise ValueError(f"plots lacks {key!r}")
    missing = _CALIBRATION_KEYS - set(calibration)
    if missing:
        raise ValueError(f"calibration lacks {', '.join(sorted(missing))}")
    items = require_keys(gallery, _GALLERY_KEYS, "gallery")
    rows = require_keys(faithfulness, _FAITHFULNESS_KEYS, "faithfulness")
    return write_html(path, TEMPLATE, title=title, synthetic=bool(synthetic), metrics=dict(metrics),
                      calibration=dict(calibration), plots={k: Path(v) for k, v in plots.items()},
                      correct=[g for g in items if g["correct"]], wrong=[g for g in items if not g["correct"]],
                      faithfulness=rows, facts=dict(facts))
