"""Shared fixtures: small synthetic slides and cohorts with fixed seeds (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
SVS = DATA / "cmu_small_region.svs"


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory):
    """A CAMELYON-layout cohort: 2 tumour + 1 normal training slides and 2 test slides, 4096 px."""
    from cadx.synth.cohort import generate_cohort

    out = tmp_path_factory.mktemp("cohort")
    slides = generate_cohort(out, n_tumor=2, n_normal=1, n_test=2, size_px=4096, seed=7, show_progress=False)
    return out, slides


@pytest.fixture(scope="session")
def tumor_slide(cohort):
    _, slides = cohort
    return next(s for s in slides if s.name == "tumor_001")


@pytest.fixture()
def rgb_image() -> np.ndarray:
    """A 600 x 1000 RGB image with smooth content (JPEG-friendly) and a known pattern."""
    yy, xx = np.mgrid[0:600, 0:1000]
    img = np.stack([(xx / 1000 * 255), (yy / 600 * 255), ((xx + yy) % 256)], axis=-1)
    return img.astype(np.uint8)


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` when CUDA is not available."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
