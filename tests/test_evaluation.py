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
    assert r.auc == pytest.approx(0.75) and r.ci_low < 0.75 < r.ci_high or r.ci_high == 1.0
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
