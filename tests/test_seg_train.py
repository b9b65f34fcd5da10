"""A tiny segmentation training run on the generated cohort: CLI, Dice improves, checkpoint, resume, config errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

pytest.importorskip("segmentation_models_pytorch")

from cadx.errors import ConfigError  # noqa: E402
from cadx.tasks.camelyon16.seg import SegTrainConfig, train_seg  # noqa: E402

SMALL = dict(mpp=1.0, tile_size=64, batch_size=4, warmup_steps=2, steps=6, lr_head=3e-3, lr=3e-3, eval_every=4,
             val_tiles=32, num_workers=0, seed=1, patience=10)


def test_cli_trains_a_segmenter_that_learns(cohort, tmp_path, capsys):
    import torch

    from cadx.cli.main import main
    from cadx.inference.predictor import load_predictor
    from cadx.models.checkpoint import load_checkpoint

    cohort_dir, _ = cohort
    cfg = tmp_path / "seg.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(cohort_dir), "out_dir": str(tmp_path / "run"), **SMALL}))
    assert main(["train", "seg", "--config", str(cfg)]) == 0
    path = tmp_path / "run" / "model.pt"
    assert f"best checkpoint: {path}" in capsys.readouterr().out
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [(h["step"], h["phase"]) for h in history] == [(4, "train"), (8, "train")]
    dice = [h["val_dice"] for h in history]
    assert dice[1] > dice[0] and dice[1] > 0.6, dice  # seed 1: 0.695 -> 0.731 on the development machine
    model, meta = load_checkpoint(path)
    assert meta["model"]["kind"] == "segmenter" and meta["model"]["weights"].startswith("file:")
    assert meta["tile"]["mpp"] == 1.0 and meta["tile"]["size_px"] == 64 and "_2 holes" in meta["tile"]["label_rule"]
    assert meta["metrics"]["val_dice"] == max(dice) and meta["metrics"]["val_slides"]
    # The best weights, through the shared predictor path: per-pixel probabilities.
    predictor, _ = load_predictor(path, backend="torch", device="cpu")
    p = predictor.predict(np.zeros((2, 64, 64, 3), np.uint8))
    assert p.shape == (2, 1, 64, 64)
    # Resume: the same run with more steps continues from step 8.
    train_seg(SegTrainConfig(data_dir=str(cohort_dir), out_dir=str(tmp_path / "run"), **{**SMALL, "steps": 10}),
              show_progress=False)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 12
    assert [h["step"] for h in json.loads((tmp_path / "run" / "history.json").read_text())] == [4, 8, 12]


@pytest.mark.parametrize("override, message", [
    ({"model": "segnet-resnet18"}, "model: unknown segmentation architecture"),
    ({"model": "unet-no_such_net"}, "model: unknown encoder"),
    ({"tile_size": 100}, "tile_size: must be a multiple of 32"),
    ({"steps": -1}, "steps"),
    ({"learning_rate": 0.1}, "learning_rate: unknown key"),
    ({"pretrained": "/no/such/weights.pth"}, "no such weights file"),
])
def test_config_errors_are_one_line(cohort, tmp_path, override, message):
    cohort_dir, _ = cohort
    with pytest.raises(ConfigError, match=message) as info:
        SegTrainConfig(data_dir=str(cohort_dir), out_dir=str(tmp_path), **override)
    assert "\n" not in str(info.value)


def test_config_needs_the_camelyon_layout(tmp_path):
    with pytest.raises(ConfigError, match="data_dir: .* has no training/tumor"):
        SegTrainConfig(data_dir=str(tmp_path), out_dir=str(tmp_path / "out"))
