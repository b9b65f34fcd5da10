"""Tile labels, class-balanced sampling, augmentation, and the on-the-fly tile dataset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cadx.datasets.tiles import (
    IGNORE,
    NORMAL,
    TUMOR,
    BalancedSampler,
    SlideTiles,
    TileDataset,
    TileIndex,
    build_tile_index,
    label_tiles,
)
from cadx.io.resolution import ReadPlan
from cadx.preprocessing.augment import ColorJitter, TileAugment, dihedral, to_model_input

PLAN = ReadPlan(level=0, level_downsample=1.0, level_mpp=0.5, target_mpp=0.5, out_size_px=32, read_size_px=32)


def _slide(name: str, n_tumor: int, n_normal: int) -> SlideTiles:
    labels = np.array([TUMOR] * n_tumor + [NORMAL] * n_normal + [IGNORE] * 3)
    return SlideTiles(name, Path(f"{name}.tif"), np.zeros((len(labels), 2), np.int64), labels, PLAN,
                      slide_label=int(n_tumor > 0))


def test_label_rule():
    centre = np.array([0.0, 0.6, 0.3, 0.0])
    whole = np.array([0.0, 0.4, 0.2, 0.01])
    assert label_tiles(centre, whole, 4).tolist() == [NORMAL, TUMOR, IGNORE, IGNORE]
    assert label_tiles(None, None, 3).tolist() == [NORMAL] * 3


def test_balanced_sampling_class_then_slide_then_tile():
    index = TileIndex([_slide("a", 10, 0), _slide("b", 0, 1000), _slide("c", 5, 100)])
    picks = list(BalancedSampler(index, seed=1, num_samples=8000))
    labels = index.labels_at(np.array(picks))
    assert abs((labels == TUMOR).mean() - 0.5) < 0.03  # 1:1 although tumour tiles are 15 of 1115
    assert (labels != IGNORE).all()
    tumour_slides = Counter(s for (s, t), lab in zip(picks, labels, strict=True) if lab == TUMOR)
    assert abs(tumour_slides[0] / sum(tumour_slides.values()) - 0.5) < 0.05  # slides equally, not tiles
    normal_slides = Counter(s for (s, t), lab in zip(picks, labels, strict=True) if lab == NORMAL)
    assert abs(normal_slides[1] / sum(normal_slides.values()) - 0.5) < 0.05
    assert picks[:50] == list(BalancedSampler(index, seed=1, num_samples=50))  # seeded


def test_sampler_needs_both_classes():
    with pytest.raises(ValueError, match="no tumour"):
        BalancedSampler(TileIndex([_slide("b", 0, 10)]))


def test_dihedral_group():
    tile = np.arange(3 * 3 * 3, dtype=np.uint8).reshape(3, 3, 3)
    outs = {dihedral(tile, k).tobytes() for k in range(8)}
    assert len(outs) == 8
    assert np.array_equal(dihedral(dihedral(tile, 1), 3), tile)


def test_color_jitter_and_normalisation():
    tile = np.full((8, 8, 3), (200, 120, 180), np.uint8)
    out = ColorJitter()(tile, np.random.default_rng(0))
    assert out.shape == tile.shape and out.dtype == np.uint8 and not np.array_equal(out, tile)
    assert np.array_equal(ColorJitter(0, 0, 0, 0)(tile, np.random.default_rng(0)), tile)
    x = to_model_input(np.array([[[[0, 128, 255]]]], np.uint8), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    np.testing.assert_allclose(x.ravel(), [-1.0, 128 / 255 * 2 - 1, 1.0], atol=1e-6)


@pytest.fixture(scope="module")
def tiled_cohort(cohort, tmp_path_factory):
    from cadx.wsi.tiling import find_slides, tile_cohort

    out_dir, _ = cohort
    coords = tmp_path_factory.mktemp("coords")
    tile_cohort(find_slides([out_dir / "training"]), coords, annotations=out_dir / "training/lesion_annotations",
                target_mpp=0.5, tile_size_px=64, show_progress=False)
    return sorted(coords.glob("*.h5"))


def test_tile_index_from_coordinate_files(tiled_cohort):
    index = build_tile_index(tiled_cohort)
    by_name = {s.name: s for s in index.slides}
    assert set(by_name) == {"tumor_001", "tumor_002", "normal_001"}
    assert by_name["normal_001"].count(TUMOR) == 0 and by_name["normal_001"].slide_label == 0
    assert by_name["tumor_001"].count(TUMOR) > 0 and by_name["tumor_001"].slide_label == 1
    assert by_name["tumor_001"].plan.out_size_px == 64


def test_tile_augment_same_change_for_tile_and_context():
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = TileAugment()(np.concatenate([tile, tile], axis=2), np.random.default_rng(5))
    assert out.shape == (8, 8, 6) and np.array_equal(out[..., :3], out[..., 3:])
    assert not np.array_equal(out[..., :3], tile)
    k = int(np.random.default_rng(5).integers(8))  # the first draw picks the symmetry
    assert np.array_equal(TileAugment(color=None)(tile, np.random.default_rng(5)), dihedral(tile, k))
    assert np.array_equal(TileAugment(color=None, symmetries=False)(tile, rng), tile)


def test_tile_dataset_reads_normalised_tiles(tiled_cohort):
    index = build_tile_index(tiled_cohort)
    ds = TileDataset(index, mean=(0.5,) * 3, std=(0.5,) * 3, transform=TileAugment(), jitter_frac=0.1, seed=0)
    pos = tuple(index.positions(TUMOR)[0])
    x, y = ds[pos]
    assert x.shape == (3, 64, 64) and x.dtype == np.float32 and y == 1
    # Normalised with mean = std = 0.5: x = v / 127.5 - 1 for uint8 values v, so (x + 1) * 127.5 is whole.
    v = (x.astype(np.float64) + 1) * 127.5
    np.testing.assert_allclose(v, np.round(v), atol=1e-3)
    assert v.min() >= 0 and v.max() <= 255
    # Without augmentation the item is exactly the tile read at its coordinates, normalised, channels first.
    from cadx.io.resolution import read_tile
    from cadx.io.slide import open_slide

    plain = TileDataset(index, mean=(0.5,) * 3, std=(0.5,) * 3)
    st = index.slides[pos[0]]
    with open_slide(st.slide_path) as slide:
        tile = read_tile(slide, tuple(int(c) for c in st.coords_xy[pos[1]]), st.plan)
    np.testing.assert_allclose(plain[pos][0], tile.transpose(2, 0, 1) / 127.5 - 1, atol=1e-6)
    assert not np.array_equal(plain[pos][0], x)


def _read_in_workers(ds, items):
    from torch.utils.data import DataLoader

    return [x for x, _ in DataLoader(ds, batch_size=None, sampler=items, num_workers=2)]


def test_augmentation_is_reproducible_from_the_seed(tiled_cohort):
    """Same seed and item: the same augmented tile in any dataset, process or worker, on any read."""
    index = build_tile_index(tiled_cohort)
    pos = [tuple(int(v) for v in p) for p in index.positions(TUMOR)[:2]]

    def make(seed):
        return TileDataset(index, mean=(0.5,) * 3, std=(0.5,) * 3, transform=TileAugment(), jitter_frac=0.1,
                           seed=seed)

    items = [(*pos[0], 0), (*pos[0], 0), (*pos[0], 1), (*pos[1], 0), (*pos[0], 0)]
    here = [make(3)[item][0] for item in items]
    np.testing.assert_array_equal(here[0], here[1])  # read twice in one process
    np.testing.assert_array_equal(here[0], here[4])
    np.testing.assert_array_equal(here[0], make(3)[pos[0]][0])  # draw 0 is the default
    assert not np.array_equal(here[0], here[2])  # another draw of the same tile: another augmentation
    assert not np.array_equal(here[0], make(4)[items[0]][0])  # another seed
    for got, want in zip(_read_in_workers(make(3), items), here, strict=True):  # worker processes
        np.testing.assert_array_equal(np.asarray(got), want)


def test_multiscale_context_tiles(tiled_cohort):
    index = build_tile_index(tiled_cohort, context_mpp=2.0)
    ds = TileDataset(index, mean=(0.5,) * 6, std=(0.5,) * 6)
    pos = tuple(index.positions(TUMOR)[0])
    x, y = ds[pos]
    assert x.shape == (6, 64, 64) and y == 1
    assert not np.allclose(x[:3], x[3:])  # the context is a different (coarser) view
    aug = TileDataset(index, mean=(0.5,) * 6, std=(0.5,) * 6, transform=TileAugment(), jitter_frac=0.1, seed=1)
    assert aug[pos][0].shape == (6, 64, 64)
    # A symmetry turns the tile and its context together: the same one of the 8 for all 6 channels (seed 3
    # draws symmetry 4 for this tile, not the identity).
    turned = TileDataset(index, mean=(0.5,) * 6, std=(0.5,) * 6, transform=TileAugment(color=None), seed=3)
    got, hwc = turned[pos][0].transpose(1, 2, 0), x.transpose(1, 2, 0)
    assert [k for k in range(8) if np.array_equal(got, dihedral(hwc, k))] == [4]
