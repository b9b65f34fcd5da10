"""Self-describing checkpoints: one file, one call to load.

A checkpoint holds the weights and everything needed to use them: the :class:`ModelConfig`
(architecture, classes, input size, mean, std, weight source), the tile specification (mpp, tile
size), the training configuration, metrics, and the cadx version.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any

from cadx import __version__
from cadx.errors import CheckpointError
from cadx.io.atomic import atomic_path
from cadx.models.factory import ModelConfig, build_from_config

FORMAT = "cadx-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(
    path: str | Path,
    model: Any,
    *,
    tile: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its description to ``path`` (atomic).

    Parameters
    ----------
    model : torch.nn.Module
        Built by :func:`cadx.models.factory.create_model` (has ``cadx_config``).
    tile : dict, optional
        How tiles were made: ``{"mpp": 0.5, "size_px": 128, ...}``.
    train_config, metrics, extra : dict, optional
        Recorded as given (training state for resuming goes in ``extra``).
    """
    import torch

    config: ModelConfig = model.cadx_config
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cadx_version": __version__,
        "created_unix": time.time(),
        "model": config.to_dict(),
        "tile": dict(tile or {}),
        "train_config": dict(train_config or {}),
        "metrics": dict(metrics or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dictionary, validated.

    Raises
    ------
    CheckpointError
        Missing file, not a torch file, or not a cadx checkpoint.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(path, f"not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(path, "not a cadx checkpoint (no 'format: cadx-checkpoint' record); "
                              "plain state dicts load with create_model(name, pretrained=PATH)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(path, f"written by a newer cadx (format {payload['format_version']})")
    return payload


def load_checkpoint(path: str | Path, *, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """Rebuild the model from a checkpoint.

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on ``device``, with ``cadx_config``.
    meta : dict
        Everything else in the checkpoint (tile spec, training config, metrics, ...).
    """
    payload = read_checkpoint(path)
    config = ModelConfig.from_dict(payload["model"])
    model = build_from_config(config)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(path, f"weights do not fit '{config.architecture}': {str(exc)[:200]}") from None
    model.eval().to(device)
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, meta
