from __future__ import annotations

import numpy as np
import pytest

from cadx.errors import SlideError
from cadx.io.resolution import plan_read, read_overview, read_tile
from cadx.io.slide import ArraySlide, SlideReader


class OddPyramid(SlideReader):
    """A slide whose levels are not powers of two (like many scanners' files)."""

    def __init__(self) -> None:
        from pathlib import Path

        self.path = Path("odd.svs")
        self.vendor = "test"
        self.properties = {}
        self.level_dimensions = ((40000, 30000), (10000, 7500), (2500, 1875))
        self.level_downsamples = (1.0, 4.0, 16.0)
        self.mpp_xy_or_none = (0.226, 0.226)

    def _read_level(self, location_xy, level, size_wh):
        return np.full((size_wh[1], size_wh[0], 3), 200, np.uint8)


def test_level_by_mpp_uses_actual_downsamples():
    s = OddPyramid()
    p = plan_read(s, 0.904, 256)  # level 1 is exactly 0.904
    assert (p.level, p.read_size_px, p.needs_resize) == (1, 256, False)
    p = plan_read(s, 0.5, 256)  # no level within 10% of 0.5: read level 0 (0.226) and resize
    assert p.level == 0 and p.read_size_px == round(256 * 0.5 / 0.226)
    assert p.effective_mpp == pytest.approx(0.5, rel=0.01)
    assert p.size_level0_px == p.read_size_px
    p = plan_read(s, 2.0, 224)  # between level 1 (0.904) and level 2 (3.616): the finer one, resized
    assert p.level == 1 and p.size_level0_px == pytest.approx(224 * 2.0 / 0.226, abs=4)


def test_tolerance_and_no_upsampling():
    s = OddPyramid()
    assert plan_read(s, 0.95, 256, tolerance=0.1).level == 1
    strict = plan_read(s, 0.95, 256, tolerance=0.01)  # no match: the finer level 1, resized
    assert (strict.level, strict.read_size_px) == (1, round(256 * 0.95 / 0.904))
    with pytest.raises(SlideError, match="odd.svs: target 0.1 um/px is finer than level 0.*does not upsample"):
        plan_read(s, 0.1, 256)


def test_read_tile_resizes_to_out_size():
    s = ArraySlide(np.zeros((2048, 2048, 3), np.uint8), mpp=0.25, min_level_size_px=512)
    p = plan_read(s, 0.75, 100)  # levels at 0.25, 0.5, 1.0: read level 1 (0.5), 150 px -> 100 px
    assert (p.level, p.read_size_px) == (1, 150)
    assert read_tile(s, (0, 0), p).shape == (100, 100, 3)


def test_overview_resolution():
    s = ArraySlide(np.zeros((4096, 2048, 3), np.uint8), mpp=0.25, min_level_size_px=256)
    img, mpp = read_overview(s, 16.0)
    assert img.shape == (64, 32, 3) and mpp == pytest.approx(16.0)
