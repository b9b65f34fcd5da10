"""The MIL task on hand-made features files: config checks, labels, train_mil, predict_mil outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cadx.errors import CadxError, CheckpointError, ConfigError, InputFileError
from cadx.io.h5 import read_score_grid_h5, write_features_h5

TILE0 = 256  # level-0 px of a 128-px tile at 0.486 um/px on a 0.243 um/px slide


def _features(folder, name, n, dim=8, *, planted=None, seed=0, wh=(4096, 4096)):
    """A features file of n tiles on the slide's tile grid; ``planted`` tiles get a large first feature."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(0, 1, (n, dim)).astype(np.float32)
    if planted is not None:
        feats[planted, 0] += 6.0
    idx = np.arange(n)
    cols = wh[0] // TILE0
    coords = np.stack([(idx % cols) * TILE0, (idx // cols) * TILE0], 1)
    attrs = {"slide": name, "slide_wh": list(wh), "level0_mpp": 0.243, "mpp": 0.486, "tile_size_px": 128,
             "tile_size_level0_px": TILE0, "encoder": "toy", "weights": "none", "feature_dim": dim}
    return write_features_h5(folder / "h5_files" / f"{name}.h5", feats, coords, attrs)


@pytest.fixture()
def bags(tmp_path):
    return make_bags(tmp_path)


def make_bags(tmp_path):
    """8 bags (4 tumour with 3 planted tiles, 4 normal) and their labels CSV."""
    feats = tmp_path / "features"
    rows = ["slide,label"]
    for i in range(8):
        tumour = i < 4
        name = f"{'tumor' if tumour else 'normal'}_{i:03d}"
        _features(feats, name, 24, planted=[3, 4, 5] if tumour else None, seed=i)
        rows.append(f"{name},{'tumor' if tumour else 'normal'}")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return feats, labels


def test_config_errors(bags, tmp_path):
    from cadx.tasks.camelyon16.mil import MilTrainConfig

    feats, labels = bags
    cfg = MilTrainConfig(features_dir=str(feats), labels=str(labels), out_dir=str(tmp_path / "o"), lr="5e-4")
    assert cfg.lr == 5e-4 and cfg.fit_settings().instance_k == 8 and cfg.fit_settings(epochs=3).epochs == 3
    with pytest.raises(ConfigError, match="model: Input should be 'abmil' or 'maxmil'"):
        MilTrainConfig(features_dir=str(feats), labels=str(labels), out_dir="o", model="clam")
    with pytest.raises(ConfigError, match="folds: Input should be greater than or equal to 2"):
        MilTrainConfig(features_dir=str(feats), labels=str(labels), out_dir="o", folds=1)
    with pytest.raises(ConfigError, match="features_dir: .*no such features folder"):
        MilTrainConfig(features_dir=str(tmp_path / "nope"), labels=str(labels), out_dir="o")
    with pytest.raises(ConfigError, match="labels: no such labels file or folder"):
        MilTrainConfig(features_dir=str(feats), labels=str(tmp_path / "nope.csv"), out_dir="o")
    (tmp_path / "c.yaml").write_text(f"features_dir: {feats}\nlabels: {labels}\nout_dir: o\nepochz: 3\n")
    with pytest.raises(ConfigError, match=r"c.yaml: epochz: unknown key"):
        MilTrainConfig.from_yaml(tmp_path / "c.yaml")


def test_labels(tmp_path):
    from cadx.tasks.camelyon16.mil import read_slide_labels

    p = tmp_path / "labels.csv"
    p.write_text("label,slide\n1,A\nNormal,b\n")
    assert read_slide_labels(p) == {"a": 1, "b": 0}
    p.write_text("slide,label\na,maybe\n")
    with pytest.raises(InputFileError, match="row 2, column label: 'maybe'"):
        read_slide_labels(p)
    p.write_text("slide,label\na,1\nA,0\n")
    with pytest.raises(InputFileError, match="row 3, column slide: 'a' twice"):
        read_slide_labels(p)
    p.write_text("name,label\n")
    with pytest.raises(InputFileError, match="expected columns slide and label"):
        read_slide_labels(p)


@pytest.fixture()
def tiny_slide_root(tmp_path):
    """A CAMELYON-layout folder with one 1024-px tumour slide (tumor_001)."""
    from cadx.synth.cohort import generate_cohort

    generate_cohort(tmp_path / "slides", n_tumor=1, n_normal=0, size_px=1024, seed=3, show_progress=False)
    return tmp_path / "slides"


def test_train_then_predict(bags, tmp_path, tiny_slide_root):
    from cadx.tasks.camelyon16.mil import MilTrainConfig, train_mil
    from cadx.tasks.camelyon16.mil_predict import DETECTION_CHANNEL, MIL_CHANNELS, predict_mil

    feats, labels = bags
    out = tmp_path / "train"
    ckpt = train_mil(MilTrainConfig(features_dir=str(feats), labels=str(labels), out_dir=str(out), folds=2,
                                    epochs=3, patience=None, seed=1), show_progress=False)
    cv = json.loads((out / "cv.json").read_text())
    assert len(cv["per_fold"]) == 2 and set(cv["oof"]) == {p.stem for p in (feats / "h5_files").glob("*.h5")}
    best = [f["best_epoch"] for f in cv["per_fold"]]
    assert cv["final_epochs"] == max(1, round(float(np.median(best))))  # the folds' median best epoch
    assert (out / "cv" / "fold_0" / "model.pt").is_file() and ckpt == out / "model.pt"
    assert len(json.loads((out / "history.json").read_text())) == cv["final_epochs"]

    # predict two slides, one of them with an image (for the overlay and gallery)
    root = tiny_slide_root
    _features(feats, "tumor_001", 12, seed=9, wh=(1024, 1024))
    pred = tmp_path / "pred"
    report = predict_mil(ckpt, feats, pred, slides_dir=root, slides=["tumor_001", "normal_004"], top_k=4)
    assert set(report.scores) == {"tumor_001", "normal_004"} and not report.failures
    assert set(report.galleries) == set(report.overlays) == {"tumor_001"}  # normal_004 has no image
    grid = read_score_grid_h5(pred / "tumor_001.h5")
    assert grid.channel_names == MIL_CHANNELS and grid.shape_hw == (4, 4)
    att = grid.channel("attention")
    assert (~np.isnan(att)).sum() == 12 and np.nanmax(att) == 1.0 and np.nanmin(att) == 0.0
    p = report.scores["tumor_001"]
    assert np.allclose(grid.channel(DETECTION_CHANNEL), att * p, equal_nan=True, atol=1e-6)
    assert grid.attrs["slide_probability"] == pytest.approx(p) and grid.attrs["features_encoder"] == "toy"
    for ext in (".csv", ".xml", ".geojson", ".png"):
        assert (pred / f"tumor_001{ext}").is_file(), ext
    assert not (pred / "normal_004.png").exists() and (pred / "normal_004.csv").is_file()

    # the gallery's first tile is the most attended tile, read from the slide
    from PIL import Image

    from cadx.io.images import read_rgb
    from cadx.io.resolution import plan_read, read_tile
    from cadx.io.slide import open_slide

    gallery = read_rgb(pred / "tumor_001_top4.png")
    assert gallery.shape == (128, 4 * 128 + 3 * 4, 3)
    import h5py

    with h5py.File(pred / "tumor_001.h5") as f:
        raw, coords = f["tiles/attention"][()], f["tiles/coords"][()]
    x, y = coords[int(np.argmax(raw))]
    with open_slide(root / "training" / "tumor" / "tumor_001.tif") as slide:
        tile = read_tile(slide, (int(x), int(y)), plan_read(slide, 0.486, 128))
    expected = np.asarray(Image.fromarray(tile).resize((128, 128), Image.Resampling.BILINEAR))
    assert np.array_equal(gallery[:, :128], expected)

    # slide_scores.csv keeps the rows of earlier runs; a features file of another length fails alone
    _features(feats, "normal_009", 10, dim=5)
    report = predict_mil(ckpt, feats, pred, slides=["normal_009", "normal_005"])
    assert list(report.scores) == ["normal_005"] and "5-d features" in report.failures[0][1]
    rows = (pred / "slide_scores.csv").read_text().splitlines()
    assert rows[0] == "slide,score,model" and [r.split(",")[0] for r in rows[1:]] == [
        "normal_004", "normal_005", "tumor_001"]
    with pytest.raises(CadxError, match="no features for nope"):
        predict_mil(ckpt, feats, pred, slides=["nope"])


def test_predict_refuses_other_models(tmp_path):
    from cadx.models.checkpoint import save_checkpoint
    from cadx.models.factory import create_model
    from cadx.tasks.camelyon16.mil_predict import predict_mil

    ckpt = save_checkpoint(tmp_path / "seq.pt", create_model("gru-8", kind="sequence", in_chans=4, num_classes=2))
    with pytest.raises(CheckpointError, match="not a MIL model"):
        predict_mil(ckpt, tmp_path, tmp_path / "out")
