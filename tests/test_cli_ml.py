"""Command-line errors and outputs of train / predict / evaluate."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cadx.cli.main import main


def test_predict_with_a_bad_checkpoint_is_one_clean_line(tumor_slide, tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"garbage")
    assert main(["predict", "slides", str(tumor_slide.path), "--model", str(bad), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cadx: error:") and "model.pt" in err and len(err.splitlines()) == 1


def test_train_with_bad_config(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data_dir: x\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "out_dir" in capsys.readouterr().err


def test_evaluate_without_predictions(tmp_path, capsys):
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth/reference.csv").write_text("test_001,Normal,,\n")
    (tmp_path / "pred").mkdir()
    assert main(["evaluate", "camelyon", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth")]) == 2
    assert "slide_scores.csv" in capsys.readouterr().err


def test_predict_and_evaluate_end_to_end(cohort, tmp_path, capsys):
    """A tiny random model through the whole CLI: every output exists and the metrics are those of its outputs."""
    import torch

    from cadx.io.tables import read_detections_csv
    from cadx.metrics.froc import evaluation_mask, froc_curve, froc_score, itc_labels, score_detections
    from cadx.models.checkpoint import save_checkpoint
    from cadx.models.factory import create_model
    from cadx.preprocessing.masks import rasterize_polygons

    out_dir, slides = cohort
    # ImageNet features and a seeded random head: scores that differ between tiles and slides.
    model = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=2, input_size=64)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape,
                                                  generator=torch.Generator().manual_seed(0)) * 0.05)
    ckpt = save_checkpoint(tmp_path / "m.pt", model, tile={"mpp": 1.0, "size_px": 64})
    pred = tmp_path / "pred"
    assert main(["predict", "slides", str(out_dir / "testing/images"), "--model", str(ckpt), "--out", str(pred)]) == 0
    for name in ("test_001", "test_002"):
        for ext in (".h5", ".png", ".csv", ".xml", ".geojson"):
            assert (pred / f"{name}{ext}").exists(), name + ext
    rows = list(csv.DictReader((pred / "slide_scores.csv").open()))
    assert [r["slide"] for r in rows] == ["test_001", "test_002"] and "area_mm2_p50" in rows[0]
    assert main(["evaluate", "camelyon", "--pred", str(pred), "--truth", str(out_dir / "testing")]) == 0
    m = json.loads((pred / "metrics.json").read_text())
    assert (m["slides"], m["tumor_slides"], m["normal_slides"]) == (2, 1, 1)
    # One tumour and one normal slide: the AUC is 1, 0.5 or 0 as the tumour slide scores above, level or below.
    score = {r["slide"]: float(r["score"]) for r in rows}
    tumour = next(s for s in slides if s.split == "testing" and s.layout.is_tumor)
    normal = next(s for s in slides if s.split == "testing" and not s.layout.is_tumor)
    t, n = score[tumour.name], score[normal.name]
    assert m["slide_auc"] == (1.0 if t > n else 0.5 if t == n else 0.0)
    # The FROC of the detections written, scored against the generator's own lesions (not the XML).
    truth = rasterize_polygons(tumour.layout.tumor_polygons(), (4096 // 32, 4096 // 32), downsample=32) > 0
    em = evaluation_mask(truth)
    hits = [score_detections(tumour.name, read_detections_csv(pred / f"{tumour.name}.csv"), em, itc_labels(em)),
            score_detections(normal.name, read_detections_csv(pred / f"{normal.name}.csv"), None)]
    assert m["lesions"] == hits[0].n_lesions == 1  # test_001's four lesions lie within 75 um: one merged lesion
    assert m["froc"] == pytest.approx(froc_score(*froc_curve(hits))[0])
    per_slide = list(csv.DictReader((pred / "per_slide.csv").open()))
    assert [(r["slide"], int(r["detections"])) for r in per_slide] == [
        (s, len(read_detections_csv(pred / f"{s}.csv"))) for s in ("test_001", "test_002")]
    assert (pred / "roc.png").exists() and (pred / "froc.png").exists()
    assert "FROC" in capsys.readouterr().out


def test_evaluation_of_perfect_predictions(cohort, tmp_path):
    """Detections at each lesion centre and scores equal to the truth give AUC 1 and FROC 1.

    Probabilities must be distinct and a low-probability FP present: the official script never
    uses the lowest distinct probability as a threshold (see test_evaluation).
    """
    from cadx.io.annotations import Detection
    from cadx.io.h5 import ScoreGrid, write_score_grid_h5
    from cadx.io.tables import write_detections_csv
    from cadx.tasks.camelyon16.evaluate import evaluate_camelyon

    out_dir, slides = cohort
    pred = tmp_path / "pred"
    rows = []
    for s in (s for s in slides if s.split == "testing"):
        w, h = s.layout.size_wh
        hm = ScoreGrid(np.zeros((1, h // 256, w // 256), np.float32), ("tumor_probability",), 256, 256, (w, h), 0.243)
        write_score_grid_h5(pred / f"{s.name}.h5", hm)
        dets = [Detection(0.01, 5.0, 5.0)]  # a low-probability FP on the glass corner
        for i, les in enumerate(s.layout.lesions):
            cx, cy = les.outline_xy.mean(axis=0)  # inside these star-shaped outlines
            dets.append(Detection(0.9 - 0.01 * i, float(cx), float(cy)))
        write_detections_csv(pred / f"{s.name}.csv", dets)
        rows.append(f"{s.name},{1.0 if s.layout.is_tumor else 0.0}")
    (pred / "slide_scores.csv").write_text("slide,score\n" + "\n".join(rows) + "\n")
    m = evaluate_camelyon(pred, out_dir / "testing")
    assert m["slide_auc"] == 1.0
    assert m["lesions"] == 1  # test_001's four lesions lie within 75 um of each other: one lesion
    assert m["froc"] == pytest.approx(1.0)
