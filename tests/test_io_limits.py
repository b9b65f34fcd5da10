"""Input limits, bounded reads, checked annotations, and atomic outputs, at the library level."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cadx.errors import AnnotationError, ConfigError, OutputPathError, SlideError
from cadx.io import atomic
from cadx.io import slide as slide_mod
from cadx.io.annotations import read_asap_xml
from cadx.io.atomic import atomic_path, ensure_not_input, remove_stale_parts
from cadx.io.limits import InputLimits, input_limits, require_regular_file
from cadx.io.resolution import read_overview
from cadx.io.slide import ArraySlide, open_slide
from cadx.preprocessing.masks import polygon_mask, rasterize_polygons
from cadx.preprocessing.tissue import binary_close_disk, tissue_mask

from .hostile_inputs import SRC, asap_xml, png_header_only, square, tiled_tiff


def _peak_bytes(fn) -> int:
    """Peak bytes traced (numpy reports its buffers to tracemalloc) while ``fn()`` runs."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ----------------------------------------------------------------------------------------------
# Limits and regular files


def test_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    assert input_limits() == InputLimits()
    monkeypatch.setenv("CADX_MAX_READ_PX", "12345")
    monkeypatch.setenv("CADX_MAX_ANNOTATION_VERTICES", " 7 ")
    assert (input_limits().max_read_px, input_limits().max_annotation_vertices) == (12345, 7)
    monkeypatch.setenv("CADX_MAX_IMAGE_PX", "lots")
    with pytest.raises(ConfigError, match=r"CADX_MAX_IMAGE_PX='lots': expected a positive integer"):
        input_limits()
    monkeypatch.setenv("CADX_MAX_IMAGE_PX", "-1")
    with pytest.raises(ConfigError, match="CADX_MAX_IMAGE_PX"):
        input_limits()


def test_named_pipe_refused_without_blocking(tmp_path: Path):
    fifo = tmp_path / "slide.tif"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            open_slide(fifo)
        except SlideError as exc:
            outcome.append(exc)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(timeout=30)
    assert not t.is_alive(), "open_slide blocked on a named pipe"
    assert str(outcome[0]) == f"{fifo}: is a named pipe, not a regular file; cadx reads only regular files"
    with pytest.raises(AnnotationError, match="is a named pipe"):
        read_asap_xml(fifo)


def test_regular_file_through_a_symlink_is_accepted(tmp_path: Path):
    (tmp_path / "real.xml").write_text("x")
    (tmp_path / "link.xml").symlink_to(tmp_path / "real.xml")
    assert require_regular_file(tmp_path / "link.xml") == tmp_path / "link.xml"
    with pytest.raises(SlideError, match="is a device"):
        require_regular_file("/dev/null", SlideError)


# ----------------------------------------------------------------------------------------------
# Slides: plausibility at opening, bounded reads


def test_resolution_tag_outside_the_plausible_range(tmp_path: Path):
    path = tiled_tiff(tmp_path / "s.tif", 2048, 1024, px_per_cm=4_000_000_000)
    with pytest.raises(SlideError, match=r"2\.5e-06 um/px recorded in the file is outside"):
        open_slide(path)
    with open_slide(path, mpp=0.5) as s:  # an explicit value replaces the implausible one
        assert s.mpp == 0.5
    with pytest.raises(SlideError, match=r"resolution 150 um/px given is outside"):
        open_slide(path, mpp=150)
    with pytest.raises(SlideError, match="nan um/px given"):
        ArraySlide(np.zeros((4, 4, 3), np.uint8), mpp=float("nan"))


def test_no_resolution_tag_is_missing_not_implausible(tmp_path: Path):
    with open_slide(tiled_tiff(tmp_path / "s.tif", 2048, 1024, px_per_cm=None)) as s:
        assert s.mpp_xy_or_none is None


