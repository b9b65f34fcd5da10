"""The one way cadx builds a model: :func:`create_model`.

Models are built by *kind* through a small registry (:data:`MODEL_KINDS`): ``"classifier"``, a timm
backbone with a fresh head; ``"encoder"``, a frozen timm backbone without a head whose outputs are
its pooled features (:data:`RESNET50_TRUNC` is CLAM's ResNet-50 cut after ``layer3``);
``"sequence"``, a study-level model over per-slice embeddings (:mod:`cadx.models.sequence`;
architecture ``gru-<hidden>`` or ``conv-<hidden>``, ``in_chans`` = the embedding length); and
``"mil"``, a multiple-instance model over a slide's tile features (:mod:`cadx.models.mil`;
architecture ``abmil`` or ``maxmil``, ``in_chans`` = the feature length); and ``"segmenter"``, a
segmentation-models-pytorch decoder on a timm encoder whose outputs are per-pixel logits
``(N, K, H, W)`` (:mod:`cadx.models.segmenter`; architecture ``unet-<timm name>`` or
``fpn-<timm name>``, ImageNet weights into the encoder). Every model carries a
:class:`~cadx.models.config.ModelConfig` (architecture, outputs, input size, mean, std, activation,
where its weights came from) as ``model.cadx_config``; checkpoints save it, so preprocessing is
never typed twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cadx.errors import ConfigError
from cadx.models.config import ModelConfig, TileSpec
from cadx.models.weights import (
    WeightsUnavailableError,
    builtin_weights_file,
    find_local_weights,
    how_to_provide,
    read_state_dict,
    rename_lukemelas_lite_keys,
)

__all__ = ["DEFAULT_ENCODER", "MODEL_KINDS", "RESNET50_TRUNC", "SUPPORTED_MODELS", "ModelConfig", "ModelKind",
           "TileSpec", "build_from_config", "create_model", "register_model_kind"]

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

#: Encoder name of CLAM's feature extractor: timm's ``resnet50`` cut after ``layer3``, global average
#: pool, 1024 features. Its weights are a ResNet-50 state dict (``layer4`` and ``fc`` are dropped).
RESNET50_TRUNC = "resnet50_trunc"

#: The encoder used when none is named: offline ImageNet weights ship for it, 1280 features.
DEFAULT_ENCODER = "tf_efficientnet_lite0"

#: What a kind's builder returns: the module (in train mode, on CPU) and where its weights came from.
Built = tuple[Any, str]


@dataclass(frozen=True)
class ModelKind:
    """A family of models the factory can build.

    Parameters
    ----------
    build : callable
        ``build(name, *, pretrained, num_classes, in_chans) -> (module, weights_source)``;
        ``pretrained`` is ``False``, ``"hub"`` or a :class:`~pathlib.Path`. The module must have
        timm's ``pretrained_cfg`` (mean, std, input size), ``forward_features`` and ``forward_head``.
    default_activation : str
        The activation a model of this kind gets when none is asked for.
    outputs : callable, optional
        ``outputs(module) -> K`` for kinds whose output count the architecture fixes (an encoder's
        feature length); ``None``: the ``num_classes`` asked for.
    weights_name : callable, optional
        ``weights_name(architecture) -> timm name`` whose offline ImageNet weights ``pretrained=True``
        looks up (a segmenter's encoder); ``None``: the architecture itself.
    """

    build: Callable[..., Built]
    default_activation: str
    outputs: Callable[[Any], int] | None = None
    weights_name: Callable[[str], str] | None = None


#: kind name -> :class:`ModelKind`. Add kinds with :func:`register_model_kind`.
MODEL_KINDS: dict[str, ModelKind] = {}


def register_model_kind(kind: str, build: Callable[..., Built], *, default_activation: str,
                        outputs: Callable[[Any], int] | None = None,
                        weights_name: Callable[[str], str] | None = None) -> None:
    """Make ``create_model(..., kind=kind)`` and checkpoints of that kind buildable (see :class:`ModelKind`)."""
    MODEL_KINDS[kind] = ModelKind(build=build, default_activation=default_activation, outputs=outputs,
                                  weights_name=weights_name)


def _kind(kind: str) -> ModelKind:
    if kind not in MODEL_KINDS:
        raise ConfigError(f"model config: unknown model kind {kind!r}; known kinds: {sorted(MODEL_KINDS)}")
    return MODEL_KINDS[kind]


def create_model(
    name: str,
    *,
    kind: str = "classifier",
    pretrained: bool | str | Path = False,
    num_classes: int = 2,
    in_chans: int = 3,
    input_size: int | None = None,
    class_names: tuple[str, ...] | None = None,
    activation: str | None = None,
) -> Any:
    """Build a model of ``kind`` on the timm backbone ``name``, optionally from ImageNet weights.

    Parameters
    ----------
    name : str
        timm architecture, e.g. ``tf_efficientnet_lite0``, ``resnet50``, ``inception_v3``.
    kind : str
        Entry of :data:`MODEL_KINDS`; ``"classifier"``: the backbone with a new ``num_classes`` head;
        ``"encoder"``: the frozen backbone (eval mode, no gradients) without a head, whose outputs
        (``predict`` and ``embed`` alike) are its D pooled features; ``name`` may also be
        :data:`RESNET50_TRUNC`. ``"segmenter"``: ``name`` is ``unet-<timm name>`` (or ``fpn-``),
        outputs are ``num_classes`` per-pixel maps (default activation ``sigmoid``), ImageNet
        weights (``pretrained``) go into the encoder.
    pretrained : bool, str or Path
        ``False``: random init. ``True``: offline ImageNet weights (packaged for
        ``tf_efficientnet_lite0``, else ``$CADX_WEIGHTS_DIR/<name>.pth``), an error if none.
        A path: that weights file (timm layout, ``.pth``/``.safetensors``). ``"hub"``: timm's hub
        download (needs network).
    num_classes : int
        Outputs K of the head (the ImageNet head is replaced after the weights load, unless K is 1000).
        Ignored for encoders: K is the feature length D.
    in_chans : int
        Input channels; pretrained RGB filters are spread over them (timm's ``adapt_input_conv``).
    input_size : int, optional
        Tile side in px the model will see (default: the architecture's own).
    class_names : tuple of str, optional
        One name per output.
    activation : {"softmax", "sigmoid", "none"}, optional
        Applied by predictors to the outputs; default: the kind's (``softmax`` for classifiers).
        Use ``sigmoid`` for multi-label and ``none`` for regression heads.

    Returns
    -------
    torch.nn.Module
        In train mode (an encoder: eval mode, no gradients), on CPU, with ``model.cadx_config``
        (:class:`ModelConfig`).

    Raises
    ------
    WeightsUnavailableError
        Pretrained weights asked for and not available, or they do not fit the architecture.
    ConfigError
        Unknown kind or architecture, or an invalid option (e.g. softmax with one output).

    Examples
    --------
    >>> m = create_model("resnet18", num_classes=3, activation="sigmoid", input_size=64)
    >>> c = m.cadx_config
    >>> c.architecture, c.num_classes, c.activation, c.input_size, c.weights
    ('resnet18', 3, 'sigmoid', 64, 'random')
    >>> e = create_model("resnet18", kind="encoder").cadx_config
    >>> e.kind, e.num_classes, e.activation
    ('encoder', 512, 'none')
    """
    spec = _kind(kind)
    activation = activation or spec.default_activation
    source: bool | str | Path = False
    if pretrained is True:
        lookup = spec.weights_name(name) if spec.weights_name is not None else name
        source = builtin_weights_file(lookup) or find_local_weights(lookup)
        if source is None:
            raise WeightsUnavailableError(how_to_provide(lookup))
    elif isinstance(pretrained, str) and pretrained == "hub":
        source = "hub"
    elif isinstance(pretrained, (str, Path)):
        source = Path(pretrained)
    model, weights = spec.build(name, pretrained=source, num_classes=num_classes, in_chans=in_chans)
    if spec.outputs is not None:
        num_classes = int(spec.outputs(model))
    cfg = model.pretrained_cfg
    model.cadx_config = ModelConfig(
        architecture=name,
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=int(input_size or cfg.get("input_size", (3, 224, 224))[-1]),
        mean=_per_channel(cfg.get("mean", (0.485, 0.456, 0.406)), in_chans),
        std=_per_channel(cfg.get("std", (0.229, 0.224, 0.225)), in_chans),
        weights=weights,
        class_names=tuple(class_names or ()),
        kind=kind,
        activation=activation,
    )
    log.info("built %s %s (%s, %d outputs, %s)", kind, name, weights, num_classes, activation)
    return model


def build_from_config(config: ModelConfig) -> Any:
    """An untrained model with the architecture of ``config`` (for loading a checkpoint into).

    Examples
    --------
    >>> m = build_from_config(ModelConfig("resnet18", 2, input_size=64))
    >>> m.cadx_config.architecture, m.get_classifier().out_features
    ('resnet18', 2)
    """
    model, _ = _kind(config.kind).build(config.architecture, pretrained=False, num_classes=config.num_classes,
                                        in_chans=config.in_chans)
    model.cadx_config = config
    return model


def _per_channel(values: Any, in_chans: int) -> tuple[float, ...]:
    """RGB statistics repeated over ``in_chans`` inputs (6 = two stacked RGB tiles)."""
    vals = [float(v) for v in values]
    return tuple(vals[i % len(vals)] for i in range(in_chans))


def _timm_classifier(name: str, *, pretrained: bool | str | Path, num_classes: int, in_chans: int) -> Built:
    """A timm backbone with a ``num_classes`` head; weights from nowhere, a local file or the hub.

    Local weights go through timm's own loader, selected by the public ``pretrained_cfg_overlay``:
    timm applies the architecture's checkpoint filter and adapts the first convolution to
    ``in_chans``. The model is first built with the head size of the weights, so timm loads them
    with ``strict=True`` (weights of another network fail loudly instead of half-loading); the head
    is replaced afterwards.

    The file is read here (:func:`~cadx.models.weights.read_state_dict`: ``weights_only=True`` or
    safetensors) and handed over as ``state_dict=`` (a field of timm's ``PretrainedCfg``, same loader
    as ``file=PATH``), not as ``file=PATH``, for two reasons. The packaged Lite weights use
    lukemelas's key names and must be renamed first: in memory, rather than as a renamed copy in a
    cache folder (a second file to invalidate and race on). And timm's file reader turns an
    unreadable or refused file and weights that do not fit into the same ``RuntimeError``, while
    users need to be told which of the two happened.
    """
    import timm
    import torch

    if not timm.is_model(name):
        raise ConfigError(f"model config: unknown architecture '{name}' (not a timm model name)")
    if pretrained is False:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans), "random"

    default_cfg = timm.models.get_pretrained_cfg(name)
    head = getattr(default_cfg, "num_classes", None) or 1000
    if pretrained == "hub":
        try:
            model = timm.create_model(name, pretrained=True, num_classes=head, in_chans=in_chans)
        except (OSError, RuntimeError, ValueError) as exc:  # offline, unknown repo, no weights for this tag
            raise WeightsUnavailableError(f"could not fetch '{name}' from the hub ({type(exc).__name__}); "
                                          + how_to_provide(name)) from None
        weights = f"hub:{model.pretrained_cfg.get('hf_hub_id') or name}"
    else:
        path = Path(pretrained)
        state = read_state_dict(path)  # WeightsUnavailableError when unreadable or holding code
        try:
            if any(k.startswith("_blocks.") for k in state):  # lukemelas layout (the packaged Lite weights)
                with torch.device("meta"):  # only the block layout is needed: no memory, no init
                    repeats = [len(stage) for stage in timm.create_model(name).blocks]
                state = rename_lukemelas_lite_keys(state, repeats)
            model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"state_dict": state},
                                      num_classes=head, in_chans=in_chans)
        except (RuntimeError, KeyError, AttributeError, IndexError) as exc:  # missing, unexpected, mis-shaped keys
            raise WeightsUnavailableError(f"{path}: does not fit timm's '{name}': {str(exc)[:300]}") from None
        weights = f"file:{path.name}"
    if num_classes != head:
        model.reset_classifier(num_classes)
    return model, weights


def _sequence_model(name: str, *, pretrained: bool | str | Path, num_classes: int, in_chans: int) -> Built:
    """Kind ``"sequence"``: :class:`cadx.models.sequence.StudySequenceModel` (imported when first built)."""
    from cadx.models.sequence import build_sequence_model

    return build_sequence_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans)


def _encoder(name: str, *, pretrained: bool | str | Path, num_classes: int, in_chans: int) -> Built:
    """Kind ``"encoder"``: a timm backbone without a head (or :data:`RESNET50_TRUNC`), frozen.

    ``num_classes`` is ignored: the outputs are the pooled features. Weights load as for a classifier
    (:func:`_timm_classifier`: strict, a clear error when they do not fit).
    """
    if name == RESNET50_TRUNC:
        model, weights = _resnet50_trunc(pretrained=pretrained, in_chans=in_chans)
    else:
        model, weights = _timm_classifier(name, pretrained=pretrained, num_classes=0, in_chans=in_chans)
    model.eval().requires_grad_(False)
    return model, weights


def _encoder_outputs(model: Any) -> int:
    """The length of ``forward_head(pre_logits=True)``: timm's ``head_hidden_size`` (or ``num_features``)."""
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def _resnet50_trunc(*, pretrained: bool | str | Path, in_chans: int) -> Built:
    """timm's ResNet-50 with ``layer4`` replaced by the identity: global average pool of ``layer3``, 1024-d.

    Weights: a ResNet-50 state dict (timm's and torchvision's share key names; ``layer4.*`` and
    ``fc.*`` are dropped, the rest must fit exactly), or the hub's ``resnet50.tv_in1k`` (the
    torchvision ImageNet weights CLAM uses).
    """
    import timm
    import torch

    hub = pretrained == "hub"
    try:
        model = timm.create_model("resnet50.tv_in1k" if hub else "resnet50", pretrained=hub, num_classes=0,
                                  in_chans=in_chans)
    except (OSError, RuntimeError, ValueError) as exc:  # offline, hub unreachable
        raise WeightsUnavailableError(f"could not fetch 'resnet50.tv_in1k' from the hub ({type(exc).__name__}); "
                                      + how_to_provide(RESNET50_TRUNC)) from None
    model.layer4 = torch.nn.Identity()
    model.num_features = model.head_hidden_size = 1024
    weights = "hub:timm/resnet50.tv_in1k" if hub else "random"
    if pretrained is not False and not hub:
        path = Path(pretrained)
        state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(("layer4.", "fc."))}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:  # missing, unexpected, mis-shaped keys
            raise WeightsUnavailableError(f"{path}: does not fit a ResNet-50 up to layer3: {str(exc)[:300]}") from None
        weights = f"file:{path.name}"
    return model, weights


def _mil_model(name: str, *, pretrained: bool | str | Path, num_classes: int, in_chans: int) -> Built:
    """Kind ``"mil"``: :mod:`cadx.models.mil` (gated attention or max pooling; imported when first built)."""
    from cadx.models.mil import build_mil_model

    return build_mil_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans)


def _segmenter(name: str, *, pretrained: bool | str | Path, num_classes: int, in_chans: int) -> Built:
    """Kind ``"segmenter"``: :mod:`cadx.models.segmenter` (smp decoder on a timm encoder; imported when first built)."""
    from cadx.models.segmenter import build_segmenter

    return build_segmenter(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans)


def _segmenter_encoder(name: str) -> str:
    """``unet-tf_efficientnet_lite0`` -> ``tf_efficientnet_lite0`` (whose offline weights the encoder takes)."""
    return name.partition("-")[2] or name


register_model_kind("classifier", _timm_classifier, default_activation="softmax")
register_model_kind("encoder", _encoder, default_activation="none", outputs=_encoder_outputs)
register_model_kind("sequence", _sequence_model, default_activation="sigmoid")
register_model_kind("mil", _mil_model, default_activation="softmax")
register_model_kind("segmenter", _segmenter, default_activation="sigmoid", weights_name=_segmenter_encoder)
