"""Tile-coordinate files: one HDF5 per slide, in CLAM's layout.

``coords`` is an (N, 2) int64 dataset of level-0 ``(x, y)`` top-left corners, with CLAM's attributes
(``patch_size``, ``patch_level``, ``downsample``, ``level_dim``, ``name``) and cadx's own (mpp,
tile size, tissue threshold, how it was made). Per-tile arrays (``tissue_fraction``,
``tumor_fraction``, ``tumor_fraction_center``) sit beside it with the same N.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import InputFileError
from cadx.io.atomic import atomic_path


@dataclass
class TileCoords:
    """Contents of a coordinates file."""

    coords_xy: np.ndarray
    attrs: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.coords_xy)


def write_coords_h5(
    path: str | Path, coords_xy: np.ndarray, attrs: Mapping[str, Any], arrays: Mapping[str, np.ndarray] = {}  # noqa: B006
) -> Path:
    """Write ``coords`` with attributes and per-tile arrays (atomic)."""
    import h5py

    coords_xy = np.asarray(coords_xy, dtype=np.int64).reshape(-1, 2)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset("coords", data=coords_xy, chunks=True if len(coords_xy) else None,
                                  maxshape=(None, 2))
            for k, v in attrs.items():
                ds.attrs[k] = v
            for name, arr in arrays.items():
                arr = np.asarray(arr)
                if len(arr) != len(coords_xy):
                    raise ValueError(f"{name} has {len(arr)} rows, coords has {len(coords_xy)}")
                f.create_dataset(name, data=arr)
    return Path(path)


def read_coords_h5(path: str | Path) -> TileCoords:
    """Read a coordinates file written by cadx (or CLAM)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such coordinates file")
    try:
        with h5py.File(path, "r") as f:
            if "coords" not in f:
                raise InputFileError(path, "no 'coords' dataset: not a tile-coordinates file")
            ds = f["coords"]
            attrs = plain_attrs(ds.attrs)
            coords = ds[()]
            arrays = {k: f[k][()] for k in f if k != "coords" and isinstance(f[k], h5py.Dataset)}
    except OSError as exc:
        raise InputFileError(path, f"not a readable HDF5 file ({exc})") from None
    return TileCoords(coords, attrs, arrays)


def plain_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """HDF5 attributes as plain Python values (lists, numbers, str)."""
    return {k: _plain(v) for k, v in attrs.items()}


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode()
    return v
