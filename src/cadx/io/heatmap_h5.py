"""Slide heatmaps on disk: a probability grid with its geometry, in HDF5.

Cell ``(row, col)`` holds the prediction for the tile whose level-0 top-left corner is
``(col * stride_level0_px, row * stride_level0_px)``; NaN where no tile was predicted (no tissue).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import InputFileError
from cadx.io.atomic import atomic_path
from cadx.io.h5 import plain_attrs


@dataclass
class Heatmap:
    """A tumour-probability grid over a slide.

    Attributes
    ----------
    probs : ndarray of float32, shape (rows, cols)
        NaN outside tissue.
    stride_level0_px : int
        Level-0 pixels between cell origins.
    tile_size_level0_px : int
        Footprint of each prediction in level-0 pixels.
    slide_size_wh : (int, int)
    mpp : float
        Level-0 microns per pixel.
    attrs : dict
        How it was made (slide, model, tile spec, TTA, version, ...).
    """

    probs: np.ndarray
    stride_level0_px: int
    tile_size_level0_px: int
    slide_size_wh: tuple[int, int]
    mpp: float
    attrs: dict[str, Any] = field(default_factory=dict)

    def cell_of(self, x: float, y: float) -> tuple[int, int]:
        """``(row, col)`` of the tile whose top-left corner is level-0 ``(x, y)``."""
        return int(y // self.stride_level0_px), int(x // self.stride_level0_px)

    def center_xy(self, row: np.ndarray | int, col: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 centre of the tile in cell ``(row, col)``."""
        half = self.tile_size_level0_px / 2
        return (np.asarray(col) * self.stride_level0_px + half, np.asarray(row) * self.stride_level0_px + half)

    @property
    def cell_um(self) -> float:
        """Cell spacing in microns."""
        return self.stride_level0_px * self.mpp


def write_heatmap_h5(path: str | Path, heatmap: Heatmap, *, tiles: Mapping[str, np.ndarray] = {}) -> Path:  # noqa: B006
    """Write ``probs`` (with geometry attributes) and optional per-tile arrays (atomic)."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset("probs", data=heatmap.probs.astype(np.float32), compression="gzip")
        ds.attrs["stride_level0_px"] = heatmap.stride_level0_px
        ds.attrs["tile_size_level0_px"] = heatmap.tile_size_level0_px
        ds.attrs["slide_size_wh"] = list(heatmap.slide_size_wh)
        ds.attrs["mpp"] = heatmap.mpp
        ds.attrs["layout"] = "cell (row, col) = tile with level-0 top-left (col*stride, row*stride); NaN = no tissue"
        for k, v in heatmap.attrs.items():
            ds.attrs[k] = v
        for name, arr in tiles.items():
            f.create_dataset(f"tiles/{name}", data=np.asarray(arr))
    return Path(path)


def read_heatmap_h5(path: str | Path) -> Heatmap:
    """Read a heatmap written by :func:`write_heatmap_h5`."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such heatmap file")
    try:
        with h5py.File(path, "r") as f:
            if "probs" not in f:
                raise InputFileError(path, "no 'probs' dataset: not a cadx heatmap")
            ds = f["probs"]
            a = plain_attrs(ds.attrs)
            probs = ds[()]
    except OSError as exc:
        raise InputFileError(path, f"not a readable HDF5 file ({exc})") from None
    geometry = {k: a.pop(k) for k in ("stride_level0_px", "tile_size_level0_px", "slide_size_wh", "mpp")}
    a.pop("layout", None)
    return Heatmap(probs=probs, stride_level0_px=int(geometry["stride_level0_px"]),
                   tile_size_level0_px=int(geometry["tile_size_level0_px"]),
                   slide_size_wh=tuple(int(v) for v in geometry["slide_size_wh"]), mpp=float(geometry["mpp"]), attrs=a)
