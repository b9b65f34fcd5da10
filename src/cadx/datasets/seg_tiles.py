"""Tile/mask pairs for segmentation, read on the fly from the slides and their ASAP XML polygons.

The tiles are those of a :class:`~cadx.datasets.tiles.TileIndex` (coordinates files of
``cadx slide tile --annotations``, built with ``any_tumor=True`` so that a tile is *tumour* when any
of it is tumour: :class:`~cadx.datasets.tiles.BalancedSampler` then draws tumour-containing and
tumour-free tiles half and half). Each tile's mask is rasterised from the slide's polygons at the
tile's own origin and scale (:func:`tile_mask`), ``_2`` holes painted last as background, so tile
and mask are aligned pixel for pixel whatever level and resize the read plan uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from cadx.datasets.tiles import TileIndex, TileReader
from cadx.errors import InputFileError
from cadx.io.annotations import polygons_in_paint_order, read_asap_xml
from cadx.io.resolution import ReadPlan
from cadx.preprocessing.augment import to_model_input
from cadx.preprocessing.masks import rasterize_polygons

#: ``(coords_xy (N, 2) level-0 px, label)`` pairs in paint order (holes last, label 0).
Polygons = Sequence[tuple[np.ndarray, int]]


def tile_mask(polygons: Polygons, location_xy: Sequence[int], plan: ReadPlan) -> np.ndarray:
    """The tumour mask of the tile at ``location_xy`` read with ``plan``.

    Parameters
    ----------
    polygons : sequence of (coords_xy, label)
        Level-0 polygons in paint order (:func:`cadx.io.annotations.polygons_in_paint_order`).
    location_xy : (int, int)
        The tile's top-left corner in level-0 pixels.
    plan : ReadPlan
        How the tile is read (its level-0 footprint and output size).

    Returns
    -------
    ndarray of uint8, shape (out_size_px, out_size_px)
        1 where the pixel centre is tumour, 0 elsewhere (holes included).

    Examples
    --------
    >>> import numpy as np
    >>> from cadx.io.resolution import ReadPlan
    >>> plan = ReadPlan(level=1, level_downsample=2.0, level_mpp=0.5, target_mpp=0.5, out_size_px=8,
    ...                 read_size_px=8)
    >>> square = np.array([[100, 100], [116, 100], [116, 116], [100, 116]], float)
    >>> int(tile_mask([(square, 1)], (100, 100), plan).sum()), int(tile_mask([(square, 1)], (108, 100), plan).sum())
    (64, 32)
    """
    ds = plan.level_downsample * plan.read_size_px / plan.out_size_px
    return rasterize_polygons(polygons, (plan.out_size_px, plan.out_size_px), downsample=ds,
                              origin_xy=(float(location_xy[0]), float(location_xy[1])))


def slide_polygons(index: TileIndex, annotations_dir: str | Path) -> dict[str, list[tuple[np.ndarray, int]]]:
    """Each slide's polygons in paint order from ``annotations_dir/<slide>.xml`` (none: an empty list).

    Raises
    ------
    AnnotationError
        An XML file that cannot be read.
    """
    root = Path(annotations_dir)
    out = {}
    for s in index.slides:
        xml = root / f"{s.name}.xml"
        out[s.name] = polygons_in_paint_order(read_asap_xml(xml)) if xml.is_file() else []
    return out


class SegTileDataset:
    """A map-style dataset over tile positions: ``(tile (C, H, W) float32, mask (1, H, W) float32 in {0, 1})``.

    Augmentation is reproducible from the seed alone, as in :class:`~cadx.datasets.tiles.TileDataset`:
    item ``(slide, tile, draw)`` uses ``np.random.default_rng([seed, slide, tile, draw])`` for its
    translation jitter and its transform, and the mask follows the tile through both.

    Parameters
    ----------
    index : TileIndex
        Without context tiles.
    polygons : mapping of str to polygons
        Slide name -> level-0 polygons in paint order (:func:`slide_polygons`); a slide missing
        here has an all-background mask.
    mean, std : sequence of float
        Normalisation of the model (from ``model.cadx_config``).
    transform : callable, optional
        ``transform(tile (H, W, 3) uint8, mask (H, W), rng) -> (tile, mask)``, e.g.
        :class:`cadx.preprocessing.augment.TileMaskAugment`; ``None``: as read.
    jitter_frac : float
        The tile origin moves by up to this fraction of the tile side (level-0 px); a shifted read
        that leaves the slide falls back to the unshifted tile.
    seed : int
    """

    def __init__(self, index: TileIndex, polygons: Mapping[str, Polygons], *, mean: Sequence[float],
                 std: Sequence[float],
                 transform: Callable[[np.ndarray, np.ndarray, np.random.Generator],
                                     tuple[np.ndarray, np.ndarray]] | None = None,
                 jitter_frac: float = 0.0, seed: int = 0) -> None:
        if index.context_mpp is not None:
            raise ValueError("segmentation tiles take no context tile (index.context_mpp must be None)")
        self.index = index
        self.polygons = polygons
        self.mean, self.std = tuple(mean), tuple(std)
        self.transform = transform
        self.jitter_frac = jitter_frac
        self.seed = seed
        self._reader: TileReader | None = None

    def read_pair(self, slide: int, tile: int, *, shift_xy: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
        """Tile ``(H, W, 3)`` uint8 and its mask ``(H, W)`` uint8, the origin moved by ``shift_xy`` level-0 px."""
        if self._reader is None:
            self._reader = TileReader(self.index)
        st = self.index.slides[slide]
        img = self._reader.read(slide, tile, shift_xy=shift_xy)
        x, y = (int(v) for v in st.coords_xy[tile])
        mask = tile_mask(self.polygons.get(st.name, ()), (x + shift_xy[0], y + shift_xy[1]), st.plan)
        return img, mask

    def __getitem__(self, pos: tuple[int, int] | tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        slide, tile = int(pos[0]), int(pos[1])
        draw = int(pos[2]) if len(pos) > 2 else 0
        rng = np.random.default_rng([self.seed, slide, tile, draw])
        pair = None
        j = int(self.jitter_frac * self.index.slides[slide].plan.size_level0_px)
        if j:
            shift = tuple(int(v) for v in rng.integers(-j, j + 1, 2))
            try:
                pair = self.read_pair(slide, tile, shift_xy=shift)
            except InputFileError:
                pair = None
        img, mask = pair if pair is not None else self.read_pair(slide, tile)
        if self.transform is not None:
            img, mask = self.transform(img, mask, rng)
        x = to_model_input(img[None], self.mean, self.std)[0]
        return x, np.ascontiguousarray(mask, dtype=np.float32)[None]

    def close(self) -> None:
        """Close the slides this dataset opened."""
        if self._reader is not None:
            self._reader.close()
