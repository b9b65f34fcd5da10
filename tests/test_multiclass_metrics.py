"""Multi-class metrics (ISIC 2019) and calibration: known answers, scikit-learn as the oracle."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from cadx.metrics.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability_bins,
    softmax,
)
from cadx.metrics.classification import (
    balanced_accuracy,
    balanced_accuracy_from_confusion,
    confusion_matrix,
    per_class_report,
    roc_curve,
)

# Hand-made confusion matrix (rows true MEL, NV, BCC; columns predicted):
#   MEL: 6 right, 3 -> NV, 1 -> BCC   recall 6/10
#   NV : 2 -> MEL, 16 right, 2 -> BCC recall 16/20
#   BCC: 0, 1 -> NV, 4 right          recall 4/5
CM = np.array([[6, 3, 1], [2, 16, 2], [0, 1, 4]])


def _labels_from(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, p = [], []
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            t += [i] * int(cm[i, j])
            p += [j] * int(cm[i, j])
    return np.array(t), np.array(p)


def test_balanced_accuracy_and_confusion_on_a_hand_made_matrix():
    t, p = _labels_from(CM)
    assert confusion_matrix(t, p, 3).tolist() == CM.tolist()
    expected = (6 / 10 + 16 / 20 + 4 / 5) / 3  # 0.7333..., while plain accuracy is 26/35 = 0.7428...
    assert balanced_accuracy(t, p) == pytest.approx(expected, abs=1e-12)
    assert balanced_accuracy_from_confusion(CM) == pytest.approx(expected, abs=1e-12)
    assert balanced_accuracy(t, p) == pytest.approx(skm.balanced_accuracy_score(t, p), abs=1e-12)


def test_balanced_accuracy_skips_absent_classes_but_counts_wrong_predictions_of_them():
    # class 2 never occurs; one sample of class 0 is predicted as 2
    assert balanced_accuracy([0, 0, 1, 1], [0, 2, 1, 1], n_classes=3) == pytest.approx((0.5 + 1.0) / 2)
    with pytest.raises(ValueError, match="0..2"):
        confusion_matrix([0, 3], [0, 1], 3)


def test_per_class_report_known_answers():
    t, p = _labels_from(CM)
    proba = np.full((t.size, 3), 0.1)
    proba[np.arange(t.size), p] = 0.8
    r = per_class_report(t, proba, ["MEL", "NV", "BCC"])
    assert r.confusion.tolist() == CM.tolist()
    assert r.accuracy == pytest.approx(26 / 35)
    assert r.balanced_accuracy == pytest.approx((0.6 + 0.8 + 0.8) / 3)
    mel, nv, bcc = r.classes
    assert (mel.name, mel.support, mel.predicted) == ("MEL", 10, 8)
    assert mel.sensitivity == pytest.approx(0.6)
    assert mel.specificity == pytest.approx(23 / 25)  # 25 non-MEL, 2 called MEL
    assert mel.precision == pytest.approx(6 / 8)
    assert mel.f1 == pytest.approx(2 * 6 / (2 * 6 + 2 + 4))
    assert nv.precision == pytest.approx(16 / 20) and bcc.precision == pytest.approx(4 / 7)
    # one-vs-rest AUC with binary scores: (sens + spec) / 2
    assert mel.auc == pytest.approx((0.6 + 23 / 25) / 2)
    for k, m in enumerate(r.classes):
        assert m.auc == pytest.approx(skm.roc_auc_score(t == k, proba[:, k]))
    prec, rec, f1, _ = skm.precision_recall_fscore_support(t, p)
    assert [m.precision for m in r.classes] == pytest.approx(prec.tolist())
    assert [m.sensitivity for m in r.classes] == pytest.approx(rec.tolist())
    assert [m.f1 for m in r.classes] == pytest.approx(f1.tolist())
    assert r.mean_auc == pytest.approx(np.mean([m.auc for m in r.classes]))


def test_per_class_report_absent_class_is_nan_not_zero():
    r = per_class_report([0, 1, 1], [[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.6, 0.3]], ["A", "B", "C"])
    c = r.classes[2]
    assert c.support == 0 and c.predicted == 0
    assert np.isnan(c.sensitivity) and np.isnan(c.precision) and np.isnan(c.f1) and np.isnan(c.auc)
    assert c.specificity == 1.0
    assert r.balanced_accuracy == 1.0 and r.mean_auc == 1.0


def test_roc_curve_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)  # many ties
    fpr, tpr, thr = roc_curve(y, s)
    f2, t2, th2 = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2)
    np.testing.assert_allclose(tpr, t2)
    np.testing.assert_allclose(thr[1:], th2[1:])
    assert np.trapezoid(tpr, fpr) == pytest.approx(skm.roc_auc_score(y, s))


def test_fit_temperature_recovers_the_scale_of_the_logits():
    rng = np.random.default_rng(7)
    true_logits = rng.normal(0.0, 2.0, (20000, 4))
    labels = np.array([rng.choice(4, p=p) for p in softmax(true_logits)])
    for t_true in (0.5, 2.5):
        t = fit_temperature(t_true * true_logits, labels)
        assert t == pytest.approx(t_true, rel=0.04)
        # it is the minimum: a step either way is worse
        assert nll(t_true * true_logits, labels, t) < nll(t_true * true_logits, labels, t * 1.1)
        assert nll(t_true * true_logits, labels, t) < nll(t_true * true_logits, labels, t / 1.1)
    # log-probabilities work as logits
    assert fit_temperature(np.log(softmax(2.5 * true_logits)), labels) == pytest.approx(
        fit_temperature(2.5 * true_logits, labels), rel=1e-6)


def test_fit_temperature_bounds():
    logits = np.array([[5.0, 0.0], [0.0, 5.0]])
    assert fit_temperature(logits, [0, 1]) == 0.01  # separable: sharpen as far as allowed
    assert fit_temperature(logits, [1, 0], t_range=(0.1, 50.0)) == 50.0  # always wrong: flatten
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(logits, 0.0)


def test_apply_temperature_keeps_the_argmax_and_softens():
    z = np.array([[2.0, 1.0, -1.0]])
    p1, p3 = apply_temperature(z, 1.0), apply_temperature(z, 3.0)
    assert p1.argmax() == p3.argmax() == 0 and p3.max() < p1.max()
    np.testing.assert_allclose(p3, softmax(z / 3.0))


def test_ece_perfectly_calibrated_is_zero_and_overconfident_is_exact():
    # 10 samples at confidence 0.8 with 8 right; 5 at 0.6 with 3 right
    proba = np.array([[0.8, 0.2]] * 10 + [[0.4, 0.6]] * 5)
    labels = np.array([0] * 8 + [1] * 2 + [1] * 3 + [0] * 2)
    assert expected_calibration_error(proba, labels) == pytest.approx(0.0, abs=1e-12)
    # always 95 % sure, right 70 %: gap 0.25; plus a calibrated bin at 0.55 (11 of 20 right)
    proba = np.array([[0.95, 0.05]] * 20 + [[0.55, 0.45]] * 20)
    labels = np.array([0] * 14 + [1] * 6 + [0] * 11 + [1] * 9)
    assert expected_calibration_error(proba, labels, n_bins=10) == pytest.approx(0.5 * 0.25, abs=1e-12)


def test_reliability_bins_layout_and_temperature_lowers_ece():
    b = reliability_bins(np.array([[0.5, 0.5], [1.0, 0.0], [0.3, 0.7]]), [0, 0, 0], n_bins=4)
    assert b.edges.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert b.count.tolist() == [0, 1, 1, 1]  # 0.5 -> (0.25, 0.5], 0.7 -> (0.5, 0.75], 1.0 -> (0.75, 1]
    assert b.accuracy[1:].tolist() == [1.0, 0.0, 1.0] and np.isnan(b.accuracy[0])
    assert b.to_dict()["accuracy"] == [None, 1.0, 0.0, 1.0]
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 1.5, (5000, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    over = 3.0 * true_logits
    before = expected_calibration_error(softmax(over), labels)
    after = expected_calibration_error(apply_temperature(over, fit_temperature(over, labels)), labels)
    assert before > 0.1 and after < 0.03
