"""Class activation maps on a model whose answer is known; target layers per architecture; faithfulness."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_grad_cam")

from cadx.errors import CadxError  # noqa: E402
from cadx.explain import METHODS, class_activation_maps, deletion_check, target_layer  # noqa: E402

SIZE = 64  # px; the model sees 4 x 4 px blocks (max-pooled), so squares sit on that grid
SQUARE = 16  # px


class SquareNet(torch.nn.Module):
    """Two classes with known evidence: class 1 <- a white square in the top-left quadrant,
    class 0 <- a red square in the bottom-right quadrant.

    A 1x1 convolution detects white (r+g+b > 2.4) and red (r-g-b > 0.5) pixels, 4 x 4 max pooling
    keeps a block lit while any of its pixels is, and ``features`` (identity, the last convolution:
    the CAM's layer) feeds each logit the sum of its detector over its own quadrant. Deleting a
    random 20 % of a square's pixels leaves every block lit (all 16 of a block's pixels would have
    to go), so random deletion costs exactly nothing; deleting the whole square costs everything.
    """

    def __init__(self) -> None:
        super().__init__()
        self.detect = torch.nn.Conv2d(3, 2, 1)
        self.pool = torch.nn.MaxPool2d(4)
        self.features = torch.nn.Conv2d(2, 2, 1)
        with torch.no_grad():
            self.detect.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0]]).view(2, 3, 1, 1))
            self.detect.bias.copy_(torch.tensor([-2.4, -0.5]))
            self.features.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            self.features.bias.zero_()
        half = SIZE // 4 // 2
        quadrants = torch.zeros(2, SIZE // 4, SIZE // 4)
        quadrants[0, :half, :half] = 1.0  # white counts in the top-left quadrant only
        quadrants[1, half:, half:] = 1.0  # red counts in the bottom-right quadrant only
        self.register_buffer("quadrants", quadrants)

    def forward(self, x):
        a = self.features(self.pool(torch.relu(self.detect(x))))
        evidence = (a * self.quadrants).sum(dim=(2, 3))  # (N, 2): white in TL, red in BR
        return torch.stack([2.0 * evidence[:, 1], 2.0 * evidence[:, 0] - 4.0], dim=1)


def _images(n: int, *, red: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 64, 64, 3) uint8 on a dim noisy background; white squares in TL (and red ones in BR) on the
    4-px grid; returns the images and the boolean masks of the white and red squares."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(10, 40, size=(n, SIZE, SIZE, 3)).astype(np.uint8)
    white = np.zeros((n, SIZE, SIZE), bool)
    reds = np.zeros((n, SIZE, SIZE), bool)
    for i in range(n):
        r, c = 4 * rng.integers(0, 5, size=2)  # top-left corner in 0..16: the square stays in the quadrant
        white[i, r:r + SQUARE, c:c + SQUARE] = True
        imgs[i][white[i]] = 255
        if red:
            r, c = SIZE // 2 + 4 * rng.integers(0, 5, size=2)
            reds[i, r:r + SQUARE, c:c + SQUARE] = True
            imgs[i][reds[i]] = (255, 0, 0)
    return imgs, white, reds


def _tensor(imgs: np.ndarray):
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0


def _predict_fn(net):
    def predict(imgs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(net(_tensor(imgs)), dim=1).numpy()

    return predict


def test_square_net_answers_as_designed():
    net = SquareNet().eval()
    imgs, _, _ = _images(3, red=False)
    p = _predict_fn(net)(imgs)
    assert (p[:, 1] > 0.999).all()
    blank = np.full_like(imgs, 25)
    assert (_predict_fn(net)(blank)[:, 1] < 0.05).all()
    moved = np.roll(imgs, SIZE // 2, axis=2)  # the white square in the top-right quadrant counts for nothing
    assert (_predict_fn(net)(moved)[:, 1] < 0.05).all()


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam"])
def test_class_maps_point_at_the_evidence_of_the_asked_class(method):
    net = SquareNet().eval()
    imgs, white, reds = _images(3, red=True)
    for target, square in ((1, white), (0, reds)):
        cams = class_activation_maps(net, _tensor(imgs), method=method, targets=[target] * 3)
        assert cams.shape == (3, SIZE, SIZE) and cams.dtype == np.float32
        for cam, sq in zip(cams, square, strict=True):
            assert sq.ravel()[cam.argmax()], f"{method} target {target}: maximum outside the square"
            # Every pixel of the square outranks every pixel outside it (the 4-px blocks, bilinearly
            # upsampled: >= 0.625**2 inside, <= 0.375 outside).
            assert cam[sq].min() > cam[~sq].max()
            assert cam.max() == pytest.approx(1.0) and cam.min() >= 0.0


def test_eigencam_is_class_agnostic_and_finds_the_only_object():
    net = SquareNet().eval()
    imgs, white, _ = _images(3, red=False)
    x = _tensor(imgs)
    for_1 = class_activation_maps(net, x, method="eigencam", targets=[1, 1, 1])
    for_0 = class_activation_maps(net, x, method="eigencam", targets=[0, 0, 0])
    np.testing.assert_array_equal(for_0, for_1)  # the target is ignored
    for cam, sq in zip(for_1, white, strict=True):
        assert sq.ravel()[cam.argmax()]
        assert cam[sq].min() > cam[~sq].max()  # sign fixed: the object is positive, not the background


def test_eigencam_sign_points_at_the_object_when_activations_go_negative():
    # One channel that goes *down* on the white square: the principal component's sign from SVD
    # would make the background the "object"; cadx turns it so the strongest response is positive.
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1), torch.nn.ReLU(), torch.nn.MaxPool2d(4),
                              torch.nn.Conv2d(1, 1, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.fill_(-2.4)
        net[3].weight.fill_(-1.0)
        net[3].bias.zero_()
    imgs, white, _ = _images(2, red=False)
    cams = class_activation_maps(net.eval(), _tensor(imgs), method="eigencam")
    for cam, sq in zip(cams, white, strict=True):
        assert cam[sq].min() > cam[~sq].max()


def test_default_target_is_the_top_class():
    net = SquareNet().eval()
    imgs, _, _ = _images(2, red=False)
    x = _tensor(imgs)
    np.testing.assert_array_equal(class_activation_maps(net, x), class_activation_maps(net, x, targets=[1, 1]))


@pytest.mark.parametrize("method", METHODS)
def test_deletion_check_passes_for_faithful_maps(method):
    net = SquareNet().eval()
    imgs, _, _ = _images(4, red=False, seed=1)
    cams = class_activation_maps(net, _tensor(imgs), method=method, targets=[1] * 4)
    r = deletion_check(_predict_fn(net), imgs, cams, [1] * 4, fraction=0.2, seed=0)
    assert r["passed"] is True
    assert r["drop_top"] > 0.9  # the whole square goes: p(class 1) from ~1 to ~0.02
    assert r["drop_random"] == pytest.approx(0.0, abs=1e-6)  # every block keeps a white pixel


def test_deletion_check_fails_a_random_cam():
    net = SquareNet().eval()
    imgs, _, _ = _images(4, red=False, seed=1)
    noise = np.random.default_rng(5).random((4, SIZE, SIZE)).astype(np.float32)
    r = deletion_check(_predict_fn(net), imgs, noise, [1] * 4)
    assert r["passed"] is False
    assert r["drop_top"] == pytest.approx(0.0, abs=1e-6)


def test_deletion_check_fills_with_the_image_mean_and_leaves_inputs_alone():
    seen = []

    def predict(imgs):
        seen.append(imgs.copy())
        return np.tile([0.5, 0.5], (len(imgs), 1))

    img = np.zeros((1, 4, 5, 3), np.uint8)
    img[0, 0, :] = 200  # mean of each channel: 200 * 5 / 20 = 50
    cam = np.zeros((1, 4, 5))
    cam[0, 3, 4] = 1.0
    original = img.copy()
    deletion_check(predict, img, cam, [0], fraction=0.05)  # 1 pixel
    np.testing.assert_array_equal(img, original)
    top = seen[1][0]
    assert top[3, 4].tolist() == [50, 50, 50]
    assert int((top != original[0]).any(axis=2).sum()) == 1
    with pytest.raises(ValueError, match="fraction"):
        deletion_check(predict, img, cam, [0], fraction=1.0)
    with pytest.raises(ValueError, match="cams"):
        deletion_check(predict, img, cam[:, :3], [0])


def test_bad_method_and_targets_are_caller_errors():
    net = SquareNet().eval()
    x = torch.zeros(2, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match="method"):
        class_activation_maps(net, x, method="lime")
    with pytest.raises(ValueError, match="targets"):
        class_activation_maps(net, x, targets=[1])


def test_maps_under_no_grad_frozen_weights_and_mode_restored():
    net = SquareNet().train()
    for p in net.parameters():
        p.requires_grad_(False)
    imgs, white, _ = _images(1, red=False)
    with torch.inference_mode():
        x = _tensor(imgs)
        cam = class_activation_maps(net, x, method="gradcam", targets=[1])[0]
    assert cam[white[0]].min() > cam[~white[0]].max()
    assert net.training


@pytest.mark.parametrize(("name", "path", "spatial"), [
    ("resnet18", ("layer4", -1), 2),
    ("mobilenetv2_100", ("bn2",), 2),
    ("tf_efficientnet_lite0", ("bn2",), 2),
    ("mobilenetv3_small_050", ("blocks", -1), 2),
])
def test_target_layer_per_architecture(name, path, spatial):
    from cadx.models.factory import create_model

    model = create_model(name, pretrained=False, num_classes=2, input_size=64).eval()
    expected = model
    for step in path:
        expected = expected[step] if isinstance(step, int) else getattr(expected, step)
    layer = target_layer(model)
    assert layer is expected
    shapes = []
    handle = layer.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    handle.remove()
    assert shapes[0][2:] == (spatial, spatial)  # a feature map (64 px / 32), not a pooled vector


def test_target_layer_falls_back_to_the_last_convolution():
    net = SquareNet()
    assert target_layer(net) is net.features
    net.cadx_config = type("Cfg", (), {"architecture": "resnet18"})()  # named like a ResNet, has no layer4
    assert target_layer(net) is net.features
    with pytest.raises(CadxError, match="no convolutional layer"):
        target_layer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)))
