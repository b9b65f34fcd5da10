"""A tiny real training run: checkpoints, metrics, resuming."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from cadx.models.checkpoint import load_checkpoint  # noqa: E402
from cadx.tasks.camelyon16.train import TrainConfig, split_slides, train_tile_classifier  # noqa: E402


def _cfg(cohort_dir, out, **kw) -> TrainConfig:
    base = dict(data_dir=str(cohort_dir), out_dir=str(out), tile_size=64, batch_size=8, warmup_steps=2,
                finetune_steps=2, eval_every=2, val_tiles=32, num_workers=0, seed=3, patience=10)
    base.update(kw)
    return TrainConfig(**base)


def test_train_resume_and_self_describing_checkpoint(cohort, tmp_path):
    import torch

    from cadx.models.factory import create_model

    cohort_dir, _ = cohort
    path = train_tile_classifier(_cfg(cohort_dir, tmp_path), show_progress=False)
    model, meta = load_checkpoint(path)
    assert meta["tile"]["mpp"] == 0.5 and meta["tile"]["size_px"] == 64
    assert meta["train_config"]["warmup_steps"] == 2 and meta["model"]["weights"].startswith("file:")
    assert meta["train_config"]["trainable_blocks"] == 1
    assert 0.0 <= meta["metrics"]["val_auc"] <= 1.0 and meta["metrics"]["val_slides"]
    assert meta["metrics"]["step"] in (2, 4) and meta["metrics"]["train_tiles_seen"] == 4 * 8
    assert set(meta["metrics"]["train_slides"]).isdisjoint(meta["metrics"]["val_slides"])  # split by slide
    history = json.loads((tmp_path / "history.json").read_text())
    assert [(h["step"], h["phase"]) for h in history] == [(2, "warmup"), (4, "finetune")]
    # What was trained: trainable_blocks=1 on Lite0 is blocks.6 + conv_head/bn2 + classifier; the
    # stages before stay the ImageNet ones, and BatchNorm statistics stay the pretrained ones.
    ref = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=2).state_dict()
    got = model.state_dict()
    frozen = [k for k in got if k.startswith(("conv_stem", "bn1", "blocks.0.", "blocks.5."))]
    assert frozen and all(torch.equal(got[k], ref[k]) for k in frozen)
    assert not torch.equal(got["blocks.6.0.conv_pw.weight"], ref["blocks.6.0.conv_pw.weight"])
    assert not torch.equal(got["conv_head.weight"], ref["conv_head.weight"])
    assert torch.equal(got["bn2.running_mean"], ref["bn2.running_mean"])
    assert torch.equal(got["blocks.6.0.bn1.running_var"], ref["blocks.6.0.bn1.running_var"])
    # Resume: the same run with more fine-tuning steps continues from step 4.
    train_tile_classifier(_cfg(cohort_dir, tmp_path, finetune_steps=4), show_progress=False)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 6
    assert [h["step"] for h in json.loads((tmp_path / "history.json").read_text())] == [2, 4, 6]


def test_split_is_by_slide_and_stratified(tmp_path):
    from pathlib import Path

    import numpy as np

    from cadx.datasets.tiles import SlideTiles, TileIndex
    from cadx.io.resolution import ReadPlan

    plan = ReadPlan(0, 1.0, 0.5, 0.5, 32, 32)
    slides = [SlideTiles(f"s{i}", Path("x"), np.zeros((1, 2)), np.zeros(1), plan, slide_label=i % 2) for i in range(8)]
    train, val = split_slides(TileIndex(slides), 0.25, seed=0)
    assert not set(train) & set(val) and len(val) == 2
    labels = {s.name: s.slide_label for s in slides}
    assert sorted(labels[v] for v in val) == [0, 1]


def test_multiscale_training_and_prediction(cohort, tmp_path):
    from cadx.inference.predictor import load_predictor
    from cadx.tasks.camelyon16.predict import predict_slides

    cohort_dir, slides = cohort
    path = train_tile_classifier(_cfg(cohort_dir, tmp_path, context_mpp=1.0, finetune_steps=0), show_progress=False)
    model, meta = load_checkpoint(path)
    assert model.cadx_config.in_chans == 6 and meta["tile"]["context_mpp"] == 1.0
    predictor, meta = load_predictor(path, backend="onnx")
    test = [s.path for s in slides if s.split == "testing"][:1]
    report = predict_slides(test, predictor, tmp_path / "pred", tile=meta["tile"], show_progress=False)
    assert not report.failures and len(report.scores) == 1