def test_overview_of_a_slide_without_pyramid_refused_before_reading(tmp_path: Path):
    path = tiled_tiff(tmp_path / "s.tif", 60_000, 60_000)
    with open_slide(path) as s:
        assert s.level_dimensions == ((60_000, 60_000),)
        with pytest.raises(SlideError, match=r"no pyramid, only its full-resolution level 60000x60000 px"):
            read_overview(s, 16.0)
        with pytest.raises(SlideError, match="no pyramid"):
            s.get_thumbnail((1024, 1024))
        with pytest.raises(SlideError, match=r"a region of 20000x20000 px is more than"):
            s.read_region((0, 0), 0, (20_000, 20_000))
        # A small region of the same file is fine.
        assert s.read_region((100, 100), 0, (64, 32)).shape == (32, 64, 3)


def test_overview_limit_is_configurable(tmp_path: Path):
    path = tiled_tiff(tmp_path / "s.tif", 4096, 4096)
    with open_slide(path, limits=InputLimits(max_read_px=4096 * 4096 - 1)) as s:
        with pytest.raises(SlideError, match="more than the 16,777,215 px"):
            read_overview(s, 16.0)
    with open_slide(path) as s:
        img, mpp = read_overview(s, 16.0)
    assert img.shape == (64, 64, 3) and mpp == pytest.approx(16.0)


@pytest.mark.parametrize("strip_px", [1, 777, 2**22])
def test_strip_wise_overview_equals_one_resize(monkeypatch: pytest.MonkeyPatch, strip_px: int):
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (333, 517, 3), np.uint8)
    s = ArraySlide(img, mpp=0.25, min_level_size_px=100)
    monkeypatch.setattr(slide_mod, "OVERVIEW_STRIP_PX", strip_px)
    for size_wh in [(517, 333), (50, 31), (129, 83), (7, 200)]:
        level = s.best_level_for_downsample(min(517 / size_wh[0], 333 / size_wh[1]))
        src = s.read_region((0, 0), level, s.level_dimensions[level])
        want = np.asarray(Image.fromarray(src).resize(size_wh, Image.Resampling.BOX))
        np.testing.assert_array_equal(s.read_resampled(size_wh), want)


def test_strip_wise_overview_memory_is_bounded_by_the_strip(tmp_path: Path):
    path = tiled_tiff(tmp_path / "s.tif", 8192, 8192)  # one level: 256 MiB as RGBA if read whole
    with open_slide(path) as s:
        peak = _peak_bytes(lambda: s.read_resampled((128, 128)))
    assert peak < 64 << 20


def test_rgba_over_white_matches_the_exact_formula():
    rgba = np.random.default_rng(0).integers(0, 256, (64, 64, 4), np.uint8)
    a = rgba[:, :, 3:].astype(np.int64)
    want = (rgba[:, :, :3].astype(np.int64) * a + 255 * (255 - a) + 127) // 255
    np.testing.assert_array_equal(slide_mod._rgba_over_white(rgba), want)


def test_plain_image_limits(tmp_path: Path):
    with pytest.raises(SlideError, match="decompression bomb|more than"):
        open_slide(png_header_only(tmp_path / "huge.png", 100_000, 100_000), mpp=0.25)
    small = tmp_path / "small.png"
    Image.new("RGB", (40, 30), (1, 2, 3)).save(small)
    with pytest.raises(SlideError, match=r"a plain image of 40x30 px is more than the 1,000 px"):
        open_slide(small, limits=InputLimits(max_image_px=1000))
    with pytest.raises(SlideError, match=r"claims 40x30 px, beyond the plausible 39 px per side"):
        open_slide(small, limits=InputLimits(max_side_px=39))
    assert open_slide(small).dimensions == (40, 30)


# ----------------------------------------------------------------------------------------------
# Tissue mask morphology


