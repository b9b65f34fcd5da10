"""Tissue detection on a slide: read an overview at ``mask_mpp``, run the numpy detector."""

from __future__ import annotations

from typing import Any

from cadx.io.resolution import read_overview
from cadx.io.slide import SlideReader
from cadx.preprocessing.tissue import TissueMask, tissue_mask

#: Default mask resolution: ~64x below a 0.25 um/px ("40x") level 0.
DEFAULT_MASK_MPP = 16.0


def detect_tissue(slide: SlideReader, *, mask_mpp: float = DEFAULT_MASK_MPP, **options: Any) -> TissueMask:
    """Tissue mask of a whole slide at about ``mask_mpp`` um/px.

    Parameters
    ----------
    slide : SlideReader
        Needs a known mpp (:class:`~cadx.errors.MissingMppError` otherwise).
    mask_mpp : float
        Resolution of the mask.
    **options
        Passed to :func:`cadx.preprocessing.tissue.tissue_mask`.

    Returns
    -------
    TissueMask
        ``mask.shape`` covers the whole slide; ``mpp`` is its exact resolution.
    """
    overview, mpp = read_overview(slide, mask_mpp)
    return tissue_mask(overview, mpp=mpp, **options)
