"""Tiling slides into CLAM-layout HDF5 files, with tumour fractions from ASAP annotations."""

from __future__ import annotations

import numpy as np
import pytest

from cadx.io.annotations import read_asap_xml
from cadx.io.h5 import read_coords_h5, write_coords_h5
from cadx.io.slide import open_slide
from cadx.preprocessing.masks import rasterize_polygons
from cadx.wsi.annotation_mask import write_annotation_mask_tiff
from cadx.wsi.tiling import tile_slide

from .conftest import SVS


def test_tile_slide_at_half_micron_with_tumour_fractions(tumor_slide):
    anns = read_asap_xml(tumor_slide.annotation_path)
    with open_slide(tumor_slide.path) as s:
        r = tile_slide(s, target_mpp=0.5, tile_size_px=128, min_tissue=0.5, annotations=anns)
    assert r.plan.level == 1 and r.plan.read_size_px == 128  # level 1 is 0.486 um/px, within 10%
    assert r.grid.size_level0_px == 256
    xy = r.coords_xy
    assert xy.dtype == np.int64 and (xy % 256 == 0).all()
    assert (xy >= 0).all() and (xy + 256 <= 4096).all()
    # Tumour fractions agree with the generator's own lesion polygons, rasterised per tile at level 0.
    lay = tumor_slide.layout
    for i in np.argsort(-r.arrays["tumor_fraction"])[:5]:
        x, y = xy[i]
        truth = rasterize_polygons(lay.tumor_polygons(), (256, 256), origin_xy=(x, y)).mean()
        assert r.arrays["tumor_fraction"][i] == pytest.approx(truth, abs=0.05)
    assert r.arrays["tumor_fraction"].max() > 0.5
    assert (r.arrays["tissue_fraction"] >= 0.5).all()


