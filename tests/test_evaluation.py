"""Known answers for the CAMELYON16 metrics (the official script's rules) and the slide AUC."""

from __future__ import annotations

import numpy as np
import pytest

from cadx.io.annotations import Detection
from cadx.metrics.classification import auc_with_ci, roc_auc, sens_spec
from cadx.metrics.froc import SlideHits, evaluation_mask, froc_curve, froc_score, itc_labels, score_detections

DS = 32  # level 5


def _disk(mask, r0, c0, radius):
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    mask |= (yy - r0) ** 2 + (xx - c0) ** 2 <= radius**2


def test_lesions_closer_than_75um_merge():
    # 75 um at level 5 with 0.243 um/px is 75 / (0.243 * 32) = 9.6 px; the distance threshold
    # is half of that on each side (4.82 px), so blobs 8 px apart merge and 12 px apart do not.
    m = np.zeros((60, 120), bool)
    m[20:40, 10:30] = True
    m[20:40, 38:58] = True  # 8 px gap: merged
    m[20:40, 70:90] = True  # 12 px gap: separate
    lab = evaluation_mask(m)
    assert lab.max() == 2
    assert lab[30, 15] == lab[30, 45] != lab[30, 80]


def test_itc_by_major_axis():
    m = np.zeros((100, 100), bool)
    _disk(m, 20, 20, 5)  # ~10 px + merge dilation ~ 20 px < 35.36: ITC
    _disk(m, 60, 60, 25)  # big: scorable
    lab = evaluation_mask(m)
    itc = itc_labels(lab)
    assert itc == {int(lab[20, 20])} and int(lab[60, 60]) not in itc


def _two_lesion_slide():
    m = np.zeros((100, 100), bool)
    _disk(m, 20, 20, 4)  # ITC
    _disk(m, 60, 60, 25)
    lab = evaluation_mask(m)
    return lab, itc_labels(lab)


def test_hits_best_per_lesion_itc_ignored_outside_is_fp():
    lab, itc = _two_lesion_slide()
    big = int(lab[60, 60])
    dets = [Detection(0.9, 60 * DS, 60 * DS), Detection(0.6, 55 * DS, 62 * DS),  # two hits in one lesion
            Detection(0.8, 20 * DS, 20 * DS),  # on the ITC: neither TP nor FP
            Detection(0.7, 5 * DS, 95 * DS)]  # outside every lesion: FP
    h = score_detections("s", dets, lab, itc)
    assert h.fp_probs == [0.7]
    assert h.n_lesions == 1
    assert h.tp_probs[big - 1] == pytest.approx(0.9)
    assert sorted(h.tp_probs.tolist()) == pytest.approx([0.0, 0.9])  # the ITC keeps a 0 entry


def test_every_detection_on_a_normal_slide_is_fp():
    h = score_detections("n", [Detection(0.3, 1, 1), Detection(0.2, 5, 5)], None)
    assert h.fp_probs == [0.3, 0.2] and h.n_lesions == 0 and h.tp_probs.size == 0


def test_froc_hand_computed():
    # Slide 1: two lesions, hit at 0.9 and missed (0); FP at 0.5.  Slide 2 (normal): FPs 0.8, 0.3.
    s1 = SlideHits("a", [0.5], np.array([0.9, 0.0], np.float32), 2)
    s2 = SlideHits("b", [0.8, 0.3], np.zeros(0, np.float32), 0)
    fps, sens = froc_curve([s1, s2])
    # thresholds: distinct probs {0, .3, .5, .8, .9} minus the lowest -> .3 .5 .8 .9, then (0, 0)
    np.testing.assert_allclose(fps, [3 / 2, 2 / 2, 1 / 2, 0 / 2, 0])
    np.testing.assert_allclose(sens, [0.5, 0.5, 0.5, 0.5, 0])
    score, at = froc_score(fps, sens)
    np.testing.assert_allclose(at, [0.5] * 6)
    assert score == pytest.approx(0.5)


def test_froc_perfect_and_useless():
    perfect = [SlideHits("a", [], np.array([0.9, 0.8], np.float32), 2), SlideHits("b", [0.1], np.zeros(0), 0)]
    assert froc_score(*froc_curve(perfect))[0] == pytest.approx(1.0)
    useless = [SlideHits("a", [0.9, 0.8], np.array([0.1], np.float32), 1), SlideHits("b", [0.95], np.zeros(0), 0)]
    assert froc_score(*froc_curve(useless))[0] == pytest.approx(0.0)


def test_auc_ci_and_operating_point():
    r = auc_with_ci([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], n_boot=200)
    assert r.auc == 1.0 and r.ci_low == 1.0 and (r.n_pos, r.n_neg) == (2, 2)
    r = auc_with_ci([0, 1, 0, 1], [0.1, 0.2, 0.8, 0.9], n_boot=200)
    assert r.auc == pytest.approx(0.75)
    # Resamples of only the 0.8 negative and the 0.2 positive (14/256, over 2.5%) have AUC 0, and
    # more than 2.5% have AUC 1 (e.g. only the 0.1 negative and the 0.9 positive): the interval is [0, 1].
    assert (r.ci_low, r.ci_high) == (0.0, 1.0)
    assert sens_spec([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.4], 0.5) == (0.5, 0.5)
    with pytest.raises(ValueError, match="both"):
        auc_with_ci([1, 1], [0.2, 0.3])


def test_official_quirk_lowest_probability_is_never_a_threshold():
    """As in Evaluation_FROC.py: a submission whose detections all share one probability scores 0."""
    same = [SlideHits("a", [], np.array([0.9, 0.9], np.float32), 2)]
    assert froc_score(*froc_curve(same))[0] == 0.0
    with_low_fp = [SlideHits("a", [0.01], np.array([0.9, 0.9], np.float32), 2)]
    assert froc_score(*froc_curve(with_low_fp))[0] == pytest.approx(1.0)


