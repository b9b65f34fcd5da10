"""Training losses beyond torch's own: Dice + BCE for binary segmentation (segmentation-models-pytorch)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cadx.errors import require_extra


def dice_bce_loss(*, dice_weight: float = 1.0, bce_weight: float = 1.0) -> Callable[[Any, Any], Any]:
    """Soft Dice (smp ``DiceLoss(mode="binary")``) plus binary cross-entropy, both on logits.

    Dice optimises the overlap directly and is insensitive to the tumour/background imbalance of
    whole tiles; BCE gives every pixel a gradient from the first step, when soft Dice is flat.

    Parameters
    ----------
    dice_weight, bce_weight : float
        Weights of the two terms.

    Returns
    -------
    callable
        ``loss(logits (N, 1, H, W), target (N, 1, H, W) float in {0, 1}) -> scalar tensor``.

    Examples
    --------
    >>> import torch
    >>> loss = dice_bce_loss()
    >>> target = torch.zeros(2, 1, 8, 8); target[:, :, :4] = 1
    >>> good, bad = 20 * (2 * target - 1), -20 * (2 * target - 1)
    >>> float(loss(good, target)) < 0.01 < 1.0 < float(loss(bad, target))
    True
    """
    import torch

    smp_losses = require_extra("segmentation_models_pytorch.losses", "seg")
    dice = smp_losses.DiceLoss(mode="binary", from_logits=True)
    bce = torch.nn.BCEWithLogitsLoss()

    def loss(logits: Any, target: Any) -> Any:
        target = target.to(logits.dtype)
        return dice_weight * dice(logits, target) + bce_weight * bce(logits, target)

    return loss
