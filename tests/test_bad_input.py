"""Hostile and broken inputs through the command line: one clear line, exit status 2, no traceback.

The rule (cadx.cli.main): a user error prints ``cadx: error: <file>: <problem>`` to stderr and
returns 2. Cases that could allocate gigabytes (a 31 KB TIFF claiming 60,000 x 60,000 px, an
absurd resolution tag, a PNG header claiming 100,000 x 100,000 px) and cases that could block (named
pipes) run in a child process with a 3 GB address-space cap and a timeout, so a regression fails
fast instead of swapping or hanging. Every input is built here, byte by byte.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cadx.cli.main import main

from .hostile_inputs import SRC, asap_xml, png_header_only, run_cli_capped, square, tiled_tiff


def assert_user_error(rc: int, stderr: str, file: str | Path, problem: str) -> None:
    """Exit status 2 and exactly one line ``cadx: error: <file>: <problem...>`` (``problem`` a regex)."""
    assert "Traceback" not in stderr and "MemoryError" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    prefix = f"cadx: error: {file}: "
    assert lines[0].startswith(prefix), lines[0]
    assert re.search(problem, lines[0][len(prefix):]), lines[0]
    assert rc == 2, (rc, stderr)


def assert_cohort_failure(rc: int, stderr: str, file: str | Path, problem: str) -> None:
    """A cohort command (``slide tile``) carries on past a bad slide and reports it; no traceback."""
    assert "Traceback" not in stderr and "MemoryError" not in stderr, stderr
    assert rc in (1, 2), (rc, stderr)
    hits = [ln for ln in stderr.splitlines() if str(file) in ln and re.search(problem, ln)]
    assert hits, stderr


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """Run ``cadx ARGS`` in this process; return the exit status and stderr."""
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Inputs


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder holding the hostile inputs, used as the current directory (short names)."""
    monkeypatch.chdir(tmp_path)
    tiled_tiff(tmp_path / "nopyramid.tif", 60_000, 60_000)  # 31 KB, claims 3.6 Gpx at 0.25 um/px
    tiled_tiff(tmp_path / "tinympp.tif", 2048, 2048, px_per_cm=4_000_000_000)  # 2.5e-6 um/px
    tiled_tiff(tmp_path / "corrupt.tif", 2048, 2048, corrupt=True)
    tiled_tiff(tmp_path / "good.tif", 2048, 2048)
    png_header_only(tmp_path / "huge.png", 100_000, 100_000)
    Image.new("RGB", (1, 1), (200, 100, 150)).save(tmp_path / "one.png")
    (tmp_path / "junk.tif").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
    os.mkfifo(tmp_path / "pipe.tif")
    os.mkfifo(tmp_path / "pipe.xml")
    (tmp_path / "afile").write_text("not a folder")
    asap_xml(tmp_path / "lesion.xml", square(100, 100, 200))
    return tmp_path


# ----------------------------------------------------------------------------------------------
# slide info


def test_info_missing_file(work: Path, capsys: pytest.CaptureFixture):
    assert_user_error(*cli(capsys, "slide", "info", "absent.tif"), "absent.tif", "no such file")


def test_info_directory(work: Path, capsys: pytest.CaptureFixture):
    (work / "folder.tif").mkdir()
    assert_user_error(*cli(capsys, "slide", "info", "folder.tif"), "folder.tif", "is a directory")


def test_info_not_a_slide(work: Path, capsys: pytest.CaptureFixture):
    assert_user_error(*cli(capsys, "slide", "info", "junk.tif"), "junk.tif", "not a slide format")


def test_info_named_pipe_does_not_block(work: Path):
    r = run_cli_capped(["slide", "info", "pipe.tif"], cwd=work, timeout_s=60)
    assert_user_error(r.returncode, r.stderr, "pipe.tif", "is a named pipe, not a regular file")


def test_info_implausible_resolution_tag(work: Path, capsys: pytest.CaptureFixture):
    assert_user_error(*cli(capsys, "slide", "info", "tinympp.tif"), "tinympp.tif",
                      r"resolution 2\.5e-06 um/px recorded in the file is outside the plausible range 0\.01-100")


