"""A tiny real training run: checkpoints, metrics, resuming."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cadx.metrics.classification import roc_auc
from cadx.models.checkpoint import load_checkpoint
from cadx.tasks.camelyon16.train import TrainConfig, split_slides, train_tile_classifier


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
    # Split by slide, stratified: one of the two tumour slides held out (seed 3), the lone normal slide kept.
    assert meta["metrics"]["val_slides"] == ["tumor_002"]
    assert meta["metrics"]["train_slides"] == ["normal_001", "tumor_001"]
    assert meta["metrics"]["train_tiles_seen"] == 4 * 8
    history = json.loads((tmp_path / "history.json").read_text())
    assert [(h["step"], h["phase"]) for h in history] == [(2, "warmup"), (4, "finetune")]
    # The checkpoint is the best evaluation of the history (the blocks.6 checks below need it to be step 4).
    best = max(history, key=lambda h: h["val_auc"])
    assert meta["metrics"]["step"] == best["step"] == 4 and meta["metrics"]["val_auc"] == best["val_auc"]
    # ... and its weights score that AUC on the validation tiles: 16 tumour and 16 normal tiles of tumor_002.
    y, p = _validation_scores(model, tmp_path, meta)
    assert len(y) == meta["metrics"]["val_tiles"] == 32 and int(y.sum()) == 16
    assert roc_auc(y, p) == pytest.approx(meta["metrics"]["val_auc"])
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


def _validation_scores(model, out, meta) -> tuple[np.ndarray, np.ndarray]:
    """Labels and tumour probabilities of the validation tiles the run evaluated on, from ``model``."""
    import torch

    from cadx.datasets.tiles import TileDataset, build_tile_index
    from cadx.tasks.camelyon16.train import _val_positions

    val = build_tile_index(sorted((out / "coords").glob("*.h5"))).subset(meta["metrics"]["val_slides"])
    ds = TileDataset(val, mean=model.cadx_config.mean, std=model.cadx_config.std)
    items = [ds[tuple(p)] for p in _val_positions(val, meta["train_config"]["val_tiles"], meta["train_config"]["seed"])]
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(np.stack([x for x, _ in items])))
    return np.array([label for _, label in items]), torch.softmax(logits, 1)[:, 1].numpy()


def test_split_is_by_slide_and_stratified(tmp_path):
    from pathlib import Path

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
    assert report.failures == [] and list(report.scores) == ["test_001"]
    # The 6-channel ONNX model wrote a grid with its context and a slide score that is the grid's maximum.
    from cadx.io.h5 import read_score_grid_h5

    grid = read_score_grid_h5(tmp_path / "pred" / "test_001.h5")
    assert grid.attrs["context_mpp"] == 1.0 and grid.channel_names == ("tumor_probability",)
    assert report.scores["test_001"] == pytest.approx(float(np.nanmax(grid.channel())))