def test_roc_auc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)  # rounding makes many ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert roc_auc([1, 0, 1], [0.2, 0.5, 0.9]) == 0.5
    with pytest.raises(ValueError, match="0 or 1"):
        roc_auc([0, 2], [0.1, 0.2])


def test_bootstrap_interval_known_answer():
    # The values cadx 0.1.0 (scikit-learn AUCs, same resampling) gave: the move to numpy changed nothing.
    r = auc_with_ci([0, 1, 0, 1, 1, 0, 1, 0], [0.1, 0.9, 0.4, 0.35, 0.8, 0.2, 0.6, 0.7], n_boot=500)
    assert r.auc == pytest.approx(0.8125)
    assert (r.ci_low, r.ci_high) == (pytest.approx(3 / 7, abs=1e-12), 1.0)


# --- evaluate_camelyon on a hand-made predictions folder ------------------------------------------

SIZE = 8192  # level-0 px at 0.243 um/px; level-5 mask 256 x 256


def _camelyon_folders(tmp_path, *, legacy_h5=False):
    """Truth: test_001 tumour (one 2048-px square lesion = grid cells rows/cols 3-4), test_002 normal.

    Predictions: a hit on the lesion (0.9), a FP on each slide, scores 0.9 / 0.1, 8 x 8 grids of
    1024-px tiles with 0.9 on the lesion's 4 cells and 0.05 elsewhere.
    """
    import h5py

    from cadx.io.annotations import Annotation, write_asap_xml
    from cadx.io.h5 import ScoreGrid, write_score_grid_h5
    from cadx.io.tables import write_detections_csv

    truth, pred = tmp_path / "truth", tmp_path / "pred"
    sq = np.array([[3072, 3072], [5120, 3072], [5120, 5120], [3072, 5120]], float)
    write_asap_xml(truth / "lesion_annotations" / "test_001.xml", [Annotation(sq, group="_0", name="a")])
    (truth / "reference.csv").write_text("Test_001,Tumor,Primary,Macro\nTest_002,Normal\n")
    pred.mkdir()
    (pred / "slide_scores.csv").write_text("slide,score\ntest_001,0.9\ntest_002,0.1\n")
    write_detections_csv(pred / "test_001.csv", [Detection(0.9, 4096, 4096), Detection(0.2, 100, 100)])
    write_detections_csv(pred / "test_002.csv", [Detection(0.1, 4096, 4096)])
    for name, tumour in (("test_001", True), ("test_002", False)):
        v = np.full((8, 8), 0.05, np.float32)
        if tumour:
            v[3:5, 3:5] = 0.9
        if legacy_h5:  # the one-'probs' layout of cadx 0.1.0
            with h5py.File(pred / f"{name}.h5", "w") as f:
                f.create_dataset("probs", data=v).attrs.update(stride_level0_px=1024, tile_size_level0_px=1024,
                                                               slide_size_wh=[SIZE, SIZE], mpp=0.243)
        else:
            write_score_grid_h5(pred / f"{name}.h5", ScoreGrid(v[None], ("tumor_probability",), 1024, 1024,
                                                               (SIZE, SIZE), 0.243))
    return pred, truth


@pytest.mark.parametrize("legacy_h5", [False, True])
def test_evaluate_camelyon_known_answers(tmp_path, legacy_h5):
    import json

    from cadx.tasks.camelyon16.evaluate import evaluate_camelyon

    pred, truth = _camelyon_folders(tmp_path, legacy_h5=legacy_h5)
    m = evaluate_camelyon(pred, truth)
    assert (m["slides"], m["tumor_slides"], m["lesions"]) == (2, 1, 1)
    assert m["slide_auc"] == 1.0 and (m["slide_sensitivity"], m["slide_specificity"]) == (1.0, 1.0)
    assert m["froc"] == pytest.approx(1.0)  # the hit at 0.9 is found before any FP at 0.2
    assert m["tiles"] == 128 and m["tile_auc"] == 1.0 and m["tile_sensitivity"] == 1.0
    assert [r["false_positives_at_threshold"] for r in m["per_slide"]] == [0, 0]
    assert [r["detections"] for r in m["per_slide"]] == [2, 1]
    assert json.loads((pred / "metrics.json").read_text())["froc"] == m["froc"]
    for name in ("roc.png", "froc.png", "per_slide.csv"):
        assert (pred / name).exists()


def test_a_missing_detections_file_is_an_error_not_an_empty_list(tmp_path):
    from cadx.errors import InputFileError
    from cadx.tasks.camelyon16.evaluate import evaluate_camelyon

    pred, truth = _camelyon_folders(tmp_path)
    (pred / "test_002.csv").unlink()
    with pytest.raises(InputFileError, match=r"test_002.csv: no detections file"):
        evaluate_camelyon(pred, truth)
    (pred / "test_002.csv").write_text("")  # an empty file is a slide without detections
    assert evaluate_camelyon(pred, truth)["per_slide"][1]["detections"] == 0


def test_evaluate_needs_both_classes_and_every_reference_slide(tmp_path):
    from cadx.errors import CadxError
    from cadx.tasks.camelyon16.evaluate import evaluate_camelyon

    pred, truth = _camelyon_folders(tmp_path)
    (truth / "reference.csv").write_text("Test_001,Tumor\n")
    with pytest.raises(CadxError, match="needs tumour and normal slides"):
        evaluate_camelyon(pred, truth)
    (truth / "reference.csv").write_text("Test_001,Tumor\nTest_002,Normal\nTest_003,Normal\n")
    with pytest.raises(CadxError, match="no prediction for 1 reference slides: test_003"):
        evaluate_camelyon(pred, truth)
