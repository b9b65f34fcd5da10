"""cadx train ct on a tiny RSNA folder: config validation, 2.5D input, checkpoint record."""

import csv

import numpy as np
import pytest

from cadx.cli.main import main
from cadx.errors import ConfigError
from cadx.models.checkpoint import load_checkpoint
from cadx.tasks.rsna_ich.train import CtTrainConfig, train_ct

from .ct_data import make_rsna_folder

TINY = dict(pretrained=False, image_size=32, batch_size=4, warmup_steps=2, finetune_steps=2, eval_every=2,
            num_workers=0, device="cpu")


@pytest.fixture(scope="module")
def rsna(tmp_path_factory):
    return make_rsna_folder(tmp_path_factory.mktemp("rsna"), patients=6, slices=3)


def test_train_records_ct_input_and_splits_by_patient(rsna, tmp_path):
    cfg = CtTrainConfig(data_dir=str(rsna), out_dir=str(tmp_path / "run"), context_slices=1, **TINY)
    path = train_ct(cfg, show_progress=False)
    model, meta = load_checkpoint(path)
    assert meta["ct_input"] == {"windows": [[40.0, 80.0], [80.0, 200.0], [600.0, 2800.0]], "context_slices": 1,
                                "image_size": 32, "crop": "head"}
    assert meta["model"]["in_chans"] == 9 and meta["model"]["activation"] == "sigmoid"
    assert tuple(meta["model"]["class_names"]) == ("epidural", "intraparenchymal", "intraventricular",
                                                   "subarachnoid", "subdural", "any")
    assert "val_weighted_log_loss" in meta["metrics"]
    rows = list(csv.DictReader((tmp_path / "run" / "split.csv").read_text().splitlines()))
    side = {}
    for r in rows:
        side.setdefault(r["patient"], set()).add(r["split"])
    assert all(len(s) == 1 for s in side.values()) and len(rows) == 18
    assert {"train", "val"} == set().union(*side.values())


def test_checkpoints_without_a_crop_saw_the_whole_image():
    from cadx.tasks.rsna_ich.predict import checkpoint_ct_input

    old = {"ct_input": {"windows": [[40.0, 80.0]], "context_slices": 0, "image_size": 32}}
    assert checkpoint_ct_input(old)["crop"] == "none"
    assert checkpoint_ct_input({"ct_input": {**old["ct_input"], "crop": "head"}})["crop"] == "head"


def test_head_crop_input_and_maps_back_onto_the_slice():
    from cadx.datasets.ct_slices import ct_input, input_box, map_to_slice

    hu = np.full((64, 64), -1000.0, np.float32)
    hu[16:48, 24:40] = 30.0   # a 32 x 16 head
    hu[30:34, 30:34] = 70.0   # a bleed in its middle
    full = ct_input([hu], windows=[(40, 80)], image_size=32)[..., 0]
    head = ct_input([hu], windows=[(40, 80)], image_size=32, crop="head")[..., 0]
    assert (head > 200).sum() > 2 * (full > 200).sum()  # the bleed covers more of the input
    box = input_box(hu, "head")
    marked = np.zeros((32, 32), np.float32)
    marked[head > 200] = 1.0
    back = map_to_slice(marked, box, hu.shape)
    assert back.shape == hu.shape
    assert back[31, 31] > 0.5 and back[10, 10] == 0 and back[:, :20].max() == 0
    with pytest.raises(ValueError, match="crop"):
        input_box(hu, "brain")


def test_config_errors(rsna, tmp_path):
    with pytest.raises(ConfigError, match="context_slices"):
        CtTrainConfig(data_dir=str(rsna), out_dir=str(tmp_path), context_slices=2)
    with pytest.raises(ConfigError, match="stage_2_train.csv"):
        CtTrainConfig(data_dir=str(tmp_path), out_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="crop"):
        CtTrainConfig(data_dir=str(rsna), out_dir=str(tmp_path), crop="skull")


def test_cli_train_ct(rsna, tmp_path, capsys):
    cfg = tmp_path / "ct.yaml"
    cfg.write_text("\n".join([f"data_dir: {rsna}", f"out_dir: {tmp_path / 'out'}"]
                             + [f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in TINY.items()]))
    assert main(["train", "ct", "--config", str(cfg)]) == 0
    assert (tmp_path / "out" / "model.pt").is_file()
    assert "best checkpoint" in capsys.readouterr().out


def test_weighted_bce_matches_metric():
    import torch

    from cadx.metrics.multilabel import weighted_log_loss
    from cadx.tasks.rsna_ich.train import weighted_bce

    z = torch.tensor([[2.0, -1.0, 0.5, 0.0, -3.0, 1.0], [-2.0, 0.3, 0.0, 1.0, 0.0, -1.0]])
    y = torch.tensor([[1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, 1]], dtype=torch.float32)
    p = torch.sigmoid(z).numpy()
    assert float(weighted_bce()(z, y)) == pytest.approx(weighted_log_loss(y.numpy(), p), rel=1e-5)
    assert np.isfinite(float(weighted_bce()(z, y)))
