"""Predictors: activations, pooled features, TTA, ONNX parity and the checkpoint-bound ONNX file."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from cadx.errors import CheckpointError
from cadx.inference.predictor import (
    META_CHECKPOINT_SHA256,
    OnnxPredictor,
    TorchPredictor,
    activate,
    export_onnx,
    file_sha256,
    load_predictor,
    predict_tta,
)
from cadx.models.checkpoint import save_checkpoint
from cadx.models.config import ModelConfig
from cadx.models.factory import create_model

TILE = 64


def _tiles(n: int = 5, seed: int = 0, chans: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, TILE, TILE, chans), dtype=np.uint8)


def _lite0(seed: int, num_classes: int = 2):
    """ImageNet backbone with a random (seeded) head: outputs that differ between seeds and tiles."""
    m = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=num_classes, input_size=TILE)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        m.classifier.weight.copy_(torch.randn(m.classifier.weight.shape, generator=g) * 0.05)
    return m.eval()


def _constant_head(activation: str, bias: list[float]):
    """A model whose outputs are exactly ``bias`` for every input (zero head weights)."""
    m = create_model("resnet18", num_classes=len(bias), input_size=32, activation=activation)
    with torch.no_grad():
        m.fc.weight.zero_()
        m.fc.bias.copy_(torch.tensor(bias))
    return m.eval()


LOG3 = math.log(3.0)


@pytest.mark.parametrize("activation, expected", [
    ("softmax", [0.25, 0.75]),  # the 2-class tile classifier: probabilities summing to 1
    ("sigmoid", [0.5, 0.75]),  # multi-label: independent probabilities
    ("none", [0.0, LOG3]),  # regression: raw outputs
])
def test_activation_comes_from_the_config(tmp_path, activation, expected):
    m = _constant_head(activation, [0.0, LOG3])
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    want = np.tile(np.float32(expected), (3, 1))
    torch_pred = TorchPredictor(m, device="cpu")
    onnx_pred = OnnxPredictor(export_onnx(m, tmp_path / "m.onnx"))
    assert onnx_pred.config.activation == activation
    for pred in (torch_pred, onnx_pred):
        p = pred.predict(x)
        assert p.dtype == np.float32 and p.shape == (3, 2)
        np.testing.assert_allclose(p, want, rtol=1e-6, atol=1e-6)


def test_activate_is_stable_for_large_outputs():
    z = np.array([[1000.0, 0.0], [-1000.0, 0.0]])
    np.testing.assert_array_equal(activate(z, "softmax"), [[1, 0], [0, 1]])
    np.testing.assert_array_equal(activate(z, "sigmoid"), [[1, 0.5], [0, 0.5]])


def test_onnx_matches_pytorch_for_predict_and_embed(tmp_path):
    m = _lite0(seed=1)
    onnx_pred = OnnxPredictor(export_onnx(m, tmp_path / "m.onnx"))
    torch_pred = TorchPredictor(m, device="cpu")
    x = _tiles()
    p_torch, p_onnx = torch_pred.predict(x), onnx_pred.predict(x)
    assert np.ptp(p_torch[:, 1]) > 1e-3  # the tiles get different scores: parity is not trivial
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-4)
    e_torch, e_onnx = torch_pred.embed(x), onnx_pred.embed(x)
    assert e_torch.shape == e_onnx.shape == (5, 1280) and e_onnx.dtype == np.float32
    np.testing.assert_allclose(e_onnx, e_torch, rtol=1e-4, atol=1e-4)
    assert onnx_pred.config == m.cadx_config


def test_embed_is_the_input_of_the_head():
    m = _lite0(seed=2)
    pred = TorchPredictor(m, device="cpu")
    x = _tiles(3)
    features = torch.from_numpy(pred.embed(x))
    with torch.no_grad():
        logits = m.get_classifier()(features).numpy()
    np.testing.assert_allclose(logits, pred.logits(x), rtol=1e-5, atol=1e-5)
    r = TorchPredictor(create_model("resnet18", num_classes=3, activation="sigmoid"), device="cpu")
    assert r.embed(_tiles(2)).shape == (2, 512)


class _TopLeftPixel:
    """Score = red value of the top-left pixel / 255: TTA averages it over the 4 corners."""

    config = ModelConfig("fake", 1, input_size=TILE, mean=(0.5,) * 3, std=(0.5,) * 3, activation="none")

    def predict(self, x):
        return (x[:, 0, 0, :1] / 255.0).astype(np.float32)


def test_predict_tta_averages_the_eight_symmetries():
    x = np.zeros((2, TILE, TILE, 3), np.uint8)
    x[0, 0, 0, 0], x[0, 0, -1, 0], x[0, -1, 0, 0], x[0, -1, -1, 0] = 255, 51, 102, 153
    x[1, 0, 0, 0] = 255
    # Each corner comes to the top left in 2 of the 8 transforms.
    np.testing.assert_allclose(predict_tta(_TopLeftPixel(), x)[:, 0], [(255 + 51 + 102 + 153) / 4 / 255, 0.25],
                               rtol=1e-6)
    assert _TopLeftPixel().predict(x)[1, 0] == 1.0


def test_wrong_input_is_a_caller_bug():
    pred = TorchPredictor(_constant_head("softmax", [0.0, 1.0]), device="cpu")
    for bad in (np.zeros((1, 32, 32, 3), np.float32), np.zeros((32, 32, 3), np.uint8),
                np.zeros((1, 32, 32, 6), np.uint8)):
        with pytest.raises(ValueError, match=r"expected \(N, H, W, 3\) uint8"):
            pred.predict(bad)


def test_foreign_onnx_beside_a_checkpoint_is_re_exported(tmp_path):
    ours = save_checkpoint(tmp_path / "ours.pt", _lite0(seed=3), tile={"mpp": 0.5, "size_px": TILE})
    (tmp_path / "other").mkdir()
    theirs = save_checkpoint(tmp_path / "other/theirs.pt", _lite0(seed=4), tile={"mpp": 0.5, "size_px": TILE})
    foreign, _ = load_predictor(theirs, backend="onnx")
    shutil.copy2(foreign.path, tmp_path / "ours.onnx")  # newer than our checkpoint: mtime would trust it
    x = _tiles(seed=5)
    pred, meta = load_predictor(ours, backend="onnx")
    assert isinstance(pred, OnnxPredictor) and meta["tile"]["size_px"] == TILE
    assert pred.metadata[META_CHECKPOINT_SHA256] == file_sha256(ours)
    expected = TorchPredictor(_reload(ours), device="cpu")
    np.testing.assert_allclose(pred.predict(x), expected.predict(x), atol=1e-4)
    np.testing.assert_allclose(pred.embed(x), expected.embed(x), rtol=1e-4, atol=1e-4)
    assert np.abs(pred.predict(x) - foreign.predict(x)).max() > 1e-2  # the foreign file would have been wrong


def test_onnx_is_reused_while_the_checkpoint_is_unchanged(tmp_path):
    import os

    ckpt = save_checkpoint(tmp_path / "m.pt", _constant_head("softmax", [0.0, 1.0]))
    load_predictor(ckpt, backend="onnx")
    onnx_path = tmp_path / "m.onnx"
    os.utime(onnx_path, ns=(1, 1))  # older than the checkpoint: the hash decides, not the clock
    load_predictor(ckpt, backend="onnx")
    assert onnx_path.stat().st_mtime_ns == 1
    # New weights under the same name: re-exported even though the ONNX file is now "newer".
    save_checkpoint(ckpt, _constant_head("softmax", [LOG3, 0.0]))
    os.utime(onnx_path, ns=(4_000_000_000 * 10**9,) * 2)
    pred, _ = load_predictor(ckpt, backend="onnx")
    np.testing.assert_allclose(pred.predict(np.zeros((1, 32, 32, 3), np.uint8)), [[0.75, 0.25]], atol=1e-6)
    # A corrupt file there is replaced too.
    onnx_path.write_bytes(b"not onnx")
    pred, _ = load_predictor(ckpt, backend="onnx")
    assert pred.metadata[META_CHECKPOINT_SHA256] == file_sha256(ckpt)


def test_load_predictor_backends(tmp_path):
    ckpt = save_checkpoint(tmp_path / "m.pt", _constant_head("sigmoid", [0.0, LOG3]))
    pred, meta = load_predictor(ckpt, backend="torch", device="cpu")
    assert isinstance(pred, TorchPredictor) and pred.device == "cpu" and meta["model"]["activation"] == "sigmoid"
    pred, _ = load_predictor(ckpt, backend="auto", device="cpu")
    assert isinstance(pred, OnnxPredictor)
    with pytest.raises(ValueError, match="backend must be"):
        load_predictor(ckpt, backend="tensorrt")


def test_onnx_without_cadx_metadata_is_refused(tmp_path):
    import onnx

    path = export_onnx(_constant_head("softmax", [0.0, 1.0]), tmp_path / "plain.onnx")
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(path))
    with pytest.raises(CheckpointError, match="lacks cadx metadata"):
        OnnxPredictor(path)


def _reload(path):
    from cadx.models.checkpoint import load_checkpoint

    return load_checkpoint(path)[0]


@pytest.mark.gpu
def test_cuda_predictor_matches_cpu():
    m = _lite0(seed=6)
    x = _tiles(4, seed=1)
    cpu = TorchPredictor(m, device="cpu")
    p_cpu, e_cpu = cpu.predict(x), cpu.embed(x)
    gpu = TorchPredictor(m, device="cuda")
    np.testing.assert_allclose(gpu.predict(x), p_cpu, atol=1e-3)
    np.testing.assert_allclose(gpu.embed(x), e_cpu, rtol=1e-3, atol=1e-3)
