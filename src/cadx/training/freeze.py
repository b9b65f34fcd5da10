"""Partial fine-tuning by timm's own stage grouping.

timm models describe their layout with ``model.group_matcher(coarse=True)``: the stem, then one group
per stage, input to output; timm's public :func:`timm.models.group_parameters` turns that into ordered
parameter groups, and puts every parameter no pattern claims (the classifier, and layers after the last
stage such as ConvNeXt's ``head.norm`` or DenseNet's ``norm5``) in a last group, the *head*.

"The last N stages" therefore means the same thing for every architecture: the last ``N`` of those
groups before the head, with the head always trainable. For ``tf_efficientnet_lite0`` the groups are
``stem`` (conv_stem, bn1), ``blocks.0`` ... ``blocks.6`` (``blocks.6`` with ``conv_head`` and ``bn2``,
which timm merges into the last block group) and the head (``classifier``), so ``N = 1`` trains
``blocks.6``, ``conv_head``, ``bn2`` and ``classifier``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: ``last_stages`` value meaning "the whole network".
ALL_STAGES = -1


@dataclass(frozen=True)
class StageGroups:
    """Parameter names of a model, cut into stages (input to output) and the head.

    Attributes
    ----------
    stages : tuple of tuple of str
        ``stages[0]`` is the stem, ``stages[-1]`` the stage nearest the head.
    head : tuple of str
        The classifier and any layer after the last stage; always trained.
    """

    stages: tuple[tuple[str, ...], ...]
    head: tuple[str, ...]


def stage_groups(model: Any) -> StageGroups:
    """Group a timm model's parameters by ``model.group_matcher(coarse=True)``.

    Parameters
    ----------
    model : torch.nn.Module
        A timm model (it has ``group_matcher`` and ``get_classifier``).

    Returns
    -------
    StageGroups

    Raises
    ------
    TypeError
        ``model`` has no ``group_matcher`` (not a timm model).

    Examples
    --------
    >>> import timm
    >>> groups = stage_groups(timm.create_model("resnet10t", num_classes=2))
    >>> len(groups.stages), groups.head
    (5, ('fc.weight', 'fc.bias'))
    >>> groups.stages[-1][0]
    'layer4.0.conv1.weight'
    """
    from timm.models import group_parameters

    if not hasattr(model, "group_matcher"):
        raise TypeError(f"{type(model).__name__} has no group_matcher(): stage freezing needs a timm model")
    grouped = group_parameters(model, model.group_matcher(coarse=True))
    groups = [tuple(grouped[k]) for k in sorted(grouped)]
    classifier = {f"{_prefix(model, model.get_classifier())}{n}" for n, _ in model.get_classifier().named_parameters()}
    if groups and classifier & set(groups[-1]):
        stages, head = groups[:-1], groups[-1]
    else:  # the matcher claims the classifier too: keep the stages, name the head explicitly
        stages = [tuple(n for n in g if n not in classifier) for g in groups]
        stages = [g for g in stages if g]
        head = tuple(n for n, _ in model.named_parameters() if n in classifier)
    return StageGroups(tuple(stages), tuple(head))


def _prefix(model: Any, module: Any) -> str:
    for name, m in model.named_modules():
        if m is module:
            return f"{name}." if name else ""
    return ""


def set_trainable(model: Any, last_stages: int) -> list[Any]:
    """Train the head and the last ``last_stages`` stages; freeze the rest (``requires_grad``).

    Parameters
    ----------
    model : torch.nn.Module
        A timm model.
    last_stages : int
        ``0``: the head only; ``N``: the last ``N`` stages of :func:`stage_groups` and the head
        (more than there are: all); ``-1``: the whole network.

    Returns
    -------
    list of torch.nn.Parameter
        The trainable parameters, in the model's order (for the optimiser).

    Examples
    --------
    >>> import timm
    >>> model = timm.create_model("resnet10t", num_classes=2)
    >>> params = set_trainable(model, 1)
    >>> sorted({n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad})
    ['fc', 'layer4']
    """
    if last_stages < ALL_STAGES:
        raise ValueError(f"last_stages must be -1 (all), 0 (head only) or a positive count, not {last_stages}")
    if last_stages == ALL_STAGES:
        names = {n for n, _ in model.named_parameters()}
    else:
        groups = stage_groups(model)
        chosen = groups.stages[len(groups.stages) - last_stages:] if last_stages else ()
        names = set(groups.head).union(*chosen)
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(name in names)
        if name in names:
            params.append(p)
    log.debug("trainable: %d of %d parameter tensors", len(params), len(list(model.parameters())))
    return params


def set_batchnorm_eval(model: Any) -> int:
    """Put every BatchNorm layer in eval mode (call after ``model.train()``).

    Running statistics then stay those of the pretrained network (useful with small batches); the
    affine weights of trainable stages still learn.

    Returns
    -------
    int
        How many BatchNorm layers were switched.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)).train()
    >>> set_batchnorm_eval(model), model[0].training, model[1].training
    (1, True, False)
    """
    from torch.nn.modules.batchnorm import _BatchNorm

    n = 0
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.eval()
            n += 1
    return n
