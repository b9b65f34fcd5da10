"""Dermoscopy end to end: config validation, a tiny training run, predictions.csv, CLI exit codes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("torch")

from cadx.cli.main import main  # noqa: E402
from cadx.errors import ConfigError  # noqa: E402
from cadx.tasks.isic2019.train import DermTrainConfig  # noqa: E402

from .derm_data import make_isic_folder  # noqa: E402

CLASSES = ["MEL", "NV", "BCC"]


def _yaml(path, **values):
    path.write_text("".join(f"{k}: {v}\n" for k, v in values.items()))
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """``cadx train derm`` on 8 images per class (every third lesion photographed twice), 32 px, 30 steps."""
    import torch

    root = tmp_path_factory.mktemp("derm")
    data = make_isic_folder(root / "isic", n_per_class=8, size_px=64)
    cfg = _yaml(root / "derm.yaml", data_dir=data, out_dir=root / "run", model="resnet10t", pretrained="false",
                image_size=32, batch_size=8, warmup_steps=5, finetune_steps=25, trainable_blocks=-1, lr="5e-4",
                eval_every=5, val_fraction=0.25, num_workers=0, device="cpu", seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only contend on a shared machine
    try:
        assert main(["train", "derm", "--config", str(cfg)]) == 0
    finally:
        torch.set_num_threads(threads)
    return data, root / "run"


def test_config_reads_yaml_and_normalises_classes(tmp_path):
    data = make_isic_folder(tmp_path / "isic", n_per_class=1, size_px=8)
    cfg = DermTrainConfig.from_yaml(_yaml(tmp_path / "c.yaml", data_dir=data, out_dir=tmp_path / "o", lr="5e-4",
                                          classes="[NV, MEL]"))
    assert cfg.lr == 5e-4 and cfg.classes == "NV,MEL" and cfg.balance == "sampler" and cfg.image_size == 224
    assert DermTrainConfig(data_dir=str(data), out_dir="o", classes="All").classes == "all"


@pytest.mark.parametrize(("values", "match"), [
    ({"classes": "MEL,XYZ"}, r"c.yaml: classes: unknown ISIC 2019 class XYZ"),
    ({"classes": "MEL,UNK"}, r"c.yaml: classes: UNK"),
    ({"balance": "oversample"}, r"c.yaml: balance: "),
    ({"batch_size": 0}, r"c.yaml: batch_size: "),
    ({"colour": "yes"}, r"c.yaml: colour: unknown key"),
    ({"model": "no_such_net"}, r"c.yaml: model: timm has no architecture 'no_such_net'"),
])
def test_config_errors_name_file_and_key(tmp_path, values, match):
    data = make_isic_folder(tmp_path / "isic", n_per_class=1, size_px=8)
    with pytest.raises(ConfigError, match=match):
        DermTrainConfig.from_yaml(_yaml(tmp_path / "c.yaml", data_dir=data, out_dir=tmp_path / "o", **values))


def test_config_refuses_a_folder_of_neither_layout(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(b"")
    with pytest.raises(ConfigError, match="neither the ISIC 2019 layout"):
        DermTrainConfig(data_dir=str(tmp_path / "flat"), out_dir="o")
    with pytest.raises(ConfigError, match="data_dir: no such folder"):
        DermTrainConfig(data_dir=str(tmp_path / "missing"), out_dir="o")


def test_checkpoint_records_classes_preprocessing_and_temperature(trained):
    from cadx.models.checkpoint import load_checkpoint

    _, run = trained
    _, meta = load_checkpoint(run / "model.pt")
    assert meta["model"]["class_names"] == CLASSES and meta["model"]["activation"] == "softmax"
    assert meta["model"]["input_size"] == 32
    assert meta["preprocess"] == {"size_px": 32, "colour_constancy": True, "crop_border": True, "p": 6.0,
                                  "border_threshold": 30}
    t = meta["calibration"]["temperature"]
    assert isinstance(t, float) and t > 0 and meta["metrics"]["temperature"] == t
    assert meta["metrics"]["val_nll_calibrated"] <= meta["metrics"]["val_nll"] + 1e-9
    assert meta["metrics"]["train_counts"] == {"MEL": 6, "NV": 6, "BCC": 6}
    assert meta["metrics"]["val_counts"] == {"MEL": 2, "NV": 2, "BCC": 2}
    assert meta["train_config"]["classes"] == "MEL,NV,BCC"
    history = json.loads((run / "history.json").read_text())
    assert [h["step"] for h in history] == [5, 10, 15, 20, 25, 30][:len(history)]
    assert all("val_balanced_accuracy" in h for h in history)


def test_split_keeps_lesions_on_one_side(trained):
    _, run = trained
    rows = list(csv.DictReader((run / "split.csv").open()))
    assert len(rows) == 24
    sides: dict[str, set[str]] = {}
    for r in rows:
        sides.setdefault(r["lesion_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in sides.values())
    assert any(sum(r["lesion_id"] == lid for r in rows) == 2 for lid in sides)  # revisits exist


def test_predict_csv_layout_temperature_and_bad_images(trained, tmp_path):
    from cadx.inference.predictor import activate, load_predictor
    from cadx.io.images import find_images, read_rgb
    from cadx.preprocessing.images import ImagePreprocess
    from cadx.tasks.isic2019.predict import predict_images

    data, run = trained
    bad = tmp_path / "ISIC_9999999.jpg"
    bad.write_bytes(b"\xff\xd8\xff truncated")
    images = find_images([data / "ISIC_2019_Training_Input"]) + [bad]
    predictor, meta = load_predictor(run / "model.pt", backend="torch", device="cpu")
    report = predict_images(images, predictor, meta, tmp_path / "pred", batch_size=5, show_progress=False)
    assert [str(p) for p, _ in report.failures] == [str(bad)]
    with (tmp_path / "pred" / "predictions.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["image", *CLASSES] and len(rows) == 25
    assert [r[0] for r in rows[1:]] == [p.stem for p in images[:-1]]
    probs = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # known answer: softmax(logits / T) of the preprocessed image
    t = meta["calibration"]["temperature"]
    img = ImagePreprocess.from_dict(meta["preprocess"])(read_rgb(images[3]))
    expected = activate(predictor.logits(img[None]) / t, "softmax")[0]
    assert np.allclose(probs[3], expected, atol=2e-6)
    # the tiny model learned the three looks: the same preprocessing at training and prediction
    truth = [CLASSES.index(c) for c in ["MEL"] * 8 + ["NV"] * 8 + ["BCC"] * 8]
    assert (probs.argmax(axis=1) == np.array(truth)).mean() >= 0.9


def test_cli_predict_derm_exit_codes_and_json(trained, tmp_path, capsys):
    data, run = trained
    folder = data / "ISIC_2019_Training_Input"
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    out = tmp_path / "p"
    code = main(["predict", "derm", str(folder), str(bad), "--model", str(run / "model.pt"), "--out", str(out),
                 "--batch-size", "7", "--json"])
    assert code == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["classes"] == CLASSES and len(doc["probabilities"]) == 24
    assert doc["failures"][0][0] == str(bad) and "empty.png" in captured.err
    assert len((out / "predictions.csv").read_text().splitlines()) == 25
    assert main(["predict", "derm", str(folder), "--model", str(run / "model.pt"), "--out", str(out)]) == 0
    assert "predicted 24 of 24 images" in capsys.readouterr().out


def test_cli_predict_derm_user_errors(trained, tmp_path, capsys):
    from cadx.models.checkpoint import save_checkpoint
    from cadx.models.factory import create_model

    data, run = trained
    (tmp_path / "none").mkdir()
    assert main(["predict", "derm", str(tmp_path / "none"), "--model", str(run / "model.pt"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "none: folder holds no image" in capsys.readouterr().err
    tile_model = save_checkpoint(tmp_path / "tile.pt", create_model("resnet10t", num_classes=2, input_size=32),
                                 tile={"mpp": 1.0, "size_px": 32})
    assert main(["predict", "derm", str(data / "ISIC_2019_Training_Input"), "--model", str(tile_model),
                 "--backend", "torch", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a dermoscopy model" in err and len(err.splitlines()) == 1


def test_cli_train_task_defaults_to_camelyon16(tmp_path, capsys):
    data = make_isic_folder(tmp_path / "isic", n_per_class=1, size_px=8)
    cfg = _yaml(tmp_path / "c.yaml", data_dir=data, out_dir=tmp_path / "o")
    assert main(["train", "--config", str(cfg)]) == 2  # a CAMELYON16 config: the ISIC folder is refused
    assert "CAMELYON16 layout" in capsys.readouterr().err
    assert main(["train", "derm", "--config", str(_yaml(tmp_path / "d.yaml", data_dir=data))]) == 2
    err = capsys.readouterr().err
    assert "d.yaml: out_dir: required key missing" in err


def test_folder_layout_with_class_weighted_loss(tmp_path):
    import torch

    from cadx.models.checkpoint import load_checkpoint
    from cadx.tasks.isic2019.train import train_derm

    from .derm_data import make_class_folders

    root = make_class_folders(tmp_path / "f", n_per_class=4, size_px=32, classes=("MEL", "NV", "BCC"))
    cfg = DermTrainConfig(data_dir=str(root), out_dir=str(tmp_path / "o"), classes="NV,MEL", model="resnet10t",
                          pretrained=False, image_size=16, batch_size=4, warmup_steps=2, finetune_steps=0,
                          eval_every=2, val_fraction=0.25, balance="loss_weights", num_workers=0, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, meta = load_checkpoint(train_derm(cfg, show_progress=False))
    finally:
        torch.set_num_threads(threads)
    assert meta["model"]["class_names"] == ["NV", "MEL"]
    assert meta["metrics"]["train_counts"] == {"NV": 3, "MEL": 3} and meta["metrics"]["step"] == 2


def test_unreadable_training_image_is_named_before_training(tmp_path):
    from cadx.errors import CadxError
    from cadx.tasks.isic2019.train import train_derm

    from .derm_data import make_class_folders

    root = make_class_folders(tmp_path / "f", n_per_class=3, size_px=16)
    (root / "NV" / "img_1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    cfg = DermTrainConfig(data_dir=str(root), out_dir=str(tmp_path / "o"), classes="all", model="resnet10t",
                          pretrained=False, image_size=16, num_workers=0, device="cpu")
    with pytest.raises(CadxError, match=r"NV/img_1.png: "):
        train_derm(cfg, show_progress=False)
    assert not (tmp_path / "o" / "last.pt").exists()