def test_tiles_cover_the_tissue(tumor_slide):
    with open_slide(tumor_slide.path) as s:
        r = tile_slide(s, target_mpp=0.5, tile_size_px=128, min_tissue=0.5)
    truth = rasterize_polygons([(p, 1) for p in tumor_slide.layout.tissue_xy], (4096 // 256, 4096 // 256),
                               downsample=256)
    kept = np.zeros_like(truth)
    kept[r.coords_xy[:, 1] // 256, r.coords_xy[:, 0] // 256] = 1
    # Every tile whose centre is in tissue is kept, up to a few at the boundary.
    assert (truth & ~kept.astype(bool)).sum() <= 0.1 * truth.sum()


def test_overlap_and_fixed_level(tumor_slide):
    with open_slide(tumor_slide.path) as s:
        r = tile_slide(s, level=0, tile_size_px=256, overlap_px=64, min_tissue=0.9)
    assert r.grid.stride_level0_px == 192 and r.attrs["patch_level"] == 0
    assert r.grid.grid_shape_hw == (21, 21)  # (4096 - 256) // 192 + 1 tile origins per side
    assert len(r.coords_xy) > 0  # the checks below must not pass on an empty array
    assert (r.coords_xy % 192 == 0).all() and (r.coords_xy + 256 <= 4096).all()
    assert (r.arrays["tissue_fraction"] >= 0.9).all()


def test_h5_round_trip_is_self_describing(tumor_slide, tmp_path):
    with open_slide(tumor_slide.path) as s:
        r = tile_slide(s, target_mpp=0.75, tile_size_px=224)  # no level within 10%: level 1, resized
    path = write_coords_h5(tmp_path / "tumor_001.h5", r.coords_xy, r.attrs, r.arrays)
    back = read_coords_h5(path)
    np.testing.assert_array_equal(back.coords_xy, r.coords_xy)
    for key in ("name", "patch_size", "patch_level", "downsample", "level_dim", "target_mpp", "tile_size_px",
                "min_tissue", "cadx_version", "tile_size_level0_px"):
        assert key in back.attrs
    assert back.attrs["name"] == "tumor_001" and back.attrs["target_mpp"] == 0.75
    assert back.attrs["patch_size"] == r.plan.read_size_px and r.plan.needs_resize
    assert back.arrays["tissue_fraction"].shape == (len(r.coords_xy),)


def test_real_svs_tiles(tmp_path):
    with open_slide(SVS) as s:
        r = tile_slide(s, target_mpp=0.5, tile_size_px=256)
    assert r.plan.level == 0 and r.plan.read_size_px == 256  # 0.499 um/px
    assert r.grid.grid_shape_hw == (11, 8)  # 2967 // 256 rows, 2220 // 256 columns
    # Tiles kept where at least half is tissue: about the tissue fraction of the 88 candidates.
    expected = r.tissue.mask.mean() * 88
    assert abs(len(r.coords_xy) - expected) <= 0.25 * expected


def test_annotation_mask_tiff_matches_rasterisation(tumor_slide, tmp_path):
    anns = read_asap_xml(tumor_slide.annotation_path)
    out = write_annotation_mask_tiff(tmp_path / "tumor_001_Mask.tif", anns, size_wh=(4096, 4096), mpp=0.243,
                                     n_levels=4)
    with open_slide(out) as m:
        assert m.level_count == 4 and m.mpp == pytest.approx(0.243)
        lvl3 = m.read_region((0, 0), 3, (512, 512))[:, :, 0]
    expect = rasterize_polygons(tumor_slide.layout.tumor_polygons(), (512, 512), downsample=8) * 255
    assert set(np.unique(lvl3)) <= {0, 255}
    assert (lvl3 != expect).mean() < 0.001


def test_tissue_detection_on_the_real_svs():
    from skimage.color import rgb2hsv

    from cadx.io.resolution import read_overview
    from cadx.wsi.tissue import detect_tissue

    with open_slide(SVS) as s:
        tm = detect_tissue(s, mask_mpp=4.0)
        overview, _ = read_overview(s, 4.0)
    assert tm.method == "otsu" and tm.mask.shape == overview.shape[:2]
    sat = rgb2hsv(overview)[:, :, 1]
    stained, glass = sat > 0.2, sat < 0.04
    assert tm.mask[stained].mean() > 0.85  # stained tissue is found
    assert tm.mask[glass].mean() < 0.1  # glass is not
    assert 0.2 < tm.mask.mean() < 0.7


def test_tile_cohort_collects_failures_and_skips_existing(cohort, tmp_path):
    from cadx.wsi.tiling import tile_cohort

    out_dir, slides = cohort
    train = [s.path for s in slides if s.split == "training"][:2]
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    out = tmp_path / "coords"
    r = tile_cohort([train[0], tmp_path / "broken.tif", train[1]], out, target_mpp=1.0, tile_size_px=128,
                    show_progress=False)
    assert [p.name for p in r.written] == [f"{train[0].stem}.h5", f"{train[1].stem}.h5"]
    assert [p.name for p, _ in r.failures] == ["broken.tif"] and "broken.tif" in r.failures[0][1]
    assert r.n_tiles == sum(len(read_coords_h5(p)) for p in r.written) > 0 and r.skipped == []
    before = (out / f"{train[0].stem}.h5").stat().st_mtime_ns
    again = tile_cohort(train, out, skip_existing=True, target_mpp=1.0, tile_size_px=128, show_progress=False)
    assert again.skipped == train and again.written == [] and again.n_tiles == 0
    assert (out / f"{train[0].stem}.h5").stat().st_mtime_ns == before


def test_pyramid_level_count_is_the_old_cli_rule():
    """``cadx annotations mask`` used its own loop; the shared counter must give the same levels."""
    from cadx.io.tiff import pyramid_level_count

    def old(w, h, level_count):
        n = 1
        while n < level_count and w % 2**n == 0 and h % 2**n == 0 and min(w, h) >> n >= 512:
            n += 1
        return n

    for w, h in [(4096, 4096), (3000, 2048), (3002, 2048), (1024, 800), (100000, 220000), (97792, 221184), (511, 9000)]:
        for levels in (1, 2, 3, 9):
            assert pyramid_level_count((w, h), max_levels=levels, exact=True) == old(w, h, levels), (w, h, levels)
