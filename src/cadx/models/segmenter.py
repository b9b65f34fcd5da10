"""Segmentation networks: segmentation-models-pytorch decoders on timm encoders (kind ``"segmenter"``).

An architecture is named ``<decoder>-<timm encoder>``: ``unet-tf_efficientnet_lite0`` is smp's
``Unet(encoder_name="tu-tf_efficientnet_lite0")``; decoders are listed in :data:`DECODERS`. ImageNet
weights go into the encoder the way they go into a classifier: the weights file is loaded into timm's
classifier of the same name (:func:`cadx.models.factory.create_model` with ``kind="classifier"``, so
the packaged Lite weights pass through the same key rename and the same strict check), and its
parameters are copied into smp's feature encoder, every encoder tensor accounted for.

:class:`Segmenter` wraps the smp model so that it fits the shared predictor path: ``forward`` and
``forward_features`` give the logits ``(N, K, H, W)`` and ``forward_head`` is the identity, so
:class:`cadx.inference.predictor.TorchPredictor`, :func:`~cadx.inference.predictor.export_onnx` and
:class:`~cadx.inference.predictor.OnnxPredictor` return per-pixel probabilities unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from cadx.errors import ConfigError, require_extra
from cadx.models.weights import WeightsUnavailableError

__all__ = ["DECODERS", "Segmenter", "build_segmenter", "split_architecture"]

#: Decoder prefix -> smp class name.
DECODERS = {"unet": "Unet", "fpn": "FPN"}


def split_architecture(name: str) -> tuple[str, str]:
    """``"unet-tf_efficientnet_lite0"`` -> ``("unet", "tf_efficientnet_lite0")``.

    Raises
    ------
    ConfigError
        No known decoder prefix, or an encoder timm does not know.

    Examples
    --------
    >>> split_architecture("unet-tf_efficientnet_lite0")
    ('unet', 'tf_efficientnet_lite0')
    >>> split_architecture("segnet-resnet18")
    Traceback (most recent call last):
    ...
    cadx.errors.ConfigError: model config: unknown segmentation architecture 'segnet-resnet18'; use ...
    """
    import timm

    decoder, _, encoder = name.partition("-")
    if decoder not in DECODERS or not encoder:
        raise ConfigError(f"model config: unknown segmentation architecture {name!r}; use <decoder>-<timm encoder> "
                          f"with a decoder in {sorted(DECODERS)}, e.g. unet-tf_efficientnet_lite0")
    if not timm.is_model(encoder):
        raise ConfigError(f"model config: unknown encoder {encoder!r} in {name!r} (not a timm model name)")
    return decoder, encoder


class Segmenter(nn.Module):
    """An smp segmentation model in timm's clothes (``pretrained_cfg``, ``forward_features``, ``forward_head``).

    Parameters
    ----------
    net : torch.nn.Module
        The smp model (``net.encoder.model`` is the timm feature encoder).
    pretrained_cfg : dict
        The encoder's timm ``pretrained_cfg`` (mean, std, input size).
    """

    def __init__(self, net: Any, pretrained_cfg: dict[str, Any]) -> None:
        super().__init__()
        self.net = net
        self.pretrained_cfg = dict(pretrained_cfg)

    def forward(self, x: Any) -> Any:
        """Logits ``(N, K, H, W)`` for inputs ``(N, C, H, W)`` (H and W multiples of 32)."""
        return self.net(x)

    def forward_features(self, x: Any) -> Any:
        """The whole network: per-pixel logits (what predictors activate)."""
        return self.net(x)

    def forward_head(self, x: Any, pre_logits: bool = False) -> Any:
        """The identity: a segmenter's head is inside :meth:`forward_features`."""
        return x

    def encoder_parameters(self) -> list[Any]:
        """Parameters of the (ImageNet) encoder."""
        return list(self.net.encoder.parameters())

    def decoder_parameters(self) -> list[Any]:
        """Parameters of the decoder and the segmentation head (everything but the encoder)."""
        enc = {id(p) for p in self.net.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in enc]


def build_segmenter(name: str, *, pretrained: bool | str | Path, num_classes: int, in_chans: int) -> tuple[Any, str]:
    """Build kind ``"segmenter"`` (the factory's builder; use :func:`cadx.models.factory.create_model`).

    Parameters
    ----------
    name : str
        ``<decoder>-<timm encoder>``, e.g. ``unet-tf_efficientnet_lite0``.
    pretrained : False, "hub" or Path
        Encoder weights: none, timm's hub, or a weights file of timm's classifier ``<encoder>``
        (the packaged Lite weights in lukemelas layout included).
    num_classes : int
        Output channels K.
    in_chans : int
        Input channels.

    Returns
    -------
    (Segmenter, str)
        The model (train mode, CPU) and where its encoder weights came from.

    Raises
    ------
    ConfigError
        Unknown architecture.
    WeightsUnavailableError
        The weights do not fit the encoder.
    """
    smp = require_extra("segmentation_models_pytorch", "seg")
    decoder, encoder = split_architecture(name)
    net = getattr(smp, DECODERS[decoder])(encoder_name=f"tu-{encoder}", encoder_weights=None, in_channels=in_chans,
                                          classes=num_classes, activation=None)
    timm_encoder = net.encoder.model
    cfg = dict(getattr(timm_encoder, "pretrained_cfg", None) or {})
    weights = "random"
    if pretrained is not False:
        weights = _load_encoder_weights(timm_encoder, encoder, pretrained=pretrained, in_chans=in_chans)
    return Segmenter(net, cfg).train(), weights


def _load_encoder_weights(timm_encoder: Any, encoder: str, *, pretrained: str | Path, in_chans: int) -> str:
    """Copy the weights of timm's classifier ``encoder`` (loaded as the factory loads it) into the feature encoder.

    Every encoder tensor must be filled; only the classifier's head (layers after the last feature
    stage) may be left over.
    """
    from cadx.models.factory import create_model

    classifier = create_model(encoder, kind="classifier", pretrained=pretrained, num_classes=1000, in_chans=in_chans)
    source = classifier.state_dict()
    target = timm_encoder.state_dict()
    missing = [k for k in target if k not in source]
    misfit = [k for k in target if k in source and source[k].shape != target[k].shape]
    if missing or misfit:
        raise WeightsUnavailableError(f"{encoder}: the classifier weights do not fill the segmentation encoder "
                                      f"(missing {missing[:3]}, mis-shaped {misfit[:3]})")
    timm_encoder.load_state_dict({k: source[k] for k in target}, strict=True)
    return classifier.cadx_config.weights
