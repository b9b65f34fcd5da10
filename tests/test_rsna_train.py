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
                                "image_size": 32}
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


def test_config_errors(rsna, tmp_path):
    with pytest.raises(ConfigError, match="context_slices"):
        CtTrainConfig(data_dir=str(rsna), out_dir=str(tmp_path), context_slices=2)
    with pytest.raises(ConfigError, match="stage_2_train.csv"):
        CtTrainConfig(data_dir=str(tmp_path), out_dir=str(tmp_path))


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
