"""``cadx explain`` on a tiny checkpoint: overlays, top classes, preprocessing from the checkpoint, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_grad_cam")

from cadx.cli.main import main  # noqa: E402

CLASSES = ("MEL", "NV", "BCC")


def _checkpoint(path, *, extra=None):
    from cadx.models.checkpoint import save_checkpoint
    from cadx.models.factory import create_model

    torch.manual_seed(0)
    model = create_model("tf_efficientnet_lite0", pretrained=False, num_classes=3, input_size=64,
                         class_names=CLASSES)
    return save_checkpoint(path, model.eval(), extra=extra)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir()
    for name, (h, w) in {"a.png": (48, 80), "b.jpg": (70, 70)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / name)
    return root, _checkpoint(root / "model.pt"), images


def _run(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_writes_overlays_and_the_top_classes_of_the_model(tiny, tmp_path, capsys):
    from cadx.explain.cam import class_activation_maps
    from cadx.explain.images import image_preprocess
    from cadx.inference.predictor import TorchPredictor, model_input
    from cadx.io.images import read_rgb
    from cadx.models.checkpoint import load_checkpoint
    from cadx.viz.overlay import overlay_map

    _, ckpt, images = tiny
    code, out, err = _run(capsys, "explain", images, "--model", ckpt, "--out", tmp_path / "out", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [r["image"] for r in report["images"]] == [str(images / "a.png"), str(images / "b.jpg")]
    model, meta = load_checkpoint(ckpt)
    predictor = TorchPredictor(model, device="cpu")
    img = image_preprocess(meta)(read_rgb(images / "a.png"))[None]
    assert img.shape == (1, 64, 64, 3)  # no recorded preprocessing: the whole image resized to the input size
    probs = predictor.predict(img)[0]
    first = report["images"][0]
    assert [t["class"] for t in first["top"]] == [CLASSES[i] for i in np.argsort(-probs)]
    np.testing.assert_allclose([t["probability"] for t in first["top"]], np.sort(probs)[::-1], atol=1e-5)
    assert first["class"] == first["top"][0]["class"]  # default: the top class is explained
    cam = class_activation_maps(model, torch.from_numpy(model_input(img, model.cadx_config)),
                                targets=[int(np.argmax(probs))])[0]
    written = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    np.testing.assert_array_equal(written, overlay_map(img[0], cam))
    assert (tmp_path / "out" / "b.png").is_file()


def test_explain_uses_the_recorded_preprocessing_and_the_asked_class(tiny, tmp_path, capsys):
    from cadx.preprocessing.images import ImagePreprocess

    _, _, images = tiny
    ckpt = _checkpoint(tmp_path / "derm.pt", extra={"preprocess": ImagePreprocess(size_px=40).to_dict()})
    code, out, err = _run(capsys, "explain", images / "a.png", "--model", ckpt, "--out", tmp_path / "o",
                          "--class", "BCC", "--method", "gradcam++")
    assert code == 0, err
    assert np.asarray(Image.open(tmp_path / "o" / "a.png")).shape == (40, 40, 3)
    assert "gradcam++ of BCC" in out and out.startswith(str(images / "a.png"))
    assert len(out.split(";")[0].split(",")) == 3  # three classes listed


def test_a_bad_image_is_reported_and_the_rest_go_on(tiny, tmp_path, capsys):
    _, ckpt, images = tiny
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    code, out, err = _run(capsys, "explain", bad, images / "a.png", "--model", ckpt, "--out", tmp_path / "o")
    assert code == 1
    assert "1 failed" in err and str(bad) in err
    assert (tmp_path / "o" / "a.png").is_file() and not (tmp_path / "o" / "broken.png").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--class", "SCC"], "'SCC' is not one of the model's classes (MEL, NV, BCC)"),
    (["--model", "{root}/missing.pt"], "missing.pt"),
])
def test_user_errors_exit_2_with_one_line(tiny, tmp_path, capsys, argv, message):
    root, ckpt, images = tiny
    argv = [a.format(root=root) for a in argv]
    model = [] if "--model" in argv else ["--model", ckpt]
    code, _, err = _run(capsys, "explain", images / "a.png", *model, *argv, "--out", tmp_path / "o")
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_overlay_never_replaces_its_input_and_stems_must_differ(tiny, tmp_path, capsys):
    _, ckpt, images = tiny
    src = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(src)
    code, _, err = _run(capsys, "explain", src, "--model", ckpt, "--out", tmp_path)
    assert code == 2 and "is also an input" in err
    assert np.asarray(Image.open(src)).max() == 0
    other = tmp_path / "sub"
    other.mkdir()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(other / "x.jpg")
    code, _, err = _run(capsys, "explain", src, other / "x.jpg", "--model", ckpt, "--out", tmp_path / "o")
    assert code == 2 and "would both write" in err


def test_unknown_method_is_refused_by_the_parser(tiny, tmp_path, capsys):
    _, ckpt, images = tiny
    with pytest.raises(SystemExit) as exc:
        main(["explain", str(images), "--model", str(ckpt), "--out", str(tmp_path), "--method", "lime"])
    assert exc.value.code == 2
    assert "invalid choice: 'lime'" in capsys.readouterr().err