@pytest.mark.parametrize("radius", [1, 4, 5, 9])
def test_closing_by_distance_transform_equals_disk_closing(radius: int):
    from scipy import ndimage as ndi
    from skimage.morphology import disk

    rng = np.random.default_rng(radius)
    mask = rng.random((60, 80)) > 0.8
    padded = np.pad(mask, radius, mode="edge")
    want = ndi.binary_closing(padded, structure=disk(radius))[radius:-radius, radius:-radius]
    np.testing.assert_array_equal(binary_close_disk(mask, radius), want)


def test_tissue_mask_of_a_tiny_image_at_a_fine_resolution():
    # 50 um closing at 0.25 um/px is 200 px: capped at the mask's size, not a 401 px disk.
    rgb = np.full((1, 1, 3), (200, 100, 150), np.uint8)
    peak = _peak_bytes(lambda: tissue_mask(rgb, mpp=0.25))
    assert peak < 1 << 20
    big_radius = np.full((30, 40, 3), 240, np.uint8)
    big_radius[10:20, 10:30] = (200, 100, 150)
    tm = tissue_mask(big_radius, mpp=0.01, median_size_px=1, min_object_um2=0, min_hole_um2=0)
    assert tm.mask.shape == (30, 40) and tm.mask[10:20, 10:30].all()


# ----------------------------------------------------------------------------------------------
# Polygon fill: identical to scikit-image, memory bounded whatever the vertex count


@pytest.mark.parametrize("chunk", [5, 2**22])
def test_polygon_fill_matches_skimage(monkeypatch: pytest.MonkeyPatch, chunk: int):
    from skimage.draw import polygon

    from cadx.preprocessing import masks

    monkeypatch.setattr(masks, "FILL_CHUNK_ELEMENTS", chunk)
    rng = np.random.default_rng(11)
    for _ in range(60):
        n = int(rng.integers(3, 40))
        h, w = (int(v) for v in rng.integers(5, 70, 2))
        rows, cols = rng.uniform(-5, h + 5, n), rng.uniform(-5, w + 5, n)
        want = np.zeros((h, w), bool)
        want[polygon(rows, cols, (h, w))] = True
        got = polygon_mask(rows, cols, (h, w))
        np.testing.assert_array_equal(np.zeros((h, w), bool) if got is None else got, want)


def test_polygon_fill_memory_does_not_grow_with_rows_times_vertices():
    # 100,000 vertices over 2,000 rows: the dense (rows x edges) fill needed ~3 GB.
    theta = np.linspace(0, 2 * np.pi, 100_000, endpoint=False)
    poly = np.stack([1000 + 900 * np.cos(theta), 1000 + 900 * np.sin(theta)], axis=1)
    out = {}
    peak = _peak_bytes(lambda: out.setdefault("m", rasterize_polygons([(poly, 1)], (2000, 2000))))
    assert peak < 160 << 20
    assert abs(int(out["m"].sum()) - np.pi * 900**2) < 2 * np.pi * 900


# ----------------------------------------------------------------------------------------------
# Annotations


def test_annotation_values_checked_one_by_one(tmp_path: Path):
    ok = asap_xml(tmp_path / "ok.xml", square(10, 20, 5))
    assert read_asap_xml(ok)[0].coords_xy.tolist() == [[10, 20], [15, 20], [15, 25], [10, 25]]
    bad = asap_xml(tmp_path / "bad.xml", [*square(0, 0, 1)[:3], {"Order": "inf", "X": "1", "Y": "1"}])
    with pytest.raises(AnnotationError) as err:
        read_asap_xml(bad)
    assert str(err.value) == (f"{bad}: annotation 0 ('lesion'), Coordinate 3: Order='inf' is not a finite number")
    long_junk = asap_xml(tmp_path / "junk.xml", [{"Order": "0", "X": "9" * 500 + "x", "Y": "1"}])
    with pytest.raises(AnnotationError, match=r"X='9{37}\.\.\.' is not a finite number"):
        read_asap_xml(long_junk)


