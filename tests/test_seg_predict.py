"""tasks.camelyon16.seg_predict / seg_evaluate and their CLI: outputs and known-answer metrics."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from cadx.cli.main import main
from cadx.io.annotations import Annotation, read_asap_xml, write_asap_xml
from cadx.tasks.camelyon16.seg_evaluate import evaluate_seg, histogram_auc
from cadx.tasks.camelyon16.seg_predict import mask_annotations, predict_seg

SIZE = 2048
TILE = {"mpp": 0.5, "size_px": 128}


class GreenPredictor:
    """A fake segmenter: 0.9 on the purple 'tumour' of the test slides, 0.6 on the brown 'mimic', else 0."""

    config = SimpleNamespace(architecture="fake-green", to_dict=lambda: {"architecture": "fake-green"})

    def predict(self, x):
        dark = x[..., 1] < 90
        return np.where(dark & (x[..., 2] > 140), 0.9, np.where(dark, 0.6, 0.0)).astype(np.float32)[:, None]


def _square(x0, y0, x1, y1, group="_0"):
    return Annotation(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float), group=group)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Two 2048-px PNG slides at 0.5 um/px: a tumour slide (truth square 256..1536, of which the left
    half looks like tumour) and a normal slide with a 256-px tumour mimic at (1024, 1024); truth in
    lesion_annotations/ (no reference.csv)."""
    root = tmp_path_factory.mktemp("segcohort")
    (root / "images").mkdir()
    (root / "lesion_annotations").mkdir()
    for name, tumour in (("tumor_a", True), ("normal_b", False)):
        img = np.full((SIZE, SIZE, 3), 255, np.uint8)
        img[64:-64, 64:-64] = (220, 140, 190)                # tissue
        if tumour:
            img[256:1536, 256:896] = (120, 50, 160)          # looks like tumour: half the truth square
            write_asap_xml(root / "lesion_annotations" / f"{name}.xml", [_square(256, 256, 1536, 1536)])
        else:
            img[1024:1280, 1024:1280] = (200, 80, 100)       # a mimic: a false positive
        Image.fromarray(img).save(root / "images" / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def predicted(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("segpred")
    slides = sorted((cohort / "images").glob("*.png"))
    report = predict_seg(slides, GreenPredictor(), out, tile=TILE, overlap_px=32, out_downsample=4,
                         mpp_override=0.5, annotations=cohort / "lesion_annotations", model_id="abc",
                         show_progress=False)
    return out, report, slides


def test_predict_seg_writes_every_output_and_skips_a_finished_slide(predicted):
    out, report, slides = predicted
    assert not report.failures and set(report.masks) == {"tumor_a", "normal_b"}
    for name in ("tumor_a", "normal_b"):
        for suffix in ("_mask.tif", ".xml", ".geojson", ".png", "_seg.json"):
            assert (out / f"{name}{suffix}").is_file(), suffix
    png = np.asarray(Image.open(out / "tumor_a.png"))
    assert png.shape[1] > 2 * png.shape[0] - 20          # two panels side by side
    again = predict_seg(slides, GreenPredictor(), out, tile=TILE, overlap_px=32, out_downsample=4,
                        mpp_override=0.5, model_id="abc", show_progress=False)
    assert sorted(p.name for p in again.skipped) == sorted(p.name for p in slides) and not again.seconds


def test_polygons_are_the_predicted_region_in_level0_coordinates(predicted):
    out, _, _ = predicted
    anns = read_asap_xml(out / "tumor_a.xml")
    tumour = [a for a in anns if a.label]
    assert len(tumour) == 1 and not [a for a in anns if a.is_exclusion]
    x0, y0, x1, y1 = tumour[0].bbox_xy
    assert abs(x0 - 256) <= 8 and abs(y0 - 256) <= 8 and abs(x1 - 896) <= 8 and abs(y1 - 1536) <= 8
    geo = json.loads((out / "tumor_a.geojson").read_text())
    assert len(geo["features"]) == 1
    (mimic,) = read_asap_xml(out / "normal_b.xml")
    assert np.allclose(mimic.bbox_xy, (1024, 1024, 1280, 1280), atol=8)
    assert mask_annotations(out / "normal_b_mask.tif", threshold=0.7) == []


def test_evaluate_seg_known_answers(predicted, cohort, tmp_path):
    out, _, _ = predicted
    m = evaluate_seg(out, cohort, out_dir=tmp_path)
    # Level 5 (32 px): the truth is 40 x 40 px, the left half predicted (20 x 40); the mimic is 8 x 8 px.
    assert m["slides"] == 2 and m["tumor_slides"] == 1
    rows = {r["slide"]: r for r in m["per_slide"]}
    a, b = rows["tumor_a"], rows["normal_b"]
    assert (a["tp"], a["fn"], a["fp"]) == (800, 800, 0) and (b["tp"], b["fn"], b["fp"]) == (0, 0, 64)
    assert a["dice"] == pytest.approx(2 / 3) and a["iou"] == pytest.approx(0.5)
    assert a["sensitivity"] == pytest.approx(0.5) and a["specificity"] == 1.0 and a["pixel_auc"] == 0.75
    assert b["dice"] == 0.0 and b["sensitivity"] is None and b["pixel_auc"] is None
    assert m["dice"] == pytest.approx(1600 / 2464) and m["iou"] == pytest.approx(800 / 1664)
    negatives = 2 * 64 * 64 - 1600
    assert m["pixel_auc"] == pytest.approx(0.5 + 0.25 * (negatives - 64) / negatives)
    assert a["lesions"] == 1 and a["lesions_detected"] == 1 and b["false_positives"] == 1
    # FROC: the lesion at 0.9, one FP at 0.6 (the official rule never uses the lowest probability
    # as a threshold, so the curve has no FP): sensitivity 1 at every FP rate.
    assert m["froc"] == 1.0
    assert (tmp_path / "seg_metrics.json").is_file() and (tmp_path / "seg_per_slide.csv").is_file()


def test_histogram_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.3
    s = np.clip(rng.normal(0.5 + 0.2 * y, 0.2), 0, 1)
    q = np.rint(s * 255).astype(int)
    auc = histogram_auc(np.bincount(q[y], minlength=256), np.bincount(q[~y], minlength=256))
    assert auc == pytest.approx(roc_auc_score(y, q))
    assert histogram_auc(np.zeros(3), np.ones(3)) is None


def test_cli_evaluate_seg_and_predict_seg_errors(predicted, cohort, tmp_path, capsys):
    out, _, _ = predicted
    assert main(["evaluate", "seg", "--pred", str(out), "--truth", str(cohort),
                 "--out", str(tmp_path), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["dice"] == pytest.approx(1600 / 2464)
    assert main(["evaluate", "seg", "--pred", str(out), "--truth", str(cohort),
                 "--out", str(tmp_path)]) == 0
    assert "Dice 0.649" in capsys.readouterr().out
    assert main(["evaluate", "seg", "--pred", str(tmp_path / "nothing"), "--truth", str(cohort)]) == 2
    assert "no *_mask.tif prediction" in capsys.readouterr().err
    assert main(["predict", "seg", str(tmp_path / "missing_dir"), "--model", "x.pt", "--out", str(tmp_path)]) == 2


def test_a_bad_slide_is_listed_and_the_run_goes_on(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_text("not a slide")
    report = predict_seg([bad], GreenPredictor(), tmp_path / "out", tile=TILE, show_progress=False)
    assert [p for p, _ in report.failures] == [bad] and not report.masks
    assert json.loads((tmp_path / "out" / "predict.json").read_text())["failures"][0][0] == str(bad)
