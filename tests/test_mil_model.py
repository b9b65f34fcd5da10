"""MIL models: attention, max pooling, the instance loss, the factory and checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cadx.errors import ConfigError
from cadx.models.checkpoint import load_checkpoint, save_checkpoint
from cadx.models.factory import build_from_config, create_model
from cadx.models.mil import GatedAttentionMIL, MaxPoolMIL, MILOutput, instance_loss
from cadx.training.mil import bag_predict


def _bce(score: float, target: float) -> float:
    p = 1 / (1 + math.exp(-score))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_instance_loss_takes_top_and_bottom_attended_tiles():
    scores = torch.tensor([2.0, 0.0, -1.0, 1.0, 3.0], requires_grad=True)
    out = MILOutput(torch.zeros(2), torch.tensor([0.30, 0.05, 0.10, 0.25, 0.30]), scores)
    # Tumour bag, k=2: tiles 0 and 4 (ties keep tile order) -> tumour; the two least attended, 1 and 2 -> normal.
    want = np.mean([_bce(2.0, 1), _bce(3.0, 1), _bce(0.0, 0), _bce(-1.0, 0)])
    loss = instance_loss(out, 1, k=2)
    assert float(loss.detach()) == pytest.approx(want, abs=1e-6)
    loss.backward()
    assert scores.grad[3] == 0  # tile 3 is in neither set
    out.instance_scores = scores.detach()
    # Normal bag, k=2: the two most attended tiles should score normal.
    assert float(instance_loss(out, torch.tensor(0), k=2)) == pytest.approx(np.mean([_bce(2.0, 0), _bce(3.0, 0)]))
    # Small bags: a tumour bag of 5 tiles and k=8 takes 2 a side; one tile: that tile, no negative.
    assert float(instance_loss(out, 1, k=8)) == pytest.approx(want, abs=1e-6)
    one = MILOutput(torch.zeros(2), torch.ones(1), torch.tensor([0.5]))
    assert float(instance_loss(one, 1, k=8)) == pytest.approx(_bce(0.5, 1))
    assert float(instance_loss(one, 0, k=8)) == pytest.approx(_bce(0.5, 0))


def test_attention_follows_the_tiles_and_the_bag_ignores_their_order():
    torch.manual_seed(0)
    model = GatedAttentionMIL(8).eval()
    x = torch.randn(11, 8)
    perm = torch.randperm(11)
    with torch.no_grad():
        a, b = model(x), model(x[perm])
    assert torch.allclose(a.logits, b.logits, atol=1e-5)
    assert torch.allclose(a.attention[perm], b.attention, atol=1e-6)
    assert torch.allclose(a.instance_scores[perm], b.instance_scores, atol=1e-5)
    assert float(a.attention.sum()) == pytest.approx(1.0, abs=1e-5) and bool((a.attention > 0).all())
    with torch.no_grad():  # (1, N, D) is one bag too
        assert torch.allclose(model(x[None]).logits, a.logits)


def test_max_pool_takes_the_logits_of_the_top_tile():
    torch.manual_seed(0)
    model = MaxPoolMIL(4, hidden=8).eval()
    torch.nn.init.normal_(model.classifier.weight)  # the head starts at zero
    x = torch.randn(9, 4)
    with torch.no_grad():
        out = model(x)
        tiles = model.forward_features(x)
    top = int(torch.argmax(tiles[:, 1] - tiles[:, 0]))
    assert torch.equal(out.logits, tiles[top]) and torch.equal(model.forward_head(tiles), tiles[top])
    assert int(torch.argmax(out.attention)) == top and not model.uses_instance_loss


@pytest.mark.parametrize("arch", ["abmil", "maxmil"])
def test_factory_checkpoint_round_trip_reproduces_outputs(arch, tmp_path):
    torch.manual_seed(0)
    model = create_model(arch, kind="mil", in_chans=16)
    for p in model.parameters():  # away from maxmil's zero head
        torch.nn.init.normal_(p, std=0.2)
    c = model.cadx_config
    assert (c.kind, c.architecture, c.in_chans, c.num_classes, c.activation) == ("mil", arch, 16, 2, "softmax")
    x = np.random.default_rng(1).normal(size=(25, 16)).astype(np.float32)
    before = bag_predict(model, x)
    loaded, meta = load_checkpoint(save_checkpoint(tmp_path / "mil.pt", model, metrics={"auc": 0.9}))
    after = bag_predict(loaded, x)
    assert type(loaded) is type(model) and meta["metrics"] == {"auc": 0.9}
    assert after["probability"] == pytest.approx(before["probability"], abs=1e-6)
    np.testing.assert_allclose(after["attention"], before["attention"], atol=1e-6)
    np.testing.assert_allclose(after["instance"], before["instance"], atol=1e-6)
    assert type(build_from_config(c)) is type(model)


def test_factory_refuses_what_mil_models_cannot_be():
    with pytest.raises(ConfigError, match="MIL architecture"):
        create_model("transmil", kind="mil", in_chans=8)
    with pytest.raises(ConfigError, match="no pretrained weights"):
        create_model("abmil", kind="mil", in_chans=8, pretrained="hub")
    with pytest.raises(ConfigError, match="2 classes"):
        create_model("abmil", kind="mil", in_chans=8, num_classes=3)
    with pytest.raises(ValueError, match="one bag"):
        GatedAttentionMIL(8)(torch.zeros(0, 8))


def test_a_bag_of_100k_tiles_of_1024_features_runs_in_linear_memory():
    # An N x N attention matrix would need 40 GB here; the gated attention holds (N, 512) at most.
    torch.manual_seed(0)
    model = create_model("abmil", kind="mil", in_chans=1024).eval()
    x = torch.rand(100_000, 1024)
    with torch.no_grad():
        out = model(x)
    assert out.attention.shape == out.instance_scores.shape == (100_000,) and out.logits.shape == (2,)
    assert float(out.attention.sum()) == pytest.approx(1.0, abs=1e-3)
    assert bool(torch.isfinite(out.logits).all())
