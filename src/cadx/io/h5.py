"""Per-slide HDF5 files: tile coordinates (CLAM's layout) and score grids, one attribute codec.

Tile coordinates
    ``coords`` is an (N, 2) int64 dataset of level-0 ``(x, y)`` top-left corners, with CLAM's
    attributes (``patch_size``, ``patch_level``, ``downsample``, ``level_dim``, ``name``) and cadx's
    own (mpp, tile size, tissue threshold, how it was made). Per-tile arrays (``tissue_fraction``,
    ``tumor_fraction``, ``tumor_fraction_center``) sit beside it with the same N.

Tile features
    ``features`` is an (N, D) float32 dataset (one encoder vector per tile, provenance in its
    attributes) beside ``coords`` (N, 2) int64 with CLAM's ``patch_level`` and ``patch_size``: the
    layout of CLAM's ``h5_files``, so attention-MIL code on either side reads the other's files.

Score grids
    ``scores`` is a (C, rows, cols) float32 dataset: C named channels (``channel_names``
    attribute) over the slide's tile grid. Cell ``(row, col)`` holds the scores of the tile whose
    level-0 top-left corner is ``(col * stride_level0_px, row * stride_level0_px)``; NaN where no
    tile was scored (no tissue). Per-tile arrays go under ``tiles/``. Files written before score
    grids had channels (one ``probs`` (rows, cols) dataset) read as one channel,
    ``tumor_probability``.

Attributes are written by :func:`write_attrs` and read back as plain Python values (str, int,
float, bool, lists) by :func:`plain_attrs`.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import InputFileError
from cadx.io.atomic import atomic_path

#: The channel of score-grid files written before grids had named channels.
LEGACY_CHANNEL = "tumor_probability"

#: Score-grid attributes that carry the geometry (not free for ``ScoreGrid.attrs``).
GRID_GEOMETRY_ATTRS = ("stride_level0_px", "tile_size_level0_px", "slide_size_wh", "mpp", "channel_names", "layout")

_GRID_LAYOUT = ("scores[c, row, col] = channel c of the tile with level-0 top-left (col*stride, row*stride); "
                "NaN = not scored")


# --- attribute codec -----------------------------------------------------------------------------


def write_attrs(target: MutableMapping[str, Any], attrs: Mapping[str, Any]) -> None:
    """Store plain values as HDF5 attributes (``target`` is an ``h5py`` ``.attrs``).

    str, bool, int, float, :class:`~pathlib.Path` (as str) and sequences of numbers or strings
    are accepted; anything else is a programming error (``TypeError``).
    """
    for key, value in attrs.items():
        target[key] = _encode(key, value)


def plain_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """HDF5 attributes as plain Python values (lists, numbers, str).

    Examples
    --------
    >>> import numpy as np
    >>> plain_attrs({"a": np.float32(0.5), "b": np.array([1, 2]), "c": b"x", "d": np.array([b"u", "v"], object)})
    {'a': 0.5, 'b': [1, 2], 'c': 'x', 'd': ['u', 'v']}
    """
    return {k: _decode(v) for k, v in attrs.items()}


def _encode(key: str, v: Any) -> Any:
    if isinstance(v, (str, bool, int, float, np.generic)):
        return v
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        arr = np.asarray(v)
        if arr.dtype.kind in "USO":
            import h5py

            return np.array([str(x) for x in arr.ravel()], dtype=h5py.string_dtype()).reshape(arr.shape)
        if arr.dtype.kind in "biuf":
            return arr
    raise TypeError(f"attribute {key!r}: {type(v).__name__} {v!r} cannot be stored (use str, numbers or lists)")


def _decode(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [_decode(x) for x in v] if v.dtype.kind in "OSU" else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode()
    return v


def _open_h5(path: Path, what: str) -> Any:
    import h5py

    if not path.is_file():
        raise InputFileError(path, f"no such {what} file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(path, f"not a readable HDF5 file ({exc})") from None


def attrs_differ(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """Keys of ``wanted`` that ``recorded`` lacks or holds with another value.

    Numbers compare to a relative 1e-9 (float32 round trips of settings are not differences);
    lists compare element by element. What a rerun uses to tell whether an output was made with the
    same settings.

    Examples
    --------
    >>> attrs_differ({"mpp": 0.5, "size": [256, 256], "note": "x"}, {"mpp": 0.5000000001, "size": [256, 256]})
    []
    >>> attrs_differ({"mpp": 0.5}, {"mpp": 1.0, "tta": False})
    ['mpp', 'tta']
    """
    return [k for k, v in wanted.items() if k not in recorded or not _same_value(recorded[k], v)]


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(_same_value(x, y) for x, y in zip(a, b, strict=True)))
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (np.isfinite(a) and np.isfinite(b) and abs(a - b) <= 1e-9 * max(abs(a), abs(b)))
    return a == b


# --- tile coordinates ----------------------------------------------------------------------------


@dataclass
class TileCoords:
    """Contents of a coordinates file.

    Attributes
    ----------
    coords_xy : ndarray of int64, shape (N, 2)
        Level-0 ``(x, y)`` top-left corners.
    attrs : dict
        How the tiles were made (CLAM's and cadx's attributes).
    arrays : dict of str to ndarray
        Per-tile arrays, each with N rows.
    """

    coords_xy: np.ndarray
    attrs: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.coords_xy)


def write_coords_h5(path: str | Path, coords_xy: np.ndarray, attrs: Mapping[str, Any],
                    arrays: Mapping[str, np.ndarray] | None = None) -> Path:
    """Write ``coords`` with attributes and per-tile arrays (atomic).

    Parameters
    ----------
    path : str or Path
    coords_xy : array_like of int, shape (N, 2)
        Level-0 ``(x, y)`` top-left corners.
    attrs : mapping
        Attributes of the ``coords`` dataset (see :func:`write_attrs`).
    arrays : mapping of str to array_like, optional
        Per-tile arrays with N rows.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_coords_h5(pathlib.Path(tempfile.mkdtemp()) / "s.h5", [[0, 0], [256, 0]], {"patch_size": 256},
    ...                     {"tissue_fraction": [1.0, 0.5]})
    >>> tc = read_coords_h5(p)
    >>> tc.coords_xy.tolist(), tc.attrs, tc.arrays["tissue_fraction"].tolist()
    ([[0, 0], [256, 0]], {'patch_size': 256}, [1.0, 0.5])
    """
    import h5py

    coords_xy = np.asarray(coords_xy, dtype=np.int64).reshape(-1, 2)
    arrays = dict(arrays or {})
    for name, arr in arrays.items():
        if len(arr) != len(coords_xy):
            raise ValueError(f"{name} has {len(arr)} rows, coords has {len(coords_xy)}")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset("coords", data=coords_xy, chunks=True if len(coords_xy) else None, maxshape=(None, 2))
        write_attrs(ds.attrs, attrs)
        for name, arr in arrays.items():
            f.create_dataset(name, data=np.asarray(arr))
    return Path(path)


def read_coords_h5(path: str | Path) -> TileCoords:
    """Read a coordinates file written by cadx (or CLAM).

    Raises
    ------
    InputFileError
        Missing, not HDF5, or without a ``coords`` dataset.
    """
    import h5py

    path = Path(path)
    try:
        with _open_h5(path, "coordinates") as f:
            if "coords" not in f:
                raise InputFileError(path, "no 'coords' dataset: not a tile-coordinates file")
            ds = f["coords"]
            attrs = plain_attrs(ds.attrs)
            coords = ds[()]
            arrays = {k: f[k][()] for k in f if k != "coords" and isinstance(f[k], h5py.Dataset)}
    except OSError as exc:
        raise InputFileError(path, f"unreadable HDF5 data ({exc})") from None
    return TileCoords(coords, attrs, arrays)


def read_coords_attrs(path: str | Path) -> tuple[dict[str, Any], int]:
    """The attributes and tile count of a coordinates file, without reading its arrays.

    Raises
    ------
    InputFileError
        Missing, not HDF5, or without a ``coords`` dataset.
    """
    path = Path(path)
    try:
        with _open_h5(path, "coordinates") as f:
            if "coords" not in f:
                raise InputFileError(path, "no 'coords' dataset: not a tile-coordinates file")
            return plain_attrs(f["coords"].attrs), int(f["coords"].shape[0])
    except OSError as exc:
        raise InputFileError(path, f"unreadable HDF5 data ({exc})") from None


# --- score grids ---------------------------------------------------------------------------------


@dataclass
class ScoreGrid:
    """Named score channels over a slide's tile grid.

    Attributes
    ----------
    values : ndarray of float32, shape (C, rows, cols)
        Channel ``c`` of the tile in cell ``(row, col)``; NaN where no tile was scored.
    channel_names : tuple of str
        One name per channel (``("tumor_probability",)`` for CAMELYON16 tile classifiers).
    stride_level0_px : int
        Level-0 pixels between cell origins.
    tile_size_level0_px : int
        Footprint of each scored tile in level-0 pixels (larger than the stride when tiles overlap).
    slide_size_wh : (int, int)
        Level-0 slide size.
    mpp : float
        Level-0 microns per pixel.
    attrs : dict
        How it was made (slide, model, tile spec, TTA, version, ...): plain values.

    Examples
    --------
    >>> import numpy as np
    >>> g = ScoreGrid(np.zeros((1, 3, 4), np.float32), ("tumor_probability",), stride_level0_px=256,
    ...               tile_size_level0_px=512, slide_size_wh=(1024, 768), mpp=0.25)
    >>> g.shape_hw, g.cell_of(600, 300), [float(v) for v in g.center_xy(1, 2)], g.cell_um
    ((3, 4), (1, 2), [768.0, 512.0], 64.0)
    """

    values: np.ndarray
    channel_names: tuple[str, ...]
    stride_level0_px: int
    tile_size_level0_px: int
    slide_size_wh: tuple[int, int]
    mpp: float
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.channel_names = tuple(str(n) for n in self.channel_names)
        if self.values.ndim != 3:
            raise ValueError(f"values must be (channels, rows, cols), got shape {self.values.shape}")
        if len(self.channel_names) != self.values.shape[0] or len(set(self.channel_names)) != len(self.channel_names):
            raise ValueError(f"{self.values.shape[0]} channels need as many distinct names, got {self.channel_names}")

    @property
    def shape_hw(self) -> tuple[int, int]:
        """Grid ``(rows, cols)``."""
        return int(self.values.shape[1]), int(self.values.shape[2])

    def channel(self, name: str | None = None) -> np.ndarray:
        """The ``(rows, cols)`` values of channel ``name`` (``None``: the only channel).

        Raises
        ------
        ValueError
            No such channel, or ``None`` on a grid of several channels.
        """
        if name is None:
            if len(self.channel_names) != 1:
                raise ValueError(f"the grid has channels {self.channel_names}: name one")
            return self.values[0]
        if name not in self.channel_names:
            raise ValueError(f"no channel {name!r}; the grid has {self.channel_names}")
        return self.values[self.channel_names.index(name)]

    def cell_of(self, x: float, y: float) -> tuple[int, int]:
        """``(row, col)`` of the tile whose top-left corner is level-0 ``(x, y)``."""
        return int(y // self.stride_level0_px), int(x // self.stride_level0_px)

    def center_xy(self, row: np.ndarray | int, col: np.ndarray | int) -> tuple[Any, Any]:
        """Level-0 ``(x, y)`` centre of the tile in cell ``(row, col)``."""
        half = self.tile_size_level0_px / 2
        return (np.asarray(col) * self.stride_level0_px + half, np.asarray(row) * self.stride_level0_px + half)

    @property
    def cell_um(self) -> float:
        """Cell spacing in microns."""
        return self.stride_level0_px * self.mpp


def write_score_grid_h5(path: str | Path, grid: ScoreGrid, *, tiles: Mapping[str, np.ndarray] | None = None) -> Path:
    """Write ``scores`` (with geometry and provenance attributes) and per-tile arrays (atomic).

    Parameters
    ----------
    path : str or Path
    grid : ScoreGrid
    tiles : mapping of str to array_like, optional
        Per-tile arrays (e.g. ``coords``, ``probs``), stored as ``tiles/<name>``.

    Returns
    -------
    Path

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> g = ScoreGrid(np.full((2, 1, 2), 0.5, np.float32), ("tumor", "stroma"), stride_level0_px=256,
    ...               tile_size_level0_px=256, slide_size_wh=(512, 256), mpp=0.5, attrs={"model": "m"})
    >>> back = read_score_grid_h5(write_score_grid_h5(pathlib.Path(tempfile.mkdtemp()) / "s.h5", g))
    >>> back.channel_names, back.values.shape, back.slide_size_wh, back.attrs
    (('tumor', 'stroma'), (2, 1, 2), (512, 256), {'model': 'm'})
    """
    import h5py

    reserved = set(grid.attrs) & set(GRID_GEOMETRY_ATTRS)
    if reserved:
        raise ValueError(f"attrs {sorted(reserved)} are reserved for the grid's geometry")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset("scores", data=np.asarray(grid.values, np.float32), compression="gzip")
        write_attrs(ds.attrs, {"stride_level0_px": int(grid.stride_level0_px),
                               "tile_size_level0_px": int(grid.tile_size_level0_px),
                               "slide_size_wh": [int(v) for v in grid.slide_size_wh], "mpp": float(grid.mpp),
                               "channel_names": list(grid.channel_names), "layout": _GRID_LAYOUT})
        write_attrs(ds.attrs, grid.attrs)
        for name, arr in (tiles or {}).items():
            f.create_dataset(f"tiles/{name}", data=np.asarray(arr))
    return Path(path)


def read_score_grid_h5(path: str | Path) -> ScoreGrid:
    """Read a score grid written by :func:`write_score_grid_h5` (or an older one-``probs`` heatmap).

    Raises
    ------
    InputFileError
        Missing, not HDF5, no ``scores``/``probs`` dataset, or geometry attributes missing.
    """
    path = Path(path)
    try:
        with _open_h5(path, "score-grid") as f:
            if "scores" in f:
                ds = f["scores"]
                values = ds[()]
            elif "probs" in f:  # a heatmap written before score grids had channels
                ds = f["probs"]
                values = ds[()][None]
            else:
                raise InputFileError(path, "no 'scores' dataset: not a cadx score grid")
            a = plain_attrs(ds.attrs)
    except OSError as exc:
        raise InputFileError(path, f"unreadable HDF5 data ({exc})") from None
    names = tuple(a.pop("channel_names", [LEGACY_CHANNEL]))
    if values.ndim != 3 or len(names) != values.shape[0]:
        raise InputFileError(path, f"scores of shape {values.shape} do not match channel names {names}")
    missing = [k for k in ("stride_level0_px", "tile_size_level0_px", "slide_size_wh", "mpp") if k not in a]
    if missing:
        raise InputFileError(path, f"attribute {missing[0]!r} missing: not a cadx score grid")
    a.pop("layout", None)
    return ScoreGrid(values=values.astype(np.float32, copy=False), channel_names=names,
                     stride_level0_px=int(a.pop("stride_level0_px")),
                     tile_size_level0_px=int(a.pop("tile_size_level0_px")),
                     slide_size_wh=tuple(int(v) for v in a.pop("slide_size_wh")), mpp=float(a.pop("mpp")), attrs=a)


def read_score_grid_attrs(path: str | Path) -> dict[str, Any]:
    """The attributes of a score grid's ``scores`` dataset (geometry and provenance), without its values.

    Raises
    ------
    InputFileError
        Missing, not HDF5, or without a ``scores`` dataset.
    """
    path = Path(path)
    try:
        with _open_h5(path, "score-grid") as f:
            if "scores" not in f:
                raise InputFileError(path, "no 'scores' dataset: not a cadx score grid")
            return plain_attrs(f["scores"].attrs)
    except OSError as exc:
        raise InputFileError(path, f"unreadable HDF5 data ({exc})") from None


def update_score_grid_attrs(path: str | Path, attrs: Mapping[str, Any]) -> Path:
    """Rewrite a score grid with some provenance attributes changed (atomic: a copy, edited, renamed over).

    The values and per-tile arrays are left as they are; the file's modification time moves on.
    """
    import shutil

    import h5py

    path = Path(path)
    reserved = set(attrs) & set(GRID_GEOMETRY_ATTRS)
    if reserved:
        raise ValueError(f"attrs {sorted(reserved)} are reserved for the grid's geometry")
    with atomic_path(path) as tmp:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+") as f:
            write_attrs(f["scores"].attrs, attrs)
    return path


# --- tile features -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TileFeatures:
    """Contents of a features file: one feature vector per tile, CLAM's layout.

    Attributes
    ----------
    features : ndarray of float32, shape (N, D)
        Row ``i`` is the encoder's pooled features of tile ``i``.
    coords_xy : ndarray of int64, shape (N, 2)
        Level-0 ``(x, y)`` top-left corner of each tile.
    attrs : dict
        How the features were made (slide, mpp, tile size, encoder, weights, feature_dim,
        cadx_version, ...): plain values. Empty for a file CLAM wrote.
    """

    features: np.ndarray
    coords_xy: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.coords_xy)


def write_features_h5(path: str | Path, features: np.ndarray, coords_xy: np.ndarray,
                      attrs: Mapping[str, Any]) -> Path:
    """Write a features file (atomic): ``features`` (N, D) float32 and ``coords`` (N, 2) int64.

    The layout is CLAM's (``extract_features_fp.py``), so its MIL code reads the file unchanged:
    ``coords`` carries ``patch_level = 0`` and ``patch_size`` = the tile's level-0 footprint;
    ``attrs`` go on the ``features`` dataset (see :func:`write_attrs`).

    Parameters
    ----------
    path : str or Path
    features : array_like, shape (N, D)
        Stored as float32.
    coords_xy : array_like of int, shape (N, 2)
        Level-0 ``(x, y)`` top-left corners, in the order of ``features``.
    attrs : mapping
        Provenance; must hold ``tile_size_level0_px`` (CLAM's ``patch_size``).

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        Shapes that do not agree, or no ``tile_size_level0_px`` (a caller's bug).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = np.arange(6, dtype=np.float32).reshape(2, 3)
    >>> p = write_features_h5(pathlib.Path(tempfile.mkdtemp()) / "s.h5", f, [[0, 0], [448, 0]],
    ...                       {"tile_size_level0_px": 448, "encoder": "resnet50_trunc"})
    >>> tf = read_features_h5(p)
    >>> len(tf), tf.features.shape, tf.coords_xy.tolist(), tf.attrs["encoder"]
    (2, (2, 3), [[0, 0], [448, 0]], 'resnet50_trunc')
    >>> read_features_attrs(p)[1]
    2
    """
    import h5py

    feats = np.asarray(features, dtype=np.float32)
    coords = np.asarray(coords_xy, dtype=np.int64)
    if feats.ndim != 2 or coords.ndim != 2 or coords.shape[1] != 2 or len(coords) != len(feats):
        raise ValueError(f"expected features (N, D) and coords (N, 2), got {feats.shape} and {coords.shape}")
    if "tile_size_level0_px" not in attrs:
        raise ValueError("attrs must record tile_size_level0_px (CLAM's coords patch_size)")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset("features", data=feats)
        write_attrs(ds.attrs, attrs)
        c = f.create_dataset("coords", data=coords)
        write_attrs(c.attrs, {"patch_level": 0, "patch_size": int(attrs["tile_size_level0_px"])})
    return Path(path)


def _features_datasets(f: Any, path: Path) -> tuple[Any, Any]:
    """The ``features`` and ``coords`` datasets of an open file, checked for shape and dtype."""
    import h5py

    ds = {k: f.get(k) for k in ("features", "coords")}
    for name, d in ds.items():
        if not isinstance(d, h5py.Dataset):
            raise InputFileError(path, f"no '{name}' dataset: not a features file")
    feats, coords = ds["features"], ds["coords"]
    if (feats.ndim != 2 or coords.ndim != 2 or coords.shape[1] != 2 or feats.shape[0] != coords.shape[0]
            or feats.dtype.kind != "f" or coords.dtype.kind not in "iu"):
        raise InputFileError(path, f"features {feats.shape} {feats.dtype} and coords {coords.shape} {coords.dtype} "
                                   "are not (N, D) floats and (N, 2) integers: not a features file")
    return feats, coords


def read_features_h5(path: str | Path) -> TileFeatures:
    """Read a features file written by :func:`write_features_h5` (or by CLAM).

    Returns
    -------
    TileFeatures
        ``features`` as float32, ``coords_xy`` as int64.

    Raises
    ------
    InputFileError
        Missing, not HDF5, or without ``features`` (N, D) and ``coords`` (N, 2) datasets.
    """
    path = Path(path)
    try:
        with _open_h5(path, "features") as f:
            feats, coords = _features_datasets(f, path)
            return TileFeatures(features=feats[()].astype(np.float32, copy=False),
                                coords_xy=coords[()].astype(np.int64, copy=False), attrs=plain_attrs(feats.attrs))
    except OSError as exc:
        raise InputFileError(path, f"unreadable HDF5 data ({exc})") from None


def read_features_attrs(path: str | Path) -> tuple[dict[str, Any], int]:
    """The attributes and tile count N of a features file, without reading its arrays.

    Raises
    ------
    InputFileError
        Missing, not HDF5, or not a features file.
    """
    path = Path(path)
    try:
        with _open_h5(path, "features") as f:
            feats, _ = _features_datasets(f, path)
            return plain_attrs(feats.attrs), int(feats.shape[0])
    except OSError as exc:
        raise InputFileError(path, f"unreadable HDF5 data ({exc})") from None
