"""Self-describing checkpoints: one file, one call to load, no code inside.

A checkpoint holds the weights and everything needed to use them: the :class:`ModelConfig`
(architecture, outputs, activation, input size, mean, std, weight source), the tile specification
(mpp, tile size), the training configuration, metrics, and the cadx version.

Checkpoints are read with ``torch.load(weights_only=True)`` only: tensors and plain data (str, int,
float, bool, None, list, tuple, dict). A file that carries any other Python object (a pickle
payload can run code the moment it is unpickled) is refused with :class:`CheckpointError`, and the
payload never runs. :func:`save_checkpoint` therefore writes plain types only.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np

from cadx import __version__
from cadx.errors import CheckpointError
from cadx.io.atomic import atomic_path
from cadx.models.config import ModelConfig, TileSpec
from cadx.models.factory import build_from_config

FORMAT = "cadx-checkpoint"
#: 2: ModelConfig gained kind / activation / input; metadata is plain data (weights-only loadable).
FORMAT_VERSION = 2
_RESERVED = ("format", "format_version", "cadx_version", "created_unix", "model", "tile", "train_config",
             "metrics", "state_dict")


def save_checkpoint(
    path: str | Path,
    model: Any,
    *,
    tile: dict[str, Any] | TileSpec | None = None,
    train_config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its description to ``path`` (atomic).

    Parameters
    ----------
    path : str or Path
        Output file (``.pt``).
    model : torch.nn.Module
        Built by :func:`cadx.models.factory.create_model` (has ``cadx_config``).
    tile : dict or TileSpec, optional
        How tiles were made: ``{"mpp": 0.5, "size_px": 128, ...}``, validated as a
        :class:`~cadx.models.config.TileSpec` and stored with all its fields.
    train_config, metrics : dict, optional
        Recorded as plain data (paths become strings, tuples lists, numpy scalars numbers).
    extra : dict, optional
        Further top-level entries, e.g. training state for resuming; may hold tensors (an optimizer's
        ``state_dict()``).

    Returns
    -------
    Path

    Raises
    ------
    ConfigError
        ``tile`` is not a valid tile spec.
    TypeError
        A value is not plain data (a bug in the caller: it would not load with ``weights_only``).
    """
    import torch

    config: ModelConfig = model.cadx_config
    if isinstance(tile, dict):
        tile = TileSpec.from_dict(tile)
    clash = sorted(set(extra or {}) & set(_RESERVED))
    if clash:
        raise ValueError(f"extra must not overwrite checkpoint entries {clash}")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cadx_version": __version__,
        "created_unix": time.time(),
        "model": config.to_dict(),
        "tile": tile.to_dict() if tile is not None else {},
        "train_config": _plain(train_config or {}, "train_config"),
        "metrics": _plain(metrics or {}, "metrics"),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **_plain(extra or {}, "extra", tensors=True),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dictionary, validated, read without running any code.

    Raises
    ------
    CheckpointError
        Missing file, not a torch file, a file holding Python objects beyond tensors and plain data
        (refused unread), or not a cadx checkpoint.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc).lower():
            raise CheckpointError(path, "refused: it holds Python objects other than tensors and plain data, which "
                                  "could run code when loaded; cadx only loads checkpoints written by "
                                  "cadx.models.checkpoint.save_checkpoint") from None
        raise CheckpointError(path, f"not a readable checkpoint ({type(exc).__name__})") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(path, f"not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(path, "not a cadx checkpoint (no 'format: cadx-checkpoint' record); "
                              "plain state dicts load with create_model(name, pretrained=PATH)")
    version = payload.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(path, f"written by a newer cadx (format {version!r})")
    if not isinstance(payload.get("model"), dict) or not isinstance(payload.get("state_dict"), dict):
        raise CheckpointError(path, "incomplete cadx checkpoint (no model config or no weights)")
    return payload


def load_checkpoint(path: str | Path, *, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """Rebuild the model from a checkpoint.

    Parameters
    ----------
    path : str or Path
    device : str
        Torch device for the model (``"cpu"``, ``"cuda"``, ...).

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on ``device``, with ``cadx_config``.
    meta : dict
        Everything else in the checkpoint, as plain data: ``meta["model"]`` (the full model config,
        defaults filled in for older files), ``meta["tile"]``, ``meta["train_config"]``,
        ``meta["metrics"]``, ``meta["cadx_version"]`` and any ``extra`` entries.

    Raises
    ------
    CheckpointError
        See :func:`read_checkpoint`; also when the config is invalid or the weights do not fit it.
    """
    from cadx.errors import ConfigError

    payload = read_checkpoint(path)
    try:
        config = ModelConfig.from_dict(payload["model"])
    except ConfigError as exc:
        raise CheckpointError(path, str(exc)) from None
    model = build_from_config(config)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(path, f"weights do not fit '{config.architecture}': {str(exc)[:200]}") from None
    model.eval().to(device)
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    meta["model"] = config.to_dict()
    return model, meta


def _plain(value: Any, where: str, *, tensors: bool = False) -> Any:
    """``value`` as data ``torch.load(weights_only=True)`` accepts; TypeError naming ``where`` otherwise."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (ModelConfig, TileSpec)):
        return value.to_dict()
    if callable(getattr(value, "model_dump", None)):  # a pydantic model, e.g. a training config
        return _plain(value.model_dump(), where, tensors=tensors)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value), where, tensors=tensors)
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, (str, int))]
        if bad:
            raise TypeError(f"{where}: keys must be str or int, got {bad[:3]!r}")
        return {k: _plain(v, f"{where}.{k}", tensors=tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]", tensors=tensors) for i, v in enumerate(value)]
        return tuple(items) if tensors and isinstance(value, tuple) else items
    if tensors:
        import torch

        if isinstance(value, torch.Tensor):
            return value.detach().cpu()
    raise TypeError(f"{where}: {type(value).__name__} is not plain data (str, int, float, bool, None, list, dict"
                    f"{', tensor' if tensors else ''}); convert it before saving")
