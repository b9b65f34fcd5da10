"""Partial fine-tuning by timm's stage grouping: the same meaning of "last N stages" everywhere."""

from __future__ import annotations

import pytest
import timm
import torch

from cadx.training.freeze import set_batchnorm_eval, set_trainable, stage_groups
from cadx.training.loop import Phase, fit


def _trained(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _under(model, *prefixes) -> set[str]:
    return {n for n, _ in model.named_parameters() if n.startswith(prefixes)}


# name -> (the last stage and the head, as parameter-name prefixes)
LAST_STAGE_AND_HEAD = {
    "tf_efficientnet_lite0": ("blocks.6.", "conv_head.", "bn2.", "classifier."),
    "resnet18": ("layer4.", "fc."),
    "convnext_atto": ("stages.3.", "head."),
    "densenet121": ("features.denseblock4.", "features.norm5.", "classifier."),
}


@pytest.mark.parametrize("name", sorted(LAST_STAGE_AND_HEAD))
def test_last_stage_and_head(name):
    model = timm.create_model(name, pretrained=False, num_classes=2)
    params = set_trainable(model, 1)
    assert _trained(model) == _under(model, *LAST_STAGE_AND_HEAD[name])
    assert len(params) == len(_trained(model))
    head = {f"{n}" for n in stage_groups(model).head}
    set_trainable(model, 0)
    assert _trained(model) == head and head  # head only
    set_trainable(model, -1)
    assert _trained(model) == {n for n, _ in model.named_parameters()}
    set_trainable(model, 100)
    assert _trained(model) == {n for n, _ in model.named_parameters()}


def test_lite0_stage_map():
    """The grouping the CAMELYON default (trainable_blocks=1) relies on."""
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=2)
    groups = stage_groups(model)
    firsts = [g[0].rsplit(".", 1)[0] for g in groups.stages]
    assert firsts == ["conv_stem", "blocks.0.0.conv_dw", "blocks.1.0.conv_pw", "blocks.2.0.conv_pw",
                      "blocks.3.0.conv_pw", "blocks.4.0.conv_pw", "blocks.5.0.conv_pw", "blocks.6.0.conv_pw"]
    assert groups.stages[-1][-3:] == ("conv_head.weight", "bn2.weight", "bn2.bias")
    assert groups.head == ("classifier.weight", "classifier.bias")
    set_trainable(model, 2)
    assert _trained(model) == _under(model, "blocks.5.", "blocks.6.", "conv_head.", "bn2.", "classifier.")


def test_bad_arguments():
    with pytest.raises(TypeError, match="group_matcher"):
        set_trainable(torch.nn.Linear(2, 2), 1)
    with pytest.raises(ValueError, match="last_stages"):
        set_trainable(timm.create_model("resnet10t", num_classes=2), -2)
    lin = torch.nn.Linear(2, 2)
    set_trainable(lin, -1)  # "all" works for any module
    assert all(p.requires_grad for p in lin.parameters())


def test_fit_phase_trains_only_the_chosen_stages():
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 0, 1])
    fit(model, [Phase("last", 2, 0.01, trainable=1)], loss_fn=torch.nn.CrossEntropyLoss(), batches=[(x, y)],
        evaluate=lambda: {"m": 0.0}, monitor="m", eval_every=2, batchnorm_eval=True)
    changed = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"layer4", "fc"}
    assert set_batchnorm_eval(model) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
