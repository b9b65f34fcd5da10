"""The segmenter: factory kind, offline encoder weights, shared predictor path (PyTorch and ONNX), metrics, loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("segmentation_models_pytorch")

from cadx.errors import ConfigError  # noqa: E402
from cadx.inference.predictor import OnnxPredictor, TorchPredictor, export_onnx, load_predictor, predict_tta  # noqa: E402
from cadx.metrics.segmentation import ConfusionCounts, confusion_counts, dice, iou  # noqa: E402
from cadx.models.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from cadx.models.factory import create_model  # noqa: E402
from cadx.training.losses import dice_bce_loss  # noqa: E402

TILE = 64
ARCH = "unet-tf_efficientnet_lite0"


def _tiles(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, TILE, TILE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def random_unet():
    torch.manual_seed(0)
    return create_model(ARCH, kind="segmenter", pretrained=False, num_classes=1, input_size=TILE).eval()


def test_config_and_output_shape(random_unet):
    c = random_unet.cadx_config
    assert (c.kind, c.architecture, c.num_classes, c.activation, c.input_size, c.weights) == (
        "segmenter", ARCH, 1, "sigmoid", TILE, "random")
    with torch.no_grad():
        out = random_unet(torch.zeros(2, 3, TILE, TILE))
    assert out.shape == (2, 1, TILE, TILE)


def test_torch_and_onnx_predict_per_pixel_probabilities(random_unet, tmp_path):
    x = _tiles()
    p_torch = TorchPredictor(random_unet, device="cpu").predict(x)
    assert p_torch.shape == (3, 1, TILE, TILE) and p_torch.dtype == np.float32
    assert p_torch.min() >= 0 and p_torch.max() <= 1 and p_torch.std() > 0
    onnx = OnnxPredictor(export_onnx(random_unet, tmp_path / "seg.onnx"))
    assert onnx.config == random_unet.cadx_config
    p_onnx = onnx.predict(x)
    assert p_onnx.shape == p_torch.shape
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-4)


def test_tta_maps_back_to_the_tile_frame(random_unet):
    class Echo:
        """Outputs the red channel as the map: TTA of an equivariant model is the plain prediction."""

        config = random_unet.cadx_config

        def predict(self, x):
            return (x[..., 0].astype(np.float32) / 255)[:, None]

    x = _tiles(2, seed=1)
    np.testing.assert_allclose(predict_tta(Echo(), x), Echo().predict(x), atol=1e-6)


def test_checkpoint_round_trip_and_load_predictor(random_unet, tmp_path):
    path = save_checkpoint(tmp_path / "seg.pt", random_unet, tile={"mpp": 0.5, "size_px": TILE})
    model, meta = load_checkpoint(path)
    assert meta["model"]["kind"] == "segmenter" and meta["tile"]["size_px"] == TILE
    x = _tiles(2)
    want = TorchPredictor(random_unet, device="cpu").predict(x)
    predictor, _ = load_predictor(path, backend="onnx", device="cpu")
    np.testing.assert_allclose(predictor.predict(x), want, atol=1e-4)


def test_offline_imagenet_weights_go_into_the_encoder():
    unet = create_model(ARCH, kind="segmenter", pretrained=True, num_classes=1, input_size=TILE)
    clf = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=2)
    assert unet.cadx_config.weights == clf.cadx_config.weights and unet.cadx_config.weights.startswith("file:")
    enc, ref = unet.net.encoder.model.state_dict(), clf.state_dict()
    for key in ("conv_stem.weight", "bn1.running_mean", "blocks.0.0.conv_dw.weight", "blocks.5.3.conv_pwl.weight"):
        assert torch.equal(enc[key], ref[key]), key
    # ImageNet statistics travel with the model.
    assert unet.cadx_config.mean == clf.cadx_config.mean


def test_unknown_architectures_are_config_errors():
    with pytest.raises(ConfigError, match="unknown segmentation architecture"):
        create_model("segnet-resnet18", kind="segmenter")
    with pytest.raises(ConfigError, match="unknown encoder"):
        create_model("unet-no_such_net", kind="segmenter")


def test_metrics_known_answers():
    truth = np.zeros((10, 10), bool)
    truth[2:6, 2:6] = True  # 16 px
    pred = np.zeros((10, 10), bool)
    pred[4:8, 2:6] = True  # 16 px, 8 shared
    c = confusion_counts(pred, truth)
    assert c == ConfusionCounts(tp=8, fp=8, fn=8, tn=76)
    assert dice(pred, truth) == 0.5 and iou(pred, truth) == pytest.approx(1 / 3)
    assert c.sensitivity == 0.5 and c.specificity == pytest.approx(76 / 84)
    # Pooled over items = metric of the summed counts, not the mean of the ratios.
    empty = confusion_counts(np.zeros(4), np.zeros(4))
    assert empty.dice == 1.0 and np.isnan(empty.sensitivity)
    assert (c + empty).dice == c.dice
    with pytest.raises(ValueError, match="shape"):
        confusion_counts(pred, truth[:5])


def test_dice_bce_loss_prefers_the_right_mask():
    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 4:12, 4:12] = 1
    loss = dice_bce_loss()
    right, wrong, unsure = 10 * (2 * target - 1), -10 * (2 * target - 1), torch.zeros_like(target)
    assert float(loss(right, target)) < float(loss(unsure, target)) < float(loss(wrong, target))
