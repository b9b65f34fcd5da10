"""Predictors: uint8 tiles in, class probabilities out, from PyTorch or ONNX Runtime.

On CPU, ONNX Runtime runs these backbones 3-6x faster than eager PyTorch (shared/ENVIRONMENT.md);
on a GPU, PyTorch. The normalisation (mean, std) comes from the model's own config.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cadx.errors import CheckpointError
from cadx.models.checkpoint import load_checkpoint
from cadx.models.factory import ModelConfig
from cadx.preprocessing.augment import dihedral, to_model_input

log = logging.getLogger(__name__)


class Predictor(Protocol):
    """``predict_proba((N, H, W, 3) uint8) -> (N, num_classes) float32``."""

    config: ModelConfig

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray: ...


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _check_tiles(tiles: np.ndarray, config: ModelConfig) -> None:
    if tiles.ndim != 4 or tiles.shape[-1] != config.in_chans or tiles.dtype != np.uint8:
        raise ValueError(f"expected (N, H, W, {config.in_chans}) uint8 tiles, got {tiles.shape} {tiles.dtype}")


class TorchPredictor:
    """Eager PyTorch on CPU or CUDA."""

    def __init__(self, model: Any, *, device: str = "cpu") -> None:
        import torch

        self.model = model.eval().to(device)
        self.device = device
        self.config: ModelConfig = model.cadx_config
        self._torch = torch

    def logits(self, tiles: np.ndarray) -> np.ndarray:
        _check_tiles(tiles, self.config)
        x = self._torch.from_numpy(to_model_input(tiles, self.config.mean, self.config.std)).to(self.device)
        with self._torch.inference_mode():
            return self.model(x).float().cpu().numpy()

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        return _softmax(self.logits(tiles))


class OnnxPredictor:
    """ONNX Runtime on CPU (all cores by default)."""

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between ops: the tile-reader threads need those cycles. Measured on 2
        # cores: streaming throughput 96-101 % of model-only without spinning, 81-89 % with it.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise CheckpointError(self.path, f"not a loadable ONNX model ({type(exc).__name__})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "cadx_model" not in meta:
            raise CheckpointError(self.path, "ONNX file lacks cadx metadata (export it with cadx)")
        self.config = ModelConfig.from_dict(json.loads(meta["cadx_model"]))
        self._input = self.session.get_inputs()[0].name

    def logits(self, tiles: np.ndarray) -> np.ndarray:
        _check_tiles(tiles, self.config)
        x = to_model_input(tiles, self.config.mean, self.config.std)
        return self.session.run(None, {self._input: x})[0]

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        return _softmax(self.logits(tiles))


def export_onnx(model: Any, path: str | Path, *, input_size: int | None = None, opset: int = 17) -> Path:
    """Export to ONNX with a dynamic batch axis and the model config in the metadata."""
    import onnx
    import torch

    from cadx.io.atomic import atomic_path

    config: ModelConfig = model.cadx_config
    size = input_size or config.input_size
    model = model.eval().cpu()
    dummy = torch.zeros(1, config.in_chans, size, size)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, dummy, str(tmp), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                          dynamo=False)
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "cadx_model", json.dumps(config.to_dict())
        onnx.save(proto, str(tmp))
    return Path(path)


def tta_proba(predictor: Predictor, tiles: np.ndarray) -> np.ndarray:
    """Mean probabilities over the 8 dihedral transforms of each tile."""
    acc = None
    for k in range(8):
        p = predictor.predict_proba(np.stack([dihedral(t, k) for t in tiles]))
        acc = p if acc is None else acc + p
    return acc / 8.0


def load_predictor(checkpoint: str | Path, *, backend: str = "auto", device: str | None = None) -> tuple[Predictor, dict]:
    """A predictor for a checkpoint: ONNX Runtime on CPU, PyTorch on CUDA (``backend="auto"``).

    The ONNX file is exported once beside the checkpoint (``<name>.onnx``) and reused while newer.
    """
    import torch

    checkpoint = Path(checkpoint)
    model, meta = load_checkpoint(checkpoint)
    if backend == "auto":
        backend = "torch" if torch.cuda.is_available() else "onnx"
    if backend == "torch":
        return TorchPredictor(model, device=device or ("cuda" if torch.cuda.is_available() else "cpu")), meta
    if backend != "onnx":
        raise ValueError(f"backend must be auto, torch or onnx, got {backend!r}")
    onnx_path = checkpoint.with_suffix(".onnx")
    if not onnx_path.exists() or onnx_path.stat().st_mtime < checkpoint.stat().st_mtime:
        export_onnx(model, onnx_path)
    return OnnxPredictor(onnx_path), meta


# Shim until H1's predictor API lands: the names callers use from now on.
def predict_tta(predictor: Predictor, tiles: np.ndarray) -> np.ndarray:
    """Mean of ``predictor.predict`` over the 8 dihedral transforms (shim for H1's ``predict_tta``)."""
    return sum(predictor.predict(np.stack([dihedral(t, k) for t in tiles])) for k in range(8)) / 8.0


TorchPredictor.predict = TorchPredictor.predict_proba  # type: ignore[attr-defined]
OnnxPredictor.predict = OnnxPredictor.predict_proba  # type: ignore[attr-defined]
