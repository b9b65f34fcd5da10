"""The command line: output, exit codes, clean errors, nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cadx.cli.main import main
from cadx.io.h5 import read_coords_h5

from .conftest import SVS


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cadx", *args], capture_output=True, text=True, timeout=300)


def test_help_reads_well():
    out = run("slide", "tile", "--help")
    assert out.returncode == 0
    for flag in ("--mpp", "--tile-size", "--overlap", "--min-tissue", "--annotations", "--level", "--out"):
        assert flag in out.stdout


def test_slide_info_json(capsys):
    assert main(["slide", "info", str(SVS), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["vendor"] == "aperio" and info["level_dimensions"] == [[2220, 2967]] and info["mpp_x"] == 0.499


def test_slide_info_table(tumor_slide, capsys):
    assert main(["slide", "info", str(tumor_slide.path)]) == 0
    out = capsys.readouterr().out
    assert "generic-tiff" in out and "0.2430" in out and "8.000" in out


def test_slide_mask_writes_overlay_and_mask(tumor_slide, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from cadx.io.slide import open_slide
    from cadx.wsi.tissue import detect_tissue

    assert main(["slide", "mask", str(tumor_slide.path), "--out", str(tmp_path / "m.png")]) == 0
    with open_slide(tumor_slide.path) as s:
        want = detect_tissue(s, mask_mpp=16.0)  # the default --mask-mpp
    raw = Image.open(tmp_path / "m.mask.png")
    assert float(raw.text["mpp"]) == pytest.approx(want.mpp, abs=1e-6) and raw.text["method"] == want.method
    np.testing.assert_array_equal(np.asarray(raw) > 0, want.mask)
    assert want.mask.any() and not want.mask.all()
    assert (tmp_path / "m.png").exists()
    assert f"tissue {want.area_um2 / 1e6:.2f} mm2" in capsys.readouterr().out


def test_tile_cohort_with_annotations_dir(cohort, tmp_path):
    out_dir, _ = cohort
    assert main(["slide", "tile", str(out_dir / "training"), "--out", str(tmp_path / "t"), "--mpp", "0.5",
                 "--annotations", str(out_dir / "training/lesion_annotations"), "--preview"]) == 0
    files = sorted(p.name for p in (tmp_path / "t").glob("*.h5"))
    assert files == ["normal_001.h5", "tumor_001.h5", "tumor_002.h5"]
    tum = read_coords_h5(tmp_path / "t/tumor_001.h5")
    nor = read_coords_h5(tmp_path / "t/normal_001.h5")
    # A slide without an XML in the annotations directory is a normal slide: all tiles negative.
    assert tum.arrays["tumor_fraction"].max() > 0.5 and not nor.arrays["tumor_fraction"].any()
    assert (tmp_path / "t/tumor_001.png").exists()


def test_bad_slide_in_cohort_is_listed_and_others_finish(cohort, tmp_path, capsys):
    out_dir, slides = cohort
    bad = tmp_path / "in" / "broken.tif"
    bad.parent.mkdir()
    bad.write_bytes(b"II*\x00garbage")
    good = slides[0].path
    code = main(["slide", "tile", str(bad), str(good), "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.tif" in err and "1 failed" in err
    assert (tmp_path / "t" / f"{good.stem}.h5").exists()
    assert not list((tmp_path / "t").glob("broken*")) and not list((tmp_path / "t").glob(".*part"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["slide", "info", "/no/such/slide.svs"], "slide.svs: no such file"),
        (["slide", "mask", "NOT_A_SLIDE", "--out", "x.png"], "no such file"),
        (["annotations", "convert", "/no/such.xml", "--geojson", "o.json"], "no such file"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args, message):
    out = run(*args)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_hostile_xml_rejected_cleanly(tumor_slide, tmp_path):
    xml = tmp_path / "evil.xml"
    xml.write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><ASAP_Annotations>&b;</ASAP_Annotations>')
    out = run("annotations", "mask", str(xml), "--slide", str(tumor_slide.path), "--out", str(tmp_path / "m.tif"))
    assert out.returncode == 2 and "evil.xml" in out.stderr and "hostile" in out.stderr
    assert not (tmp_path / "m.tif").exists()


def test_plain_image_without_mpp_asks_for_it(tmp_path):
    import numpy as np
    from PIL import Image

    p = tmp_path / "photo.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(p)
    out = run("slide", "mask", str(p), "--out", str(tmp_path / "m.png"))
    assert out.returncode == 2 and "--mpp" in out.stderr and "photo.png" in out.stderr


def test_synth_and_annotations_commands(tmp_path):
    from cadx.io.annotations import polygons_in_paint_order, read_asap_xml
    from cadx.io.slide import open_slide
    from cadx.preprocessing.masks import rasterize_polygons

    assert main(["synth", "slides", "--out", str(tmp_path / "c"), "--tumor", "1", "--normal", "0", "--size", "2048",
                 "--seed", "3"]) == 0
    xml = tmp_path / "c/training/lesion_annotations/tumor_001.xml"
    slide = tmp_path / "c/training/tumor/tumor_001.tif"
    anns = read_asap_xml(xml)
    assert main(["annotations", "convert", str(xml), "--geojson", str(tmp_path / "a.geojson")]) == 0
    fc = json.loads((tmp_path / "a.geojson").read_text())
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == len(anns) >= 1
    assert main(["annotations", "mask", str(xml), "--slide", str(slide), "--out", str(tmp_path / "m.tif")]) == 0
    # The mask is the slide's size and holds the rasterised annotations (holes painted last).
    with open_slide(tmp_path / "m.tif") as m:
        assert m.dimensions == (2048, 2048) and m.mpp == pytest.approx(0.243)
        got = m.read_region((0, 0), 0, (2048, 2048))[:, :, 0] > 127
    want = rasterize_polygons(polygons_in_paint_order(anns), (2048, 2048)) > 0
    assert want.sum() > 0 and (got != want).mean() < 0.001
