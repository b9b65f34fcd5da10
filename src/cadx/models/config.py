"""What travels with a model: how to build it, how to feed it, how to read its outputs.

:class:`ModelConfig` is saved in every checkpoint and every exported ONNX file, so preprocessing
(mean, std, channels) and the output activation are never typed twice. :class:`TileSpec` records
how the tiles a tile model was trained on were cut from the slides. Both are frozen, validated on
construction, and convert to and from plain dictionaries (str, int, float, bool, None, list, dict)
for JSON and ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from cadx.errors import ConfigError

#: Output activations: ``softmax`` (one label per input), ``sigmoid`` (independent labels, multi-label),
#: ``none`` (raw outputs, e.g. regression).
ACTIVATIONS = ("softmax", "sigmoid", "none")

#: Input kinds a predictor knows how to feed: ``rgb_tile`` is ``(N, H, W, C)`` uint8 with C = ``in_chans``
#: (3, or 6 for a tile stacked with its context tile).
INPUTS = ("rgb_tile",)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class ModelConfig:
    """How to build a model and how to feed it.

    Parameters
    ----------
    architecture : str
        timm architecture name, e.g. ``"tf_efficientnet_lite0"``.
    num_classes : int
        Number of outputs K of the head.
    in_chans : int
        Input channels (3 for RGB; 6 for a tile stacked with its context tile).
    input_size : int
        Side in px of the square input the model was built or trained for.
    mean, std : tuple of float
        Per-channel normalisation of inputs scaled to [0, 1]; one value per input channel.
    weights : str
        Where the initial weights came from: ``"random"``, ``"file:<name>"``, ``"hub:<id>"``.
    class_names : tuple of str
        Empty, or one name per output.
    kind : str
        Model family in the factory's registry (``"classifier"``).
    activation : {"softmax", "sigmoid", "none"}
        Applied by predictors to the raw outputs: ``softmax`` for single-label classifiers (the
        CAMELYON tumour/normal tile classifier), ``sigmoid`` for multi-label heads, ``none`` for
        regression.
    input : str
        What the model takes (see :data:`INPUTS`).

    Raises
    ------
    ConfigError
        A field has the wrong type or value.

    Examples
    --------
    >>> c = ModelConfig("resnet18", 3, activation="sigmoid", class_names=("a", "b", "c"))
    >>> ModelConfig.from_dict(c.to_dict()) == c
    True
    >>> c.to_dict()["class_names"]
    ['a', 'b', 'c']
    >>> ModelConfig("resnet18", 1, activation="softmax")
    Traceback (most recent call last):
    ...
    cadx.errors.ConfigError: model config: softmax needs num_classes >= 2 (got 1); use sigmoid or none
    """

    architecture: str
    num_classes: int
    in_chans: int = 3
    input_size: int = 224
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    weights: str = "random"
    class_names: tuple[str, ...] = field(default_factory=tuple)
    kind: str = "classifier"
    activation: str = "softmax"
    input: str = "rgb_tile"

    def __post_init__(self) -> None:
        # Lists from JSON become tuples, so equality and hashing do not depend on the source.
        for name in ("mean", "std", "class_names"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(value))
        _check(isinstance(self.architecture, str) and self.architecture, "architecture must be a non-empty string")
        for name in ("num_classes", "in_chans", "input_size"):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                   f"{name} must be a positive integer (got {value!r})")
        for name in ("mean", "std"):
            value = getattr(self, name)
            _check(isinstance(value, tuple) and len(value) == self.in_chans and all(map(_is_number, value)),
                   f"{name} must hold one number per input channel ({self.in_chans}), got {value!r}")
        _check(all(s > 0 for s in self.std), f"std must be positive (got {self.std!r})")
        _check(all(isinstance(n, str) for n in self.class_names)
               and len(self.class_names) in (0, self.num_classes),
               f"class_names must be empty or {self.num_classes} strings (got {self.class_names!r})")
        _check(self.activation in ACTIVATIONS, f"activation must be one of {ACTIVATIONS} (got {self.activation!r})")
        _check(self.activation != "softmax" or self.num_classes >= 2,
               f"softmax needs num_classes >= 2 (got {self.num_classes}); use sigmoid or none")
        _check(self.input in INPUTS, f"input must be one of {INPUTS} (got {self.input!r})")
        for name in ("weights", "kind"):
            _check(isinstance(getattr(self, name), str) and getattr(self, name),
                   f"{name} must be a non-empty string")

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (tuples become lists), ready for JSON or a weights-only checkpoint."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; fields missing from older files take their defaults.

        Raises
        ------
        ConfigError
            Unknown keys, a missing required key, or invalid values.
        """
        return cls(**_known_fields(cls, d, "model config"))


@dataclass(frozen=True)
class TileSpec:
    """How the tiles of a tile model are cut from a slide.

    Parameters
    ----------
    mpp : float
        Resolution of the tiles in micrometres per pixel.
    size_px : int
        Tile side in pixels at ``mpp``.
    context_mpp : float, optional
        Resolution of the context tile stacked on the channels (same centre and size in px), if any.
    min_tissue : float
        Smallest tissue fraction of a tile that is kept, in [0, 1].
    label_rule : str
        The tile labelling rule used for training, in words (recorded, not interpreted).

    Examples
    --------
    >>> t = TileSpec(mpp=0.5, size_px=128)
    >>> t.to_dict()
    {'mpp': 0.5, 'size_px': 128, 'context_mpp': None, 'min_tissue': 0.5, 'label_rule': ''}
    >>> TileSpec.from_dict({"mpp": 0.5, "size_px": 128}) == t
    True
    """

    mpp: float
    size_px: int
    context_mpp: float | None = None
    min_tissue: float = 0.5
    label_rule: str = ""

    def __post_init__(self) -> None:
        what = "tile spec"
        _check(_is_number(self.mpp) and self.mpp > 0, f"mpp must be a positive number (got {self.mpp!r})", what)
        _check(isinstance(self.size_px, int) and not isinstance(self.size_px, bool) and self.size_px >= 1,
               f"size_px must be a positive integer (got {self.size_px!r})", what)
        _check(self.context_mpp is None or (_is_number(self.context_mpp) and self.context_mpp > 0),
               f"context_mpp must be a positive number or null (got {self.context_mpp!r})", what)
        _check(_is_number(self.min_tissue) and 0 <= self.min_tissue <= 1,
               f"min_tissue must be in [0, 1] (got {self.min_tissue!r})", what)
        _check(isinstance(self.label_rule, str), "label_rule must be a string", what)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TileSpec:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ConfigError
            Unknown keys, a missing ``mpp`` or ``size_px``, or invalid values.
        """
        return cls(**_known_fields(cls, d, "tile spec"))


def _check(ok: Any, problem: str, what: str = "model config") -> None:
    if not ok:
        raise ConfigError(f"{what}: {problem}")


def _known_fields(cls: type, d: Any, what: str) -> dict[str, Any]:
    _check(isinstance(d, dict), f"expected a mapping, got {type(d).__name__}", what)
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    _check(not unknown, f"unknown keys {unknown}", what)
    missing = [f.name for f in fields(cls)
               if f.name not in d and f.default is MISSING and f.default_factory is MISSING]
    _check(not missing, f"missing keys {missing}", what)
    return dict(d)
