"""Synthetic CAMELYON-style slides: real pyramidal TIFFs with known ground truth."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from cadx.io.annotations import read_asap_xml
from cadx.io.slide import open_slide
from cadx.preprocessing.masks import rasterize_polygons
from cadx.synth.cohort import layout_annotations, snap_size, write_synthetic_slide
from cadx.synth.layout import make_layout
from cadx.synth.render import render_region
from cadx.wsi.tissue import detect_tissue


def test_cohort_layout_and_reference(cohort):
    out, slides = cohort
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    for expected in ["training/tumor/tumor_001.tif", "training/tumor/tumor_002.tif", "training/normal/normal_001.tif",
                     "training/lesion_annotations/tumor_001.xml", "testing/images/test_001.tif",
                     "testing/images/test_002.tif", "testing/reference.csv", "cohort.csv"]:
        assert expected in names
    rows = list(csv.reader((out / "testing/reference.csv").open()))
    assert [r[0] for r in rows] == ["test_001", "test_002"]
    assert sorted(r[1] for r in rows) == ["Normal", "Tumor"]
    for r in rows:
        assert (r[1] == "Tumor") == (out / f"testing/lesion_annotations/{r[0]}.xml").exists()
    manifest = list(csv.DictReader((out / "cohort.csv").open()))
    assert [m["slide"] for m in manifest] == ["tumor_001", "tumor_002", "normal_001", "test_001", "test_002"]
    assert [m["centre"] for m in manifest] == ["B", "B", "A", "A", "B"]  # both staining centres, by seed


def test_generated_slide_reopens_with_right_geometry(tumor_slide):
    with open_slide(tumor_slide.path) as s:
        assert s.vendor == "generic-tiff"
        assert s.level_count == 4
        assert s.level_dimensions == ((4096, 4096), (2048, 2048), (1024, 1024), (512, 512))
        assert s.level_downsamples == (1.0, 2.0, 4.0, 8.0)
        assert s.mpp == pytest.approx(0.243)


def test_annotations_match_the_lesions(tumor_slide):
    anns = read_asap_xml(tumor_slide.annotation_path)
    lesions = tumor_slide.layout.lesions
    assert sum(a.group in ("_0", "_1") for a in anns) == len(lesions) >= 1
    assert sum(a.group == "_2" for a in anns) == sum(len(les.holes_xy) for les in lesions)


def test_tumour_pixels_differ_from_normal_pixels(tumor_slide):
    """The rendered tumour region has more, darker nuclear stain than the tissue around it."""
    layout = tumor_slide.layout
    les = max(layout.lesions, key=lambda x: x.diameter_um)
    cx, cy = les.outline_xy.mean(axis=0)
    origin = (int(cx) - 512, int(cy) - 512)  # 1024 px around a ~930 px lesion: tumour and normal tissue both
    with open_slide(tumor_slide.path) as s:
        px = s.read_region(origin, 0, (1024, 1024)).astype(float)
    truth = rasterize_polygons(layout.tumor_polygons(), (1024, 1024), origin_xy=origin) > 0
    tissue = rasterize_polygons([(p, 1) for p in layout.tissue_xy], (1024, 1024), origin_xy=origin) > 0
    normal = tissue & ~truth
    assert truth.sum() > 100_000 and normal.sum() > 100_000
    dark = px.mean(-1) < 120
    assert dark[truth].mean() > dark[normal].mean() + 0.05


def test_deterministic_by_seed(tmp_path):
    a = make_layout(size_wh=(4096, 4096), seed=11, tumor=True)
    b = make_layout(size_wh=(4096, 4096), seed=11, tumor=True)
    c = make_layout(size_wh=(4096, 4096), seed=12, tumor=True)
    np.testing.assert_array_equal(a.lesions[0].outline_xy, b.lesions[0].outline_xy)
    assert not np.array_equal(a.tissue_xy[0], c.tissue_xy[0])
    np.testing.assert_array_equal(render_region(a, 1000, 1000, 64, 64, 1.0), render_region(b, 1000, 1000, 64, 64, 1.0))


def test_tiles_render_consistently_across_boundaries():
    """A region equals the same region assembled from four quarters (no seams from tiling)."""
    lay = make_layout(size_wh=(4096, 4096), seed=3, tumor=True, artefacts=False)
    cx, cy = (int(v) for v in lay.lesions[0].outline_xy.mean(axis=0))
    whole = render_region(lay, cx, cy, 128, 128, 1.0).astype(int)
    top = np.concatenate([render_region(lay, cx, cy, 64, 64, 1.0), render_region(lay, cx + 64, cy, 64, 64, 1.0)], 1)
    bottom = np.concatenate([render_region(lay, cx, cy + 64, 64, 64, 1.0),
                             render_region(lay, cx + 64, cy + 64, 64, 64, 1.0)], 1)
    quarters = np.concatenate([top, bottom], 0).astype(int)
    # Only the sensor noise (sd 2) is drawn per region; structure is identical.
    assert np.abs(whole - quarters).mean() < 4


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_tissue_mask_iou_against_generator_truth(tmp_path, seed):
    lay = make_layout(size_wh=(4096, 4096), seed=seed, tumor=seed % 2 == 0, centre="AB"[seed % 2], artefacts=True)
    path = write_synthetic_slide(tmp_path / f"s{seed}.tif", lay)
    with open_slide(path) as s:
        tm = detect_tissue(s, mask_mpp=4.0)  # a 1 mm slide: 4 um/px keeps boundary quantisation small
        truth = rasterize_polygons([(p, 1) for p in lay.tissue_xy], tm.mask.shape, downsample=tm.mpp / s.mpp) > 0
    iou = (tm.mask & truth).sum() / (tm.mask | truth).sum()
    assert iou >= 0.95, f"seed {seed}: IoU {iou:.3f} (pen={bool(lay.pens)}, border={lay.border_px})"


def test_artefacts_are_generated_across_seeds():
    lays = [make_layout(size_wh=(8192, 8192), seed=s, tumor=True) for s in range(20)]
    assert any(lay.pens for lay in lays) and any(lay.border_px for lay in lays)
    assert any(lay.blur_ellipses for lay in lays)
    assert len({lay.stain.h_od.round(1).tobytes() for lay in lays}) >= 5  # stains vary (6 distinct of 20)
    assert all(not make_layout(size_wh=(4096, 4096), seed=s, tumor=True, artefacts=False).pens for s in range(5))


def test_lesion_sizes_span_itc_to_macro():
    classes = {les.size_class for s in range(40)
               for les in make_layout(size_wh=(40960, 40960), seed=s, tumor=True).lesions}
    assert classes == {"ITC", "Micro", "Macro"}


def test_snap_size_gives_exact_levels():
    assert snap_size(4096) == (4096, 4)
    size, n = snap_size(100_000)
    assert size % 2 ** (n - 1) == 0 and abs(size - 100_000) <= 2 ** (n - 2)
    with pytest.raises(ValueError):
        snap_size(500)


def test_layout_annotations_groups():
    lay = make_layout(size_wh=(40960, 40960), seed=5, tumor=True)
    anns = layout_annotations(lay)
    # Each lesion's outline in its group, followed by its holes as _2.
    assert [a.group for a in anns] == [g for les in lay.lesions for g in [les.group] + ["_2"] * len(les.holes_xy)]
    assert [a.group for a in anns] == ["_0", "_2", "_1", "_0", "_0", "_2"]  # seed 5: all three groups occur


def test_max_lesion_size_cap():
    sizes = [les.diameter_um for s in range(10)
             for les in make_layout(size_wh=(16384, 16384), seed=s, tumor=True, max_lesion_um=500).lesions]
    assert max(sizes) <= 500 + 1e-6 and min(sizes) > 0
    uncapped = [les.diameter_um for s in range(10)
                for les in make_layout(size_wh=(16384, 16384), seed=s, tumor=True).lesions]
    assert max(uncapped) > 600  # without the cap, lesions on these slides reach ~900 um
