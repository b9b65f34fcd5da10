"""Known answers for the RSNA weighted multi-label log loss."""

import math

import numpy as np
import pytest

from cadx.metrics.multilabel import per_label_log_loss, weighted_log_loss


def test_half_everywhere_is_ln2():
    y = np.array([[1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0], [0, 1, 1, 0, 1, 1]])
    assert weighted_log_loss(y, np.full(y.shape, 0.5)) == pytest.approx(math.log(2), abs=1e-12)


def test_perfect_prediction_is_clipped_to_about_zero():
    y = np.array([[1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]], float)
    assert weighted_log_loss(y, y) == pytest.approx(-math.log(1 - 1e-15), abs=1e-15)
    assert weighted_log_loss(y, y) < 1e-14


def test_hand_computed_weighted_value():
    # two images; only "any" (col 5) and epidural (col 0) differ from 0.5
    y = np.array([[1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]])
    p = np.full((2, 6), 0.5)
    p[:, 0] = [0.9, 0.2]   # LL_epi = -(ln .9 + ln .8) / 2
    p[:, 5] = [0.6, 0.3]   # LL_any = -(ln .6 + ln .7) / 2
    ll_epi = -(math.log(0.9) + math.log(0.8)) / 2
    ll_any = -(math.log(0.6) + math.log(0.7)) / 2
    expected = (ll_epi + 4 * math.log(2) + 2 * ll_any) / 7
    assert weighted_log_loss(y, p) == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(per_label_log_loss(y, p), [ll_epi] + [math.log(2)] * 4 + [ll_any], atol=1e-12)
    # uniform weights give the plain mean: "any" weighted 2 matters
    assert weighted_log_loss(y, p, weights=(1,) * 6) == pytest.approx((ll_epi + 4 * math.log(2) + ll_any) / 6)


def test_confident_wrong_is_clipped_at_eps():
    y = np.array([[1]])
    assert per_label_log_loss(y, np.array([[0.0]]))[0] == pytest.approx(-math.log(1e-15))
    assert per_label_log_loss(y, np.array([[0.0]]), eps=1e-7)[0] == pytest.approx(-math.log(1e-7))


@pytest.mark.parametrize("y,p", [
    (np.zeros((2, 6)), np.zeros((2, 5))),
    (np.full((2, 6), 2), np.zeros((2, 6))),
    (np.zeros((2, 6)), np.full((2, 6), 1.5)),
    (np.zeros((0, 6)), np.zeros((0, 6))),
])
def test_bad_shapes_and_values_raise(y, p):
    with pytest.raises(ValueError):
        weighted_log_loss(y, p)
