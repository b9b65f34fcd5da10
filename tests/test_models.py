"""Model factory, offline ImageNet weights, checkpoints, ONNX export and parity."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cadx.errors import CheckpointError  # noqa: E402
from cadx.inference.predictor import OnnxPredictor, TorchPredictor, export_onnx  # noqa: E402
from cadx.models.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from cadx.models.factory import SUPPORTED_MODELS, create_model  # noqa: E402
from cadx.models.weights import WeightsUnavailableError  # noqa: E402
from cadx.preprocessing.augment import to_model_input  # noqa: E402

ESPRESSO = 967
CATS = {281, 282, 283, 285, 292}  # tabby, tiger cat, Persian, Egyptian cat, tiger


def _imagenet_top5(model, image: np.ndarray) -> list[int]:
    from PIL import Image

    cfg = model.cadx_config
    img = np.asarray(Image.fromarray(image).resize((224, 224), Image.Resampling.BICUBIC))
    x = torch.from_numpy(to_model_input(img[None], cfg.mean, cfg.std))
    with torch.inference_mode():
        return torch.topk(model.eval()(x), 5).indices[0].tolist()


def test_lite0_weights_are_real_imagenet_weights():
    from skimage import data

    model = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=1000)
    assert model.cadx_config.weights.startswith("file:efficientnet-lite0")
    assert model.cadx_config.mean == (0.5, 0.5, 0.5)
    assert _imagenet_top5(model, data.coffee())[0] == ESPRESSO
    assert _imagenet_top5(model, data.chelsea())[0] in CATS


def test_new_head_keeps_pretrained_backbone():
    base = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=1000)
    tuned = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=2, input_size=128)
    assert tuned.get_classifier().out_features == 2
    torch.testing.assert_close(base.conv_stem.weight, tuned.conv_stem.weight)
    assert tuned.cadx_config.input_size == 128 and tuned.cadx_config.num_classes == 2


def test_missing_weights_error_says_how_to_provide_them(monkeypatch):
    monkeypatch.delenv("CADX_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsUnavailableError) as err:
        create_model("resnet50", pretrained=True)
    msg = str(err.value)
    assert "--weights" in msg and "CADX_WEIGHTS_DIR" in msg and "hub" in msg


def test_local_weights_file_and_weights_dir(tmp_path, monkeypatch):
    src = create_model("mobilenetv2_100", num_classes=1000)
    path = tmp_path / "mobilenetv2_100.pth"
    torch.save(src.state_dict(), path)
    m = create_model("mobilenetv2_100", pretrained=path, num_classes=3)
    torch.testing.assert_close(m.conv_stem.weight, src.conv_stem.weight)
    assert m.cadx_config.weights == "file:mobilenetv2_100.pth"
    monkeypatch.setenv("CADX_WEIGHTS_DIR", str(tmp_path))
    m2 = create_model("mobilenetv2_100", pretrained=True, num_classes=2)
    torch.testing.assert_close(m2.conv_stem.weight, src.conv_stem.weight)


def test_weights_of_another_network_are_rejected(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save(create_model("mobilenetv2_100", num_classes=1000).state_dict(), path)
    with pytest.raises(WeightsUnavailableError, match="does not fit"):
        create_model("tf_efficientnet_lite0", pretrained=path)


@pytest.mark.slow
@pytest.mark.parametrize("name", SUPPORTED_MODELS)
def test_every_supported_backbone_builds_and_runs(name):
    m = create_model(name, num_classes=2).eval()
    size = 299 if name == "inception_v3" else 96
    with torch.inference_mode():
        assert m(torch.zeros(1, 3, size, size)).shape == (1, 2)


def test_checkpoint_round_trip(tmp_path):
    m = create_model("tf_efficientnet_lite0", num_classes=2, input_size=64, class_names=("normal", "tumor"))
    path = save_checkpoint(tmp_path / "c.pt", m, tile={"mpp": 0.5, "size_px": 64}, train_config={"lr": 1e-3},
                           metrics={"val_auc": 0.9})
    back, meta = load_checkpoint(path)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(back(x), m.eval()(x))
    assert meta["tile"] == {"mpp": 0.5, "size_px": 64} and meta["metrics"]["val_auc"] == 0.9
    assert meta["model"]["class_names"] == ["normal", "tumor"] or tuple(meta["model"]["class_names"]) == ("normal", "tumor")
    assert back.cadx_config.architecture == "tf_efficientnet_lite0" and meta["cadx_version"]


def test_bad_checkpoints_are_clean_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"a": torch.zeros(1)}, plain)
    with pytest.raises(CheckpointError, match="not a cadx checkpoint"):
        load_checkpoint(plain)


def test_onnx_matches_pytorch(tmp_path):
    m = create_model("tf_efficientnet_lite0", num_classes=2, input_size=64)
    onnx_path = export_onnx(m, tmp_path / "m.onnx")
    tiles = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    p_torch = TorchPredictor(m).predict_proba(tiles)
    ort_pred = OnnxPredictor(onnx_path)
    p_onnx = ort_pred.predict_proba(tiles)
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-4)
    assert ort_pred.config == m.cadx_config


def test_predictor_rejects_wrong_input(tmp_path):
    pred = TorchPredictor(create_model("tf_efficientnet_lite0", num_classes=2, input_size=64))
    with pytest.raises(ValueError, match="uint8"):
        pred.predict_proba(np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        pred.predict_proba(np.zeros((64, 64, 3), np.uint8))


@pytest.mark.gpu
def test_cuda_predictor_matches_cpu():
    m = create_model("tf_efficientnet_lite0", num_classes=2, input_size=64)
    tiles = np.random.default_rng(1).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    cpu = TorchPredictor(m, device="cpu").predict_proba(tiles)
    gpu = TorchPredictor(m, device="cuda").predict_proba(tiles)
    np.testing.assert_allclose(gpu, cpu, atol=1e-3)


def test_six_channel_input_reuses_rgb_filters():
    rgb = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=2)
    six = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=2, in_chans=6)
    torch.testing.assert_close(six.conv_stem.weight[:, :3], rgb.conv_stem.weight * 0.5)
    torch.testing.assert_close(six.conv_stem.weight[:, 3:], rgb.conv_stem.weight * 0.5)
    assert six.cadx_config.in_chans == 6 and len(six.cadx_config.mean) == 6
