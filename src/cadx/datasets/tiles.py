"""Tile datasets that read pixels on the fly from the slides via the HDF5 coordinates.

Labels follow Liu et al. (2017): a tile is tumour when at least half of its central region is
inside a tumour annotation, normal when it touches no tumour at all; tiles in between are left
out of training. Each worker process keeps its slides open (no per-item reopen).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cadx.errors import InputFileError
from cadx.io.h5 import read_coords_h5
from cadx.io.resolution import ReadPlan
from cadx.io.slide import SlideReader, open_slide
from cadx.preprocessing.augment import to_model_input

log = logging.getLogger(__name__)

TUMOR, NORMAL, IGNORE = 1, 0, -1


@dataclass
class SlideTiles:
    """One slide's labelled tiles."""

    name: str
    slide_path: Path
    coords_xy: np.ndarray
    labels: np.ndarray
    plan: ReadPlan
    slide_label: int

    def count(self, label: int) -> int:
        return int((self.labels == label).sum())


@dataclass
class TileIndex:
    """All labelled tiles of a set of slides; positions are ``(slide index, tile index)``.

    ``context_mpp`` adds a coarser tile with the same centre behind each tile (6 channels).
    """

    slides: list[SlideTiles] = field(default_factory=list)
    context_mpp: float | None = None

    def subset(self, names: Sequence[str]) -> TileIndex:
        keep = set(names)
        return TileIndex([s for s in self.slides if s.name in keep], self.context_mpp)

    def positions(self, label: int | None = None) -> np.ndarray:
        """``(N, 2)`` array of (slide, tile) pairs, optionally of one label."""
        out = [np.stack([np.full(len(idx), i), idx], 1)
               for i, s in enumerate(self.slides)
               for idx in [np.flatnonzero(s.labels == label if label is not None else s.labels != IGNORE)]]
        return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 2), np.int64)

    def labels_at(self, positions: np.ndarray) -> np.ndarray:
        return np.array([self.slides[s].labels[t] for s, t in positions], np.int64)


def label_tiles(tumor_fraction_center: np.ndarray | None, tumor_fraction: np.ndarray | None, n: int,
                *, min_center: float = 0.5) -> np.ndarray:
    """Tumour (>= ``min_center`` of the centre), normal (no tumour anywhere), else ignored."""
    if tumor_fraction_center is None or tumor_fraction is None:
        return np.zeros(n, np.int64)
    labels = np.full(n, IGNORE, np.int64)
    labels[tumor_fraction <= 0] = NORMAL
    labels[tumor_fraction_center >= min_center] = TUMOR
    return labels


def build_tile_index(coords_files: Sequence[str | Path], *, min_center: float = 0.5,
                     context_mpp: float | None = None, any_tumor: bool = False) -> TileIndex:
    """Read coordinate files written by ``cadx slide tile --annotations`` into a :class:`TileIndex`.

    The slide path and read plan come from each file's attributes (self-describing artefacts).
    Tiles are labelled by :func:`label_tiles`, or, with ``any_tumor`` (segmentation, where every
    tile is usable), tumour when any of it is tumour and normal otherwise.
    """
    slides = []
    for f in coords_files:
        tc = read_coords_h5(f)
        a = tc.attrs
        if "tumor_fraction" not in tc.arrays:
            raise InputFileError(f, "no tumour fractions: tile with --annotations (a directory of <slide>.xml) "
                                 "so every slide, tumour or normal, is labelled")
        plan = ReadPlan(level=int(a["patch_level"]), level_downsample=float(a["downsample"][0]),
                        level_mpp=float(a["level_mpp"]), target_mpp=float(a["target_mpp"]),
                        out_size_px=int(a["tile_size_px"]), read_size_px=int(a["read_size_px"]))
        labels = label_tiles(tc.arrays.get("tumor_fraction_center"), tc.arrays.get("tumor_fraction"),
                             len(tc.coords_xy), min_center=min_center)
        if any_tumor:
            labels = np.where(tc.arrays["tumor_fraction"] > 0, TUMOR, NORMAL).astype(np.int64)
        slides.append(SlideTiles(str(a["name"]), Path(a["slide_path"]), tc.coords_xy, labels, plan,
                                 slide_label=int((labels == TUMOR).any())))
    return TileIndex(slides, context_mpp)


