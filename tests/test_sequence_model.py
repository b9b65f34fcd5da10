"""Study-level sequence model: it learns a label that depends on the neighbouring slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cadx.errors import ConfigError
from cadx.models.checkpoint import load_checkpoint, save_checkpoint
from cadx.models.factory import create_model
from cadx.models.sequence import StudySequenceModel
from cadx.training.sequence import SequenceTrainConfig, masked_bce, pad_studies, predict_studies, train_sequence_model

RSNA = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any")


def _studies(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Label 0: the previous or the next slice is positive (feature 0); label 1: this slice is."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = int(rng.integers(6, 13))
        pos = rng.random(t) < 0.25
        emb = rng.normal(0, 0.3, (t, 4)).astype(np.float32)
        emb[:, 0] += 2.0 * pos
        nb = np.zeros(t, bool)
        nb[1:] |= pos[:-1]
        nb[:-1] |= pos[1:]
        out.append((emb, np.stack([nb, pos], 1).astype(np.float32)))
    return out


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@pytest.mark.parametrize("kind", ["gru", "conv"])
def test_sequence_model_learns_neighbour_rule_and_round_trips(kind, tmp_path):
    from sklearn.linear_model import LogisticRegression

    train, val = _studies(120, 0), _studies(40, 1)
    cfg = SequenceTrainConfig(kind=kind, hidden=16, steps=250, lr=1e-2, batch_studies=16, eval_every=50)
    model, result = train_sequence_model(train, val, config=cfg, class_names=("neighbour", "self"))
    assert model.cadx_config.kind == "sequence" and model.cadx_config.activation == "sigmoid"
    assert result.steps == 250

    probs = np.concatenate(predict_studies(model, val))
    y_val = np.concatenate([s[1] for s in val])
    seq_loss = _log_loss(y_val[:, 0], probs[:, 0])

    # A per-slice logistic regression sees only its own slice: the neighbour label is beyond it.
    x_tr, y_tr = np.concatenate([s[0] for s in train]), np.concatenate([s[1] for s in train])
    lr = LogisticRegression(max_iter=1000).fit(x_tr, y_tr[:, 0])
    lr_loss = _log_loss(y_val[:, 0], lr.predict_proba(np.concatenate([s[0] for s in val]))[:, 1])
    assert lr_loss > 0.5  # near the entropy of the base rate
    assert seq_loss < 0.25 * lr_loss, (seq_loss, lr_loss)
    assert _log_loss(y_val[:, 1], probs[:, 1]) < 0.1  # and its own label

    path = save_checkpoint(tmp_path / "seq.pt", model, extra={"sequence": {"embedding": "test"}})
    loaded, meta = load_checkpoint(path)
    assert meta["model"]["architecture"] == f"{kind}-16" and meta["sequence"] == {"embedding": "test"}
    again = np.concatenate(predict_studies(loaded, val))
    np.testing.assert_array_equal(again, probs)


def test_factory_builds_rsna_sequence_model():
    m = create_model("gru-8", kind="sequence", in_chans=12, num_classes=6, class_names=RSNA)
    c = m.cadx_config
    assert isinstance(m, StudySequenceModel)
    assert (c.kind, c.activation, c.class_names, c.in_chans, m.hidden) == ("sequence", "sigmoid", RSNA, 12, 8)
    with pytest.raises(ConfigError, match="gru-<hidden>"):
        create_model("lstm", kind="sequence", in_chans=12, num_classes=6)
    with pytest.raises(ConfigError, match="no pretrained"):
        create_model("gru", kind="sequence", pretrained="weights.pth", in_chans=12, num_classes=6)


@pytest.mark.parametrize("kind", ["gru", "conv"])
def test_padding_does_not_change_real_slices(kind):
    torch.manual_seed(0)
    m = StudySequenceModel(5, 3, hidden=6, kind=kind).eval()
    short = torch.randn(1, 4, 5)
    padded = torch.cat([short, torch.randn(1, 3, 5)], 1)  # garbage after the end
    mask = torch.tensor([[True] * 4 + [False] * 3])
    with torch.no_grad():
        alone, batched = m(short), m((padded, mask))
    torch.testing.assert_close(batched[:, :4], alone)
    assert float(batched[:, 4:].abs().sum()) == 0.0


def test_masked_bce_weights_labels_and_ignores_padding():
    logits = torch.tensor([[[0.0, 0.0], [9.0, -9.0]]])
    y = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    loss = masked_bce([1.0, 2.0])(logits, (y, torch.tensor([[True, False]])))
    assert float(loss) == pytest.approx(np.log(2))
    both = masked_bce([1.0, 2.0])(logits, (y, torch.tensor([[True, True]])))
    expected = (np.log(2) + (np.log1p(np.exp(9.0)) + 2 * np.log1p(np.exp(-9.0))) / 3) / 2
    assert float(both) == pytest.approx(expected, rel=1e-5)


def test_pad_studies_rejects_mismatched_studies():
    with pytest.raises(ConfigError, match="study 1"):
        pad_studies([(np.ones((2, 3)), np.ones((2, 1))), (np.ones((2, 3)), np.ones((3, 1)))])