def test_annotation_vertex_limit(tmp_path: Path):
    path = asap_xml(tmp_path / "many.xml", [{"Order": str(i), "X": str(i), "Y": str(i % 3)} for i in range(50)])
    assert len(read_asap_xml(path, max_vertices=50)[0].coords_xy) == 50
    with pytest.raises(AnnotationError, match=r"more than 49 vertices"):
        read_asap_xml(path, max_vertices=49)


def test_annotation_parsing_streams(tmp_path: Path):
    # 200,000 vertices (about 9 MB of XML): the parsed tree is dropped as it goes.
    path = asap_xml(tmp_path / "big.xml", [{"Order": str(i), "X": str(i % 1000), "Y": str(i // 1000)}
                                           for i in range(200_000)])
    out = {}
    peak = _peak_bytes(lambda: out.setdefault("a", read_asap_xml(path)))
    assert out["a"][0].coords_xy.shape == (200_000, 2)
    assert peak < 40 << 20


# ----------------------------------------------------------------------------------------------
# Atomic outputs


def test_atomic_path_reports_output_problems(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="cannot create the folder .*file/sub: .*file is a file"):
        with atomic_path(tmp_path / "file" / "sub" / "o.txt"):
            raise AssertionError("not reached")
    (tmp_path / "dir").mkdir()
    with pytest.raises(OutputPathError, match="dir: is a folder; give a file name"):
        with atomic_path(tmp_path / "dir"):
            raise AssertionError("not reached")


def test_atomic_path_read_only_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    with pytest.raises(OutputPathError, match=r"o\.txt: cannot write in the folder .*: permission denied"):
        with atomic_path(tmp_path / "o.txt"):
            raise AssertionError("not reached")


def test_atomic_path_disk_full_leaves_nothing(tmp_path: Path):
    with pytest.raises(OutputPathError, match=r"o\.txt: cannot write: no space left on device"):
        with atomic_path(tmp_path / "o.txt") as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):  # other errors are not the output's: unchanged
        with atomic_path(tmp_path / "o.txt"):
            raise FileNotFoundError(errno.ENOENT, "an input vanished")
    assert list(tmp_path.iterdir()) == []


def test_ensure_not_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.tif").write_bytes(b"slide")
    os.link(tmp_path / "in.tif", tmp_path / "hard.tif")
    (tmp_path / "soft.tif").symlink_to(tmp_path / "in.tif")
    assert ensure_not_input("out.tif", "in.tif", None) == Path("out.tif")
    for same in ["in.tif", "./in.tif", str(tmp_path / "in.tif"), "sub/../in.tif", "hard.tif", "soft.tif"]:
        with pytest.raises(OutputPathError, match=r"is also an input \(in\.tif\)"):
            ensure_not_input(same, "other.xml", "in.tif")


def test_remove_stale_parts(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / ".a.tif.x1y2z3.part", tmp_path / "sub" / ".b.h5.abc.part"]
    keep = [tmp_path / "a.tif", tmp_path / "notes.part", tmp_path / ".hidden"]
    for p in stale + keep:
        p.write_bytes(b"x")
    assert remove_stale_parts(tmp_path, min_age_s=3600) == []
    assert remove_stale_parts(tmp_path) == stale[:1]
    assert remove_stale_parts(tmp_path, recursive=True) == stale[1:]
    assert all(p.exists() for p in keep)
    assert remove_stale_parts(tmp_path / "absent") == []


def test_sigterm_removes_the_temporary_file(tmp_path: Path):
    out = tmp_path / "o.bin"
    child = textwrap.dedent(f"""
        import sys, time
        from cadx.io.atomic import atomic_path, exit_on_sigterm
        exit_on_sigterm()
        with atomic_path({str(out)!r}) as tmp:
            tmp.write_bytes(b"half")
            print("writing", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], env={**os.environ, "PYTHONPATH": str(SRC)},
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert len(list(tmp_path.glob(".o.bin.*.part"))) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list(tmp_path.iterdir()) == []
