"""Segmentation tile/mask pairs: rasterisation at the tile's origin and scale, holes, aligned augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from cadx.datasets.seg_tiles import SegTileDataset, slide_polygons, tile_mask
from cadx.datasets.tiles import NORMAL, TUMOR, BalancedSampler, SlideTiles, TileIndex, build_tile_index
from cadx.io.annotations import Annotation, polygons_in_paint_order
from cadx.io.resolution import ReadPlan
from cadx.preprocessing.augment import ColorJitter, TileMaskAugment, dihedral


def _plan(level_downsample: float, read: int, out: int) -> ReadPlan:
    return ReadPlan(level=0, level_downsample=level_downsample, level_mpp=0.25 * level_downsample, target_mpp=0.5,
                    out_size_px=out, read_size_px=read)


def test_tile_mask_known_answer_with_a_hole():
    # Tumour square 0..80 with a _2 hole 20..40 (level 0); a tile of 16 px covering 0..64 level-0 px
    # (read 32 px at downsample 2, resized to 16: 4 level-0 px per mask pixel).
    tumour = Annotation(np.array([[0, 0], [80, 0], [80, 80], [0, 80]], float), group="_0")
    hole = Annotation(np.array([[20, 20], [40, 20], [40, 40], [20, 40]], float), group="_2")
    polys = polygons_in_paint_order([hole, tumour])  # the hole is painted last whatever the file order
    m = tile_mask(polys, (0, 0), _plan(2.0, 32, 16))
    want = np.ones((16, 16), np.uint8)
    want[5:10, 5:10] = 0  # pixel centres 22, 26, ..., 38 lie in the hole
    np.testing.assert_array_equal(m, want)
    # The same tile moved right by 48 level-0 px: columns 0..7 are tumour (centres 50..78 < 80).
    m2 = tile_mask(polys, (48, 0), _plan(2.0, 32, 16))
    assert m2[:, :8].all() and not m2[:, 8:].any()


def test_augmentation_moves_tile_and_mask_together():
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 200, (8, 8, 3), dtype=np.uint8)
    tile[1:3, 2:6] = 255  # the "tumour" is white, an L shape that no symmetry maps onto itself
    tile[3, 2] = 255
    mask = (tile.min(axis=2) == 255).astype(np.float32)
    aug = TileMaskAugment(color=ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.0))
    seen = set()
    for seed in range(12):
        t, m = aug(tile, mask, np.random.default_rng(seed))
        k = next(k for k in range(8) if np.array_equal(m, dihedral(mask, k)))
        seen.add(k)
        # The tile underwent the same symmetry: its brightest pixels are the mask's.
        np.testing.assert_array_equal(t.sum(axis=2) == t.sum(axis=2).max(), m > 0)
    assert len(seen) > 3


@pytest.fixture(scope="module")
def seg_index(cohort, tmp_path_factory):
    from cadx.wsi.tiling import find_slides, tile_cohort

    out_dir, _ = cohort
    coords = tmp_path_factory.mktemp("seg_coords")
    slides = find_slides([out_dir / "training" / "tumor"])[:1]
    tile_cohort(slides, coords, annotations=out_dir / "training" / "lesion_annotations", target_mpp=1.0,
                tile_size_px=32, min_tissue=0.5, show_progress=False)
    index = build_tile_index(sorted(coords.glob("*.h5")), any_tumor=True)
    return index, slide_polygons(index, out_dir / "training" / "lesion_annotations")


def test_dataset_pairs_and_balanced_sampling(seg_index):
    index, polygons = seg_index
    st = index.slides[0]
    assert st.count(TUMOR) and st.count(NORMAL)
    ds = SegTileDataset(index, polygons, mean=(0.5,) * 3, std=(0.5,) * 3)
    sums = {TUMOR: [], NORMAL: []}
    for s, t in BalancedSampler(index, seed=0, num_samples=24):
        x, y = ds[(s, t)]
        assert x.shape == (3, 32, 32) and x.dtype == np.float32
        assert y.shape == (1, 32, 32) and y.dtype == np.float32 and set(np.unique(y)) <= {0.0, 1.0}
        sums[int(st.labels[t])].append(y.sum())
    # Both kinds are drawn; tumour-free tiles have (all but) empty masks, tumour-containing ones (by the coarse
    # tiling raster) mostly do not.
    assert len(sums[TUMOR]) >= 6 and len(sums[NORMAL]) >= 6
    assert max(sums[NORMAL]) <= 0.02 * 32 * 32 and np.mean([v > 0 for v in sums[TUMOR]]) > 0.5
    # The mask follows the tile through the augmentation, seeded per (slide, tile, draw).
    tumour_tile = next(t for t in np.flatnonzero(st.labels == TUMOR) if ds[(0, t)][1].sum() > 20)
    aug = SegTileDataset(index, polygons, mean=(0.5,) * 3, std=(0.5,) * 3, transform=TileMaskAugment(color=None))
    plain_x, plain_y = ds[(0, tumour_tile)]
    x1, y1 = aug[(0, tumour_tile, 1)]
    assert np.array_equal(x1, aug[(0, tumour_tile, 1)][0])  # reproducible
    k = next(k for k in range(8) if np.array_equal(x1[0], dihedral(plain_x[0], k)))
    np.testing.assert_array_equal(y1[0], dihedral(plain_y[0], k))
    ds.close()
    aug.close()


def test_slides_without_annotations_are_background(tmp_path):
    st = SlideTiles("normal_009", tmp_path / "x.tif", np.zeros((1, 2), np.int64), np.zeros(1, np.int64),
                    _plan(1.0, 16, 16), slide_label=0)
    assert slide_polygons(TileIndex([st]), tmp_path) == {"normal_009": []}
    with pytest.raises(ValueError, match="context"):
        SegTileDataset(TileIndex([st], context_mpp=2.0), {}, mean=(0,) * 3, std=(1,) * 3)
