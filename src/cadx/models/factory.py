"""The one way cadx builds a model: :func:`create_model`.

Every model carries a :class:`ModelConfig` (architecture, classes, input size, mean, std, where its
weights came from) as ``model.cadx_config``; checkpoints save it, so preprocessing is never typed
twice.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cadx.models.weights import (
    WeightsUnavailableError,
    builtin_weights_file,
    find_local_weights,
    how_to_provide,
    read_state_dict,
    rename_lukemelas_lite_keys,
)

log = logging.getLogger(__name__)

#: Backbones cadx is tested with (any timm name works).
SUPPORTED_MODELS = (
    "tf_efficientnet_lite0",
    "mobilenetv2_100",
    "resnet50",
    "inception_v3",
    "vgg16_bn",
    "efficientnet_b4",
)


@dataclass
class ModelConfig:
    """What travels with a model: how to build it and how to feed it."""

    architecture: str
    num_classes: int
    in_chans: int = 3
    input_size: int = 224
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    weights: str = "random"
    class_names: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = dict(d)
        for k in ("mean", "std", "class_names"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def create_model(
    name: str,
    *,
    pretrained: bool | str | Path = False,
    num_classes: int = 2,
    in_chans: int = 3,
    input_size: int | None = None,
    class_names: tuple[str, ...] | None = None,
) -> Any:
    """Build a timm backbone with a new head, optionally from ImageNet weights.

    Parameters
    ----------
    name : str
        timm architecture, e.g. ``tf_efficientnet_lite0``, ``resnet50``, ``inception_v3``.
    pretrained : bool, str or Path
        ``False``: random init. ``True``: offline ImageNet weights (packaged for
        ``tf_efficientnet_lite0``, else ``$CADX_WEIGHTS_DIR/<name>.pth``), an error if none.
        A path: that weights file. ``"hub"``: timm's hub download (needs network).
    num_classes : int
        Outputs of the new head (the ImageNet head is replaced after the weights load).
    in_chans : int
        Input channels.
    input_size : int, optional
        Tile side the model will see (default: the architecture's own).
    class_names : tuple of str, optional

    Returns
    -------
    torch.nn.Module
        With ``model.cadx_config`` (:class:`ModelConfig`).

    Raises
    ------
    WeightsUnavailableError
        Pretrained weights asked for and not available; the message says how to provide them.
    """
    import timm

    source = "random"
    weights_file: Path | None = None
    if pretrained is True:
        weights_file = builtin_weights_file(name) or find_local_weights(name)
        if weights_file is None:
            raise WeightsUnavailableError(how_to_provide(name))
    elif isinstance(pretrained, (str, Path)) and str(pretrained) != "hub":
        weights_file = Path(pretrained)
    hub = isinstance(pretrained, str) and pretrained == "hub"

    try:
        model = timm.create_model(name, pretrained=hub, num_classes=1000 if (weights_file or hub) else num_classes,
                                  in_chans=in_chans)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise WeightsUnavailableError(f"unknown architecture '{name}' (timm has no such model)") from None
        raise
    except Exception as exc:  # noqa: BLE001 - hub failures come as many types
        if hub:
            raise WeightsUnavailableError(f"could not fetch '{name}' from the hub ({type(exc).__name__}); "
                                          + how_to_provide(name)) from None
        raise
    if hub:
        source = f"hub:{model.pretrained_cfg.get('hf_hub_id') or name}"
    if weights_file is not None:
        state = read_state_dict(weights_file)
        if any(k.startswith("_blocks.") for k in state):
            state = rename_lukemelas_lite_keys(state, [len(s) for s in model.blocks])
        if in_chans != 3:  # e.g. 6 = tile + context tile: spread the RGB filters over the inputs
            from timm.models._manipulate import adapt_input_conv

            key = f"{model.pretrained_cfg['first_conv']}.weight"
            state[key] = adapt_input_conv(in_chans, state[key])
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsUnavailableError(f"{weights_file}: does not fit timm's '{name}': {str(exc)[:300]}") from None
        source = f"file:{weights_file.name}"
    if (weights_file or hub) and num_classes != 1000:
        model.reset_classifier(num_classes)
    cfg = model.pretrained_cfg
    model.cadx_config = ModelConfig(
        architecture=name,
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=int(input_size or cfg.get("input_size", (3, 224, 224))[-1]),
        mean=_per_channel(cfg.get("mean", (0.485, 0.456, 0.406)), in_chans),
        std=_per_channel(cfg.get("std", (0.229, 0.224, 0.225)), in_chans),
        weights=source,
        class_names=tuple(class_names or ()),
    )
    log.info("built %s (%s, %d classes)", name, source, num_classes)
    return model


def _per_channel(values: Any, in_chans: int) -> tuple[float, ...]:
    """RGB statistics repeated over ``in_chans`` inputs (6 = two stacked RGB tiles)."""
    vals = [float(v) for v in values]
    return tuple(vals[i % len(vals)] for i in range(in_chans))


def build_from_config(config: ModelConfig) -> Any:
    """An untrained model with the architecture of ``config`` (for loading a checkpoint into)."""
    import timm

    model = timm.create_model(config.architecture, pretrained=False, num_classes=config.num_classes,
                              in_chans=config.in_chans)
    model.cadx_config = config
    return model