class BalancedSampler:
    """The seed's sampling: tumour or normal with probability 1/2, then a slide, then a tile.

    Iterating yields ``(slide, tile)`` pairs forever (or ``num_samples`` of them).

    Parameters
    ----------
    index : TileIndex
    seed : int
    num_samples : int, optional
    """

    def __init__(self, index: TileIndex, *, seed: int = 0, num_samples: int | None = None) -> None:
        self.index = index
        self.seed = seed
        self.num_samples = num_samples
        self._by_label = {}
        for label in (TUMOR, NORMAL):
            per_slide = [(i, np.flatnonzero(s.labels == label)) for i, s in enumerate(index.slides)]
            self._by_label[label] = [(i, idx) for i, idx in per_slide if len(idx)]
        missing = [name for name, lab in (("tumour", TUMOR), ("normal", NORMAL)) if not self._by_label[lab]]
        if missing:
            raise ValueError(f"no {' or '.join(missing)} tiles to sample from: check the annotations and tiling")

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng(self.seed)
        n = 0
        while self.num_samples is None or n < self.num_samples:
            label = TUMOR if rng.random() < 0.5 else NORMAL
            slides = self._by_label[label]
            slide, tiles = slides[rng.integers(len(slides))]
            yield int(slide), int(tiles[rng.integers(len(tiles))])
            n += 1

    def __len__(self) -> int:
        return self.num_samples or 0


class TileReader:
    """Reads tiles of an index, keeping each slide open once per process."""

    def __init__(self, index: TileIndex) -> None:
        self.index = index
        self._open: dict[int, SlideReader] = {}
        self._context: dict[int, ReadPlan] = {}

    def slide(self, i: int) -> SlideReader:
        if i not in self._open:
            self._open[i] = open_slide(self.index.slides[i].slide_path)
        return self._open[i]

    def read(self, slide: int, tile: int, *, shift_xy: tuple[int, int] = (0, 0)) -> np.ndarray:
        from cadx.io.resolution import plan_read, read_tile, read_tile_with_context

        st = self.index.slides[slide]
        x, y = st.coords_xy[tile]
        loc = (int(x) + shift_xy[0], int(y) + shift_xy[1])
        if self.index.context_mpp is None:
            return read_tile(self.slide(slide), loc, st.plan)
        if slide not in self._context:
            self._context[slide] = plan_read(self.slide(slide), self.index.context_mpp, st.plan.out_size_px)
        return read_tile_with_context(self.slide(slide), loc, st.plan, self._context[slide])

    def close(self) -> None:
        for s in self._open.values():
            s.close()
        self._open.clear()


class TileDataset:
    """A map-style dataset over tile positions: returns ``(CHW float32, label)``.

    Augmentation is reproducible from the seed alone: the random generator of an item is
    ``np.random.default_rng([seed, slide, tile, draw])``, the same in every process and worker and
    however often the item is read.

    Parameters
    ----------
    index : TileIndex
    mean, std : sequence of float
        Normalisation of the model (from ``model.cadx_config``).
    transform : callable, optional
        ``transform(tile (H, W, C) uint8, rng) -> (H, W, C) uint8``, e.g.
        :class:`cadx.preprocessing.augment.TileAugment`; ``None``: tiles as read.
    jitter_frac : float
        Translation jitter when reading: the tile origin moves by up to this fraction of the tile
        side (level-0 pixels) in x and y; ``0``: none. A shifted read that leaves the slide falls
        back to the unshifted tile.
    seed : int

    Notes
    -----
    Items are ``(slide, tile)`` or ``(slide, tile, draw)``: ``draw`` (e.g. the sample's number in
    the training stream) gives the same tile a different augmentation each time it is drawn; it is
    0 when left out.
    """

    def __init__(self, index: TileIndex, *, mean: Sequence[float], std: Sequence[float],
                 transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
                 jitter_frac: float = 0.0, seed: int = 0) -> None:
        self.index = index
        self.mean, self.std = tuple(mean), tuple(std)
        self.transform = transform
        self.jitter_frac = jitter_frac
        self.seed = seed
        self._reader: TileReader | None = None

    def __getitem__(self, pos: tuple[int, int] | tuple[int, int, int]) -> tuple[np.ndarray, int]:
        if self._reader is None:
            self._reader = TileReader(self.index)
        slide, tile = int(pos[0]), int(pos[1])
        draw = int(pos[2]) if len(pos) > 2 else 0
        label = int(self.index.slides[slide].labels[tile])
        img = None
        rng = np.random.default_rng([self.seed, slide, tile, draw])
        j = int(self.jitter_frac * self.index.slides[slide].plan.size_level0_px)
        if j:
            shift = tuple(int(v) for v in rng.integers(-j, j + 1, 2))
            try:
                img = self._reader.read(slide, tile, shift_xy=shift)
            except InputFileError:
                img = None
        if img is None:
            img = self._reader.read(slide, tile)
        if self.transform is not None:
            img = self.transform(img, rng)
        return to_model_input(img[None], self.mean, self.std)[0], max(label, 0)
