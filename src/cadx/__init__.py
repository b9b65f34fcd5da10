"""cadx: computer-aided detection and diagnosis on medical images.

A second opinion from transfer-learning CNNs, with the evidence shown as heatmaps.
``import cadx`` stays light: heavy libraries are imported where they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "open_slide"]

if TYPE_CHECKING:  # pragma: no cover
    from cadx.io.slide import open_slide


def __getattr__(name: str) -> Any:
    if name == "open_slide":
        from cadx.io.slide import open_slide

        return open_slide
    raise AttributeError(f"module 'cadx' has no attribute {name!r}")
