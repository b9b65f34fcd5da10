"""``evaluate_mil``: known answers on hand-made score grids and an ASAP lesion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cadx.errors import CadxError
from cadx.io.annotations import Annotation, write_asap_xml
from cadx.io.h5 import ScoreGrid, write_score_grid_h5
from cadx.tasks.camelyon16.layout import slide_truth
from cadx.tasks.camelyon16.mil_evaluate import evaluate_mil
from cadx.tasks.camelyon16.mil_predict import MIL_CHANNELS

TILE = 256  # level-0 px; a 4096-px slide is a 16 x 16 grid
TUMOUR = slice(4, 9)  # cells 4..8: tiles inside the lesion [1024, 2304)


def _grid(attention, instance, detection):
    values = np.stack([attention, instance, detection]).astype(np.float32)
    return ScoreGrid(values, MIL_CHANNELS, stride_level0_px=TILE, tile_size_level0_px=TILE,
                     slide_size_wh=(4096, 4096), mpp=0.243)


@pytest.fixture()
def folders(tmp_path):
    return make_mil_predictions(tmp_path)


def make_mil_predictions(tmp_path):
    """Hand-made MIL predictions of three test slides and their truth (one 1280-px square lesion)."""
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    (truth / "lesion_annotations").mkdir(parents=True)
    pred.mkdir()
    (truth / "reference.csv").write_text("Test_001,Tumor,Macro\nTest_002,Normal\nTest_003,Normal\n")
    square = np.array([[1024, 1024], [2304, 1024], [2304, 2304], [1024, 2304]], float)
    write_asap_xml(truth / "lesion_annotations" / "test_001.xml", [Annotation(square, group="_0")])

    # test_001: 25 tumour tiles at attention 0.9; of the 231 normal tiles, 25 outrank them (0.95)
    att = np.full((16, 16), 0.1)
    att[TUMOUR, TUMOUR] = 0.9
    att[12:, 11:] = 0.95  # 4 x 5 = 20 cells ...
    att[0, :5] = 0.95     # ... + 5 = 25 normal tiles above the tumour
    inst = np.full((16, 16), 0.3)
    inst[TUMOUR, TUMOUR] = 0.7
    det = np.zeros((16, 16))
    det[6, 6] = 0.8  # one peak in the lesion's middle
    write_score_grid_h5(pred / "test_001.h5", _grid(att, inst, det))
    # test_002: a normal slide, everything low; test_003: a normal slide the model gets wrong
    write_score_grid_h5(pred / "test_002.h5", _grid(np.full((16, 16), 0.5), np.full((16, 16), 0.2),
                                                    np.zeros((16, 16))))
    det3 = np.zeros((16, 16))
    det3[2, 2] = 0.5  # a false positive below the true lesion's peak
    write_score_grid_h5(pred / "test_003.h5", _grid(np.full((16, 16), 0.5), np.full((16, 16), 0.8), det3))
    (pred / "slide_scores.csv").write_text("slide,score\ntest_001,0.9\ntest_002,0.2\ntest_003,0.95\n")
    return pred, truth


def test_known_answers(folders, tmp_path):
    pred, truth = folders
    m = evaluate_mil(pred, truth, out_dir=tmp_path / "eval")
    assert (m["slides"], m["tumor_slides"], m["normal_slides"]) == (3, 1, 2)
    assert m["slide_auc"] == 0.5  # the tumour slide outscores one normal slide of two
    assert m["attention_tile_auc"] == pytest.approx(206 / 231)  # 25 tumour tiles above 206 of 231 normal
    assert m["attention_tile_auc_slide_mean"] == pytest.approx(206 / 231)
    assert m["instance_tile_auc"] == pytest.approx((231 + 256) / (231 + 256 + 256))  # test_003's tiles outrank
    assert m["tiles"] == 3 * 256 and m["lesions"] == 1
    assert m["froc"] == 1.0  # the lesion's peak (0.8) outranks the only false positive (0.5)
    rows = {r["slide"]: r for r in m["per_slide"]}
    assert rows["test_001"]["tumor_tiles"] == 25 and rows["test_001"]["top_tile_tumor"] == "no"
    assert rows["test_001"]["lesions_detected_at_threshold"] == 1 and np.isnan(rows["test_002"]["attention_auc"])
    for name in ("metrics.json", "per_slide.csv", "roc.png", "froc.png"):
        assert (tmp_path / "eval" / name).is_file(), name
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["slide_auc"] == 0.5


def test_a_subset_of_slides(folders, tmp_path):
    pred, truth = folders
    m = evaluate_mil(pred, truth, out_dir=tmp_path / "fold", slides=["TEST_001", "test_002"])
    assert m["slides"] == 2 and m["slide_auc"] == 1.0 and m["instance_tile_auc"] == 1.0
    with pytest.raises(CadxError, match="no score for test_007"):
        evaluate_mil(pred, truth, slides=["test_001", "test_007"])


def test_truth_from_camelyon_root(tmp_path):
    for sub, name in (("training/tumor", "tumor_001"), ("training/normal", "normal_001")):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / f"{name}.tif").write_bytes(b"")
    (tmp_path / "testing").mkdir()
    (tmp_path / "testing" / "reference.csv").write_text("test_001,Normal\n")
    truth = slide_truth(tmp_path)
    assert truth == {"tumor_001": (1, tmp_path / "training"), "normal_001": (0, tmp_path / "training"),
                     "test_001": (0, tmp_path / "testing")}


def test_bad_inputs(folders, tmp_path):
    pred, truth = folders
    (pred / "slide_scores.csv").write_text("slide,score\ntest_001,0.9\ntest_009,0.2\n")
    with pytest.raises(CadxError, match="no label for 1 predicted slides: test_009"):
        evaluate_mil(pred, truth)
    (pred / "slide_scores.csv").write_text("slide,score\ntest_002,0.9\ntest_003,0.2\n")
    with pytest.raises(CadxError, match="needs tumour and normal"):
        evaluate_mil(pred, truth)
    (pred / "slide_scores.csv").unlink()
    with pytest.raises(CadxError, match="run `cadx predict mil` first"):
        evaluate_mil(pred, truth)
    with pytest.raises(CadxError, match="no slides"):
        evaluate_mil(pred, tmp_path / "pred")
