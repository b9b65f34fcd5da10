"""Frozen encoders (``create_model(kind="encoder")``): pooled features through the unchanged predictors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cadx.inference.predictor import OnnxPredictor, TorchPredictor, export_onnx
from cadx.models.checkpoint import load_checkpoint, save_checkpoint
from cadx.models.factory import RESNET50_TRUNC, build_from_config, create_model
from cadx.models.weights import WeightsUnavailableError


def _tiles(n: int = 3, size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_resnet50_trunc_is_layer3_pooled_1024_features_and_frozen():
    m = create_model(RESNET50_TRUNC, kind="encoder", pretrained=False, input_size=64)
    c = m.cadx_config
    assert (c.architecture, c.kind, c.num_classes, c.activation, c.weights) == (
        RESNET50_TRUNC, "encoder", 1024, "none", "random")
    assert not m.training and not any(p.requires_grad for p in m.parameters())
    pred = TorchPredictor(m, device="cpu")
    x = _tiles(2, 64)
    e = pred.embed(x)
    assert e.shape == (2, 1024) and e.dtype == np.float32
    np.testing.assert_array_equal(pred.predict(x), e)  # no head: outputs are the features
    with torch.no_grad():  # the known answer: mean over space of layer3's output
        t = torch.from_numpy(((x / 255.0 - c.mean) / c.std).transpose(0, 3, 1, 2).astype(np.float32))
        h = m.maxpool(m.act1(m.bn1(m.conv1(t))))
        expected = m.layer3(m.layer2(m.layer1(h))).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(e, expected, rtol=1e-4, atol=1e-5)


def test_resnet50_trunc_loads_a_full_resnet50_state_dict_and_refuses_another_network(tmp_path):
    full = create_model("resnet50", num_classes=1000)
    path = tmp_path / "resnet50.pth"
    torch.save(full.state_dict(), path)  # with layer4 and fc, as ImageNet weights come
    m = create_model(RESNET50_TRUNC, kind="encoder", pretrained=path)
    torch.testing.assert_close(m.layer3[0].conv1.weight, full.layer3[0].conv1.weight)
    assert m.cadx_config.weights == "file:resnet50.pth"
    wrong = tmp_path / "resnet18.pth"
    torch.save(create_model("resnet18", num_classes=1000).state_dict(), wrong)
    with pytest.raises(WeightsUnavailableError, match="does not fit a ResNet-50") as err:
        create_model(RESNET50_TRUNC, kind="encoder", pretrained=wrong)
    assert "\n" not in str(err.value).split(": ", 1)[0]


def test_an_encoder_without_weights_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("CADX_WEIGHTS_DIR", raising=False)
    for name in (RESNET50_TRUNC, "vit_small_patch16_224"):
        with pytest.raises(WeightsUnavailableError, match=f"no offline ImageNet weights for '{name}'"):
            create_model(name, kind="encoder", pretrained=True)


def test_default_encoder_torch_and_onnx_embed_agree(tmp_path):
    m = create_model("tf_efficientnet_lite0", kind="encoder", pretrained=True, input_size=32)
    assert m.cadx_config.num_classes == 1280 and m.cadx_config.weights.startswith("file:")
    onnx = OnnxPredictor(export_onnx(m, tmp_path / "enc.onnx"))
    x = _tiles(3, 32)
    e_torch, e_onnx = TorchPredictor(m, device="cpu").embed(x), onnx.embed(x)
    assert e_torch.shape == e_onnx.shape == (3, 1280) and e_onnx.dtype == np.float32
    assert np.ptp(e_torch, axis=0).max() > 1e-2  # tiles differ: parity is not trivial
    np.testing.assert_allclose(e_onnx, e_torch, rtol=1e-4, atol=1e-4)
    assert onnx.config == m.cadx_config


def test_any_timm_backbone_is_an_encoder_and_its_checkpoint_rebuilds(tmp_path):
    m = create_model("resnet18", kind="encoder", input_size=32)
    assert m.cadx_config.num_classes == 512 and TorchPredictor(m, device="cpu").embed(_tiles(1)).shape == (1, 512)
    assert build_from_config(m.cadx_config).cadx_config == m.cadx_config
    path = save_checkpoint(tmp_path / "enc.pt", m)
    back, _ = load_checkpoint(path)
    x = _tiles(2)
    np.testing.assert_allclose(TorchPredictor(back, device="cpu").embed(x), TorchPredictor(m, device="cpu").embed(x),
                               rtol=1e-5, atol=1e-6)
