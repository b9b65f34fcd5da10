"""``cadx features``: CLAM files per slide, ONNX by default, resume, one-line errors, bad slides listed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cadx.cli.main import main
from cadx.io.h5 import read_features_h5

from .test_features import _tissue_image


@pytest.fixture()
def slides(tmp_path):
    from PIL import Image

    folder = tmp_path / "slides"
    folder.mkdir()
    Image.fromarray(_tissue_image(5)).save(folder / "a.png")
    (folder / "broken.tif").write_bytes(b"II*\x00" + b"\x00garbage" * 50)
    return [folder / "a.png", folder / "broken.tif"]


ARGS = ["--mpp", "1.0", "--tile-size", "32", "--mpp-override", "0.5", "--min-tissue", "0.5"]


def test_features_onnx_by_default_json_resume_and_a_bad_slide(tmp_path, slides, capsys):
    out = tmp_path / "f"
    code = main(["features", *map(str, slides), "--out", str(out), *ARGS, "--json"])
    captured = capsys.readouterr()
    assert code == 1 and "1 failed" in captured.err and "broken.tif" in captured.err
    res = json.loads(captured.out)
    assert res["encoder"] == "tf_efficientnet_lite0" and res["feature_dim"] == 1280 and res["tiles"] > 0
    assert res["backend"] == "OnnxPredictor" and res["written"] == [str(out / "h5_files" / "a.h5")]
    assert [p for p, _ in res["failures"]] == [str(slides[1])]
    tf = read_features_h5(out / "h5_files" / "a.h5")
    assert tf.features.shape == (res["tiles"], 1280) and tf.attrs["encoder_id"] == res["encoder_id"]
    np.testing.assert_array_equal(torch.load(out / "pt_files" / "a.pt", weights_only=True).numpy(), tf.features)
    assert len(list((out / "encoders").glob("*.onnx"))) == 1

    assert main(["features", str(slides[0]), "--out", str(out), *ARGS, "--backend", "torch"]) == 0
    text = capsys.readouterr().out
    assert "extracted 0 of 1 slides" in text and "1 skipped" in text  # same weights and config: same features


def test_an_encoder_without_weights_and_an_unknown_encoder_are_one_line_each(tmp_path, slides, capsys, monkeypatch):
    monkeypatch.delenv("CADX_WEIGHTS_DIR", raising=False)
    for encoder, expected in (("resnet50_trunc", "--weights FILE"), ("resnet_nope", "unknown encoder 'resnet_nope'")):
        assert main(["features", str(slides[0]), "--out", str(tmp_path / "f"), *ARGS, "--encoder", encoder]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("cadx: error: ") and expected in err and "\n" not in err
    assert not (tmp_path / "f" / "h5_files").exists()


def test_no_slides_is_an_error(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["features", str(empty), "--out", str(tmp_path / "f"), *ARGS]) == 2
    assert "no slides found" in capsys.readouterr().err
