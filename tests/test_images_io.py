"""cadx.io.images: every bad file is one InputFileError naming it; modes and EXIF give upright 8-bit RGB."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cadx.errors import InputFileError
from cadx.io.images import IMAGE_SUFFIXES, find_images, read_rgb


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 2, raw: bytes | None = None) -> bytes:
    """A PNG file from its parts; ``raw`` is the unfiltered scanline data (filter bytes included)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = zlib.compress(raw if raw is not None else b"\x00")
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _expect_error(path: Path, fragment: str) -> InputFileError:
    with pytest.raises(InputFileError) as info:
        read_rgb(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)
    return info.value


def test_text_file_named_jpg_is_not_an_image(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("hello, not a picture")
    _expect_error(p, "not an image")


def test_postscript_named_jpg_is_refused_without_ghostscript(tmp_path):
    p = tmp_path / "evil.jpg"
    p.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    _expect_error(p, "not an image")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.png"
    p.touch()
    _expect_error(p, "empty (0 bytes)")


def test_missing_file_and_folder_and_pipe(tmp_path):
    _expect_error(tmp_path / "nope.jpg", "no such file")
    _expect_error(tmp_path, "directory")
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    _expect_error(fifo, "named pipe")


def test_truncated_jpeg(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = tmp_path / "whole.jpg"
    Image.fromarray(rgb).save(whole, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert read_rgb(whole).shape == (64, 64, 3)
    _expect_error(cut, "truncated or corrupt")


def test_truncated_png(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = tmp_path / "whole.png"
    Image.fromarray(rgb).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    _expect_error(cut, "truncated or corrupt")


def test_tiny_png_claiming_gigapixels_is_a_bomb_not_a_memory_error(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png(100_000, 100_000))  # 10 Gpx claimed by ~60 bytes
    assert p.stat().st_size < 100
    _expect_error(p, "decompression bomb")


def test_png_above_cadx_limit_but_below_pillows(tmp_path):
    p = tmp_path / "big.png"
    p.write_bytes(_png(12_000, 12_000))  # 144 Mpx: Pillow only warns, cadx's 134 Mpx limit refuses
    _expect_error(p, "12000x12000 px image is more than the 134,217,728 px")


def test_limit_from_environment_and_argument(tmp_path, monkeypatch):
    p = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(p)
    assert read_rgb(p, max_pixels=600).shape == (20, 30, 3)
    with pytest.raises(InputFileError, match="30x20 px image is more than the 599 px"):
        read_rgb(p, max_pixels=599)
    monkeypatch.setenv("CADX_MAX_IMAGE_PX", "100")
    _expect_error(p, "more than the 100 px")


def test_cmyk_jpeg_gives_rgb_values(tmp_path):
    colour = (200, 50, 10)
    cmyk = Image.fromarray(np.full((16, 16, 3), colour, np.uint8)).convert("CMYK")
    p = tmp_path / "cmyk.jpg"
    cmyk.save(p, quality=95)
    with Image.open(p) as im:
        assert im.mode == "CMYK"
    rgb = read_rgb(p)
    assert rgb.dtype == np.uint8 and rgb.shape == (16, 16, 3)
    np.testing.assert_allclose(rgb.reshape(-1, 3).mean(axis=0), colour, atol=3)


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], np.uint16)  # 0, 1, 128, 255 in 8 bits
    p = tmp_path / "g16.png"
    Image.fromarray(values).save(p)
    with Image.open(p) as im:
        assert im.mode == "I;16"
    rgb = read_rgb(p)
    assert rgb.shape == (1, 4, 3)
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (rgb == rgb[:, :, :1]).all()


def test_16bit_rgb_png(tmp_path):
    pixel = struct.pack(">HHH", 0xFF00, 0x8000, 0x0100)
    raw = b"\x00" + pixel * 2  # one scanline, filter 0, two pixels
    p = tmp_path / "rgb16.png"
    p.write_bytes(_png(2, 1, bit_depth=16, colour_type=2, raw=raw))
    rgb = read_rgb(p)
    assert rgb.dtype == np.uint8
    assert rgb.tolist() == [[[255, 128, 1], [255, 128, 1]]]


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "1"])
def test_other_modes_become_rgb(tmp_path, mode):
    base = Image.fromarray(np.full((4, 5, 3), (255, 255, 255), np.uint8))
    p = tmp_path / f"m_{mode}.png"
    base.convert(mode).save(p)
    rgb = read_rgb(p)
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert (rgb == 255).all()


def test_exif_orientation_6_is_turned_upright(tmp_path):
    # Stored 40 rows x 60 columns: red | green over blue | white.
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:20, :30] = (255, 0, 0)
    stored[:20, 30:] = (0, 255, 0)
    stored[20:, :30] = (0, 0, 255)
    stored[20:, 30:] = (255, 255, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    p = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(p, quality=95, exif=exif)
    up = read_rgb(p)
    assert up.shape == (60, 40, 3)
    corners = {"tl": up[5, 5], "tr": up[5, 34], "bl": up[54, 5], "br": up[54, 34]}
    expected = {"tl": (0, 0, 255), "tr": (255, 0, 0), "bl": (255, 255, 255), "br": (0, 255, 0)}
    for key, colour in expected.items():
        np.testing.assert_allclose(corners[key], colour, atol=12, err_msg=key)


def test_find_images_folders_files_and_errors(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.JPG", "a.png", "sub/c.tiff", "readme.txt", ".hidden.png", "sub/._c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    extra = tmp_path / "odd.name"
    extra.write_bytes(b"x")
    found = find_images([tmp_path, extra, tmp_path / "a.png"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.png", "b.JPG", "sub/c.tiff", "odd.name"]
    assert [p.name for p in find_images(tmp_path, recursive=False)] == ["a.png", "b.JPG"]
    assert ".bmp" in IMAGE_SUFFIXES
    with pytest.raises(InputFileError, match="no such file or folder"):
        find_images([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="empty: folder holds no image"):
        find_images(tmp_path / "empty")
