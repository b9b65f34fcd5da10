"""The main job, shrunk: every stage runs and every promised output exists."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")


def test_demo_end_to_end_small(tmp_path):
    from cadx.demo import run_demo

    summary = run_demo(tmp_path, seed=5, size_px=4096, n_train=2, n_test=4, tumor_contrast=0.6,
                       warmup_steps=2, finetune_steps=2)
    for name in ("report.html", "summary.json", "metrics.json", "roc.png", "froc.png", "per_slide.csv",
                 "tiling_preview.png", "train/model.pt", "train/slide_forest.json"):
        assert (tmp_path / name).exists(), name
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 4
    assert 0.0 <= summary["slide_auc"] <= 1.0 and 0.0 <= summary["froc"] <= 1.0
    html = (tmp_path / "report.html").read_text()
    assert "Lesion FROC" in html or "FROC" in html
    assert "data:image/png;base64," in html and "second opinion" in html
    assert json.loads((tmp_path / "summary.json").read_text())["seed"] == 5