def test_info_implausible_mpp_option(work: Path, capsys: pytest.CaptureFixture):
    assert_user_error(*cli(capsys, "slide", "info", "good.tif", "--mpp", "1000"), "good.tif",
                      r"resolution 1000 um/px given is outside the plausible range")


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "big"])
def test_non_positive_or_non_finite_numbers_are_refused_by_the_parser(capsys: pytest.CaptureFixture, value: str):
    with pytest.raises(SystemExit) as exc:
        main(["slide", "info", "good.tif", "--mpp-override", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --mpp-override/--mpp:" in err and repr(value) in err and "Traceback" not in err


def test_info_size_beyond_the_configured_limit(work: Path, capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CADX_MAX_SLIDE_SIDE_PX", "50000")
    assert_user_error(*cli(capsys, "slide", "info", "nopyramid.tif"), "nopyramid.tif",
                      r"claims 60000x60000 px, beyond the plausible 50,000 px per side \(CADX_MAX_SLIDE_SIDE_PX\)")


def test_info_reads_no_pixels_of_a_slide_without_pyramid(work: Path, capsys: pytest.CaptureFixture):
    rc, _ = cli(capsys, "slide", "info", "nopyramid.tif")
    assert rc == 0


def test_info_png_bomb(work: Path):
    r = run_cli_capped(["slide", "info", "huge.png"], cwd=work)
    assert_user_error(r.returncode, r.stderr, "huge.png", "decompression bomb|more than")


def test_info_large_png_beyond_the_configured_limit(work: Path, capsys: pytest.CaptureFixture):
    png_header_only(work / "big.png", 12_000, 12_000)  # 144 Mpx: under Pillow's limit, over cadx's
    assert_user_error(*cli(capsys, "slide", "info", "big.png"), "big.png",
                      r"a plain image of 12000x12000 px is more than the 134,217,728 px cadx decodes whole")


# ----------------------------------------------------------------------------------------------
# slide mask


def test_mask_slide_without_pyramid_is_refused_not_allocated(work: Path):
    r = run_cli_capped(["slide", "mask", "nopyramid.tif", "--out", "o.png"], cwd=work)
    assert_user_error(r.returncode, r.stderr, "nopyramid.tif",
                      r"no pyramid, only its full-resolution level 60000x60000 px, more than the 268,435,456 px")
    assert not (work / "o.png").exists()


def test_mask_implausible_resolution_is_refused_not_allocated(work: Path):
    r = run_cli_capped(["slide", "mask", "tinympp.tif", "--out", "o.png"], cwd=work)
    assert_user_error(r.returncode, r.stderr, "tinympp.tif", r"2\.5e-06 um/px .* outside the plausible range")


def test_mask_implausible_resolution_overridden(work: Path):
    r = run_cli_capped(["slide", "mask", "tinympp.tif", "--mpp", "0.5", "--out", "o.png"], cwd=work)
    assert r.returncode == 0, r.stderr
    assert Image.open(work / "o.mask.png").size == (64, 64)  # 2048 px at 0.5 um/px, mask at 16 um/px


def test_mask_of_a_one_pixel_png(work: Path):
    r = run_cli_capped(["slide", "mask", "one.png", "--mpp", "0.25", "--out", "o.png"], cwd=work)
    assert r.returncode == 0, r.stderr
    assert Image.open(work / "o.mask.png").size == (1, 1)


def test_mask_png_bomb(work: Path):
    r = run_cli_capped(["slide", "mask", "huge.png", "--mpp", "0.25", "--out", "o.png"], cwd=work)
    assert_user_error(r.returncode, r.stderr, "huge.png", "decompression bomb|more than")


def test_mask_corrupt_tiles(work: Path, capsys: pytest.CaptureFixture):
    assert_user_error(*cli(capsys, "slide", "mask", "corrupt.tif", "--out", "o.png"), "corrupt.tif",
                      "cannot decode pixels")


def test_mask_named_pipe_does_not_block(work: Path):
    r = run_cli_capped(["slide", "mask", "pipe.tif", "--out", "o.png"], cwd=work, timeout_s=60)
    assert_user_error(r.returncode, r.stderr, "pipe.tif", "named pipe")


def test_mask_output_folder_is_a_file(work: Path, capsys: pytest.CaptureFixture):
    assert_user_error(*cli(capsys, "slide", "mask", "good.tif", "--out", "afile/o.png"), "afile/o.png",
                      "cannot create the folder afile: afile is a file")


def test_mask_output_is_a_folder(work: Path, capsys: pytest.CaptureFixture):
    (work / "o.png").mkdir()
    assert_user_error(*cli(capsys, "slide", "mask", "good.tif", "--out", "o.png"), "o.png", "is a folder")


def test_mask_output_is_the_input(work: Path, capsys: pytest.CaptureFixture):
    Image.new("RGB", (64, 64), (200, 100, 150)).save(work / "slide.png")
    before = (work / "slide.png").read_bytes()
    rc, err = cli(capsys, "slide", "mask", "slide.png", "--mpp", "1", "--out", "slide.png")
    assert (work / "slide.png").read_bytes() == before
    assert_user_error(rc, err, "slide.png", "is also an input")


def test_mask_raw_mask_output_is_the_input(work: Path, capsys: pytest.CaptureFixture):
    Image.new("RGB", (64, 64), (200, 100, 150)).save(work / "slide.png")
    rc, err = cli(capsys, "slide", "mask", "slide.png", "--mpp", "1", "--out", "o.png", "--mask-out", "./slide.png")
    assert_user_error(rc, err, "slide.png", "is also an input")


# ----------------------------------------------------------------------------------------------
# slide tile (a cohort command: a bad slide is reported and skipped)


def test_tile_slide_without_pyramid(work: Path):
    r = run_cli_capped(["slide", "tile", "nopyramid.tif", "--out", "tiles"], cwd=work)
    assert_cohort_failure(r.returncode, r.stderr, "nopyramid.tif", "no pyramid")


def test_tile_implausible_resolution(work: Path):
    r = run_cli_capped(["slide", "tile", "tinympp.tif", "--out", "tiles"], cwd=work)
    assert_cohort_failure(r.returncode, r.stderr, "tinympp.tif", "outside the plausible range")


def test_tile_named_pipes_do_not_block(work: Path):
    r = run_cli_capped(["slide", "tile", "pipe.tif", "--out", "tiles"], cwd=work, timeout_s=60)
    assert_cohort_failure(r.returncode, r.stderr, "pipe.tif", "named pipe")
    r = run_cli_capped(["slide", "tile", "good.tif", "--annotations", "pipe.xml", "--out", "tiles"], cwd=work,
                       timeout_s=60)
    assert_cohort_failure(r.returncode, r.stderr, "pipe.xml", "named pipe")


def test_tile_hostile_annotation_values(work: Path):
    asap_xml(work / "bad.xml", [*square(100, 100, 200)[:3], {"Order": "1e999", "X": "1", "Y": "2"}])
    r = run_cli_capped(["slide", "tile", "good.tif", "--annotations", "bad.xml", "--out", "tiles"], cwd=work)
    assert_cohort_failure(r.returncode, r.stderr, "bad.xml", r"Order='1e999' is not a finite number")


# ----------------------------------------------------------------------------------------------
# annotations convert / mask


@pytest.mark.parametrize(
    ("coordinates", "problem"),
    [
        ([*square(0, 0, 10)[:3], {"Order": "1e999", "X": "1", "Y": "2"}],
         r"annotation 0 \('lesion'\), Coordinate 3: Order='1e999' is not a finite number"),
        ([*square(0, 0, 10)[:3], {"Order": "3", "X": "nan", "Y": "2"}], r"Coordinate 3: X='nan' is not a finite"),
        ([*square(0, 0, 10)[:3], {"Order": "3", "X": "1", "Y": "-inf"}], r"Y='-inf' is not a finite number"),
        ([*square(0, 0, 10)[:3], {"Order": "3", "X": "12,5", "Y": "2"}], r"X='12,5' is not a finite number"),
        ([*square(0, 0, 10)[:3], {"Order": "3", "X": "1"}], r"Coordinate 3: no Y attribute"),
        (square(0, 0, 10)[:2], r"a polygon needs 3 vertices, has 2"),
    ],
)
def test_convert_malformed_values(work: Path, capsys: pytest.CaptureFixture, coordinates, problem):
    asap_xml(work / "bad.xml", coordinates)
    assert_user_error(*cli(capsys, "annotations", "convert", "bad.xml", "--geojson", "o.geojson"), "bad.xml", problem)
    assert not (work / "o.geojson").exists()


def test_convert_too_many_vertices(work: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CADX_MAX_ANNOTATION_VERTICES", "100")
    asap_xml(work / "many.xml", [{"Order": str(i), "X": str(i), "Y": str(i % 7)} for i in range(101)])
    assert_user_error(*cli(capsys, "annotations", "convert", "many.xml", "--geojson", "o.geojson"), "many.xml",
                      r"more than 100 vertices \(CADX_MAX_ANNOTATION_VERTICES\)")
    asap_xml(work / "ok.xml", [{"Order": str(i), "X": str(i), "Y": str(i % 7)} for i in range(100)])
    assert cli(capsys, "annotations", "convert", "ok.xml", "--geojson", "o.geojson")[0] == 0


def test_convert_entity_bomb(work: Path, capsys: pytest.CaptureFixture):
    (work / "bomb.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        "<ASAP_Annotations><Annotations>&lol2;</Annotations></ASAP_Annotations>")
    assert_user_error(*cli(capsys, "annotations", "convert", "bomb.xml", "--geojson", "o.geojson"), "bomb.xml",
                      "rejected hostile XML")


def test_convert_named_pipe_does_not_block(work: Path):
    r = run_cli_capped(["annotations", "convert", "pipe.xml", "--geojson", "o.geojson"], cwd=work, timeout_s=60)
    assert_user_error(r.returncode, r.stderr, "pipe.xml", "is a named pipe, not a regular file")


def test_convert_output_folder_is_a_file(work: Path, capsys: pytest.CaptureFixture):
    assert_user_error(*cli(capsys, "annotations", "convert", "lesion.xml", "--geojson", "afile/sub/o.geojson"),
                      "afile/sub/o.geojson", "cannot create the folder afile/sub: afile is a file")


def test_convert_output_is_the_input(work: Path, capsys: pytest.CaptureFixture):
    before = (work / "lesion.xml").read_text()
    rc, err = cli(capsys, "annotations", "convert", "lesion.xml", "--geojson", "lesion.xml")
    assert (work / "lesion.xml").read_text() == before
    assert_user_error(rc, err, "lesion.xml", "is also an input")


def test_annotation_mask_hostile_values(work: Path, capsys: pytest.CaptureFixture):
    asap_xml(work / "bad.xml", [*square(0, 0, 10)[:3], {"Order": "3", "X": "nan", "Y": "2"}])
    assert_user_error(*cli(capsys, "annotations", "mask", "bad.xml", "--slide", "good.tif", "--out", "m.tif"),
                      "bad.xml", "X='nan' is not a finite number")


def test_annotation_mask_outside_the_slide(work: Path, capsys: pytest.CaptureFixture):
    asap_xml(work / "far.xml", square(1e12, 0, 10))
    assert_user_error(*cli(capsys, "annotations", "mask", "far.xml", "--slide", "good.tif", "--out", "m.tif"),
                      "far.xml", "outside the slide")
    assert not (work / "m.tif").exists()


def test_annotation_mask_named_pipe_slide(work: Path):
    r = run_cli_capped(["annotations", "mask", "lesion.xml", "--slide", "pipe.tif", "--out", "m.tif"], cwd=work,
                       timeout_s=60)
    assert_user_error(r.returncode, r.stderr, "pipe.tif", "named pipe")


def test_annotation_mask_implausible_slide(work: Path):
    r = run_cli_capped(["annotations", "mask", "lesion.xml", "--slide", "tinympp.tif", "--out", "m.tif"], cwd=work)
    assert_user_error(r.returncode, r.stderr, "tinympp.tif", "outside the plausible range")


def test_annotation_mask_output_is_the_slide(work: Path, capsys: pytest.CaptureFixture):
    before = (work / "good.tif").read_bytes()
    rc, err = cli(capsys, "annotations", "mask", "lesion.xml", "--slide", "good.tif", "--out", "good.tif")
    assert (work / "good.tif").read_bytes() == before
    assert_user_error(rc, err, "good.tif", "is also an input")


def test_sigterm_leaves_no_partial_output(work: Path):
    """``kill`` during a long write (a 60,000 px mask TIFF) removes the ``.part`` file on the way out."""
    out = work / "masks"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-m", "cadx", "annotations", "mask", "lesion.xml", "--slide",
                             "nopyramid.tif", "--out", str(out / "m.tif")], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob(".*.part")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the write ended before it could be interrupted"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM
    assert list(out.iterdir()) == []
