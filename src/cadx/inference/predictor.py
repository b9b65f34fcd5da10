"""Predictors: uint8 tiles in, activated outputs or pooled features out, from PyTorch or ONNX Runtime.

One protocol, :class:`Predictor`: ``predict(x)`` returns the model's outputs after the config's
activation (softmax, sigmoid or none): ``(N, K)`` per tile, or ``(N, K, H, W)`` per pixel for a
segmenter (kind ``"segmenter"``, whose ``forward_features`` is the whole network and
``forward_head`` the identity), and ``embed(x)`` the pooled pre-logit features (timm's
``forward_head(pre_logits=True)``), e.g. for attention MIL. The input spec (channels, mean, std)
comes from the model's own :class:`~cadx.models.config.ModelConfig`.

On CPU, ONNX Runtime runs these backbones 3-6x faster than eager PyTorch (shared/ENVIRONMENT.md);
on a GPU, PyTorch. :func:`load_predictor` picks the backend and keeps an ONNX export beside the
checkpoint, tied to it by the checkpoint's SHA-256 (a stale or foreign ONNX file is re-exported).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cadx.errors import CheckpointError, ConfigError, require_extra
from cadx.io.digest import file_sha256
from cadx.models.config import ModelConfig
from cadx.models.device import resolve_device
from cadx.preprocessing.augment import dihedral, to_model_input

log = logging.getLogger(__name__)

#: ONNX metadata keys: the model config (JSON) and the SHA-256 of the checkpoint it was exported from.
META_MODEL = "cadx_model"
META_CHECKPOINT_SHA256 = "cadx_checkpoint_sha256"
#: ONNX graph outputs: raw outputs and pooled pre-logit features.
OUTPUTS = ("logits", "features")


class Predictor(Protocol):
    """What every predictor offers.

    ``predict((N, H, W, C) uint8) -> (N, K) float32`` after the config's activation (a segmenter:
    ``(N, K, H, W)``, the activation applied per pixel);
    ``embed((N, H, W, C) uint8) -> (N, D) float32`` pooled features before the head.
    """

    config: ModelConfig

    def predict(self, x: np.ndarray) -> np.ndarray: ...

    def embed(self, x: np.ndarray) -> np.ndarray: ...


def activate(z: np.ndarray, activation: str) -> np.ndarray:
    """Apply a config activation to raw outputs ``(N, K)`` or ``(N, K, H, W)`` (softmax over K); float32 out.

    Examples
    --------
    >>> z = np.array([[0.0, np.log(3.0)]])
    >>> activate(z, "softmax").round(3).tolist(), activate(z, "sigmoid").round(3).tolist()
    ([[0.25, 0.75]], [[0.5, 0.75]])
    >>> activate(z, "none").dtype
    dtype('float32')
    >>> activate(np.zeros((1, 2, 3, 3)), "softmax")[0, :, 1, 1].tolist()
    [0.5, 0.5]
    """
    z = np.asarray(z, np.float64)
    if activation == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        out = e / e.sum(axis=1, keepdims=True)
    elif activation == "sigmoid":
        out = 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic
    elif activation == "none":
        out = z
    else:
        raise ConfigError(f"model config: unknown activation {activation!r}")
    return out.astype(np.float32)


def model_input(x: np.ndarray, config: ModelConfig) -> np.ndarray:
    """The network input for ``x`` as the config's input spec describes it.

    Parameters
    ----------
    x : ndarray, (N, H, W, C) uint8
        Tiles, C = ``config.in_chans``.

    Returns
    -------
    ndarray, (N, C, H, W) float32
        Scaled to [0, 1] and normalised with the config's mean and std.

    Raises
    ------
    ValueError
        ``x`` is not ``(N, H, W, in_chans)`` uint8 (a caller's bug).
    """
    if x.ndim != 4 or x.shape[-1] != config.in_chans or x.dtype != np.uint8:
        raise ValueError(f"expected (N, H, W, {config.in_chans}) uint8 tiles, got {x.shape} {x.dtype}")
    return to_model_input(x, config.mean, config.std)


class TorchPredictor:
    """Eager PyTorch on CPU or CUDA.

    Parameters
    ----------
    model : torch.nn.Module
        A timm-style model with ``cadx_config``, ``forward_features`` and ``forward_head``.
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ...
    """

    def __init__(self, model: Any, *, device: str = "auto") -> None:
        import torch

        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.config: ModelConfig = model.cadx_config
        self._torch = torch

    def _run(self, x: np.ndarray, *, pre_logits: bool) -> np.ndarray:
        t = self._torch.from_numpy(model_input(x, self.config)).to(self.device)
        with self._torch.inference_mode():
            out = self.model.forward_head(self.model.forward_features(t), pre_logits=pre_logits)
        return out.float().cpu().numpy()

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw outputs ``(N, K)`` (a segmenter: ``(N, K, H, W)``) before the activation."""
        return self._run(x, pre_logits=False)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``(N, K)`` (a segmenter: ``(N, K, H, W)``) float32 after the config's activation."""
        return activate(self.logits(x), self.config.activation)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """``(N, D)`` float32 pooled features before the head."""
        return self._run(x, pre_logits=True)


class OnnxPredictor:
    """ONNX Runtime on CPU (all cores by default), for files written by :func:`export_onnx`.

    Parameters
    ----------
    path : str or Path
    threads : int, optional
        Intra-op threads (default: all cores).

    Raises
    ------
    CheckpointError
        Not a loadable ONNX model, or one without cadx metadata.
    """

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        ort = require_extra("onnxruntime", "onnx")

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
        #: The file's custom metadata (model config JSON, checkpoint SHA-256).
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        if META_MODEL not in self.metadata:
            raise CheckpointError(self.path, "ONNX file lacks cadx metadata (export it with cadx)")
        try:
            self.config = ModelConfig.from_dict(json.loads(self.metadata[META_MODEL]))
        except (ValueError, ConfigError) as exc:
            raise CheckpointError(self.path, f"bad cadx metadata in the ONNX file: {exc}") from None
        self._input = self.session.get_inputs()[0].name
        #: Graph outputs: ``logits`` and, for files from this cadx, ``features``.
        self.output_names = [o.name for o in self.session.get_outputs()]

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw outputs ``(N, K)`` (a segmenter: ``(N, K, H, W)``) before the activation."""
        return self.session.run([self.output_names[0]], {self._input: model_input(x, self.config)})[0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``(N, K)`` (a segmenter: ``(N, K, H, W)``) float32 after the config's activation."""
        return activate(self.logits(x), self.config.activation)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """``(N, D)`` float32 pooled features before the head."""
        if OUTPUTS[1] not in self.output_names:
            raise CheckpointError(self.path, "this ONNX file has no feature output; re-export it with cadx")
        return self.session.run([OUTPUTS[1]], {self._input: model_input(x, self.config)})[0]


def export_onnx(model: Any, path: str | Path, *, input_size: int | None = None, opset: int = 17,
                checkpoint_sha256: str | None = None) -> Path:
    """Export to ONNX (atomic) with outputs ``logits`` and ``features`` and a dynamic batch axis.

    Parameters
    ----------
    model : torch.nn.Module
        With ``cadx_config``; exported on CPU in eval mode.
    path : str or Path
    input_size : int, optional
        Side of the example input (default: the config's); the batch axis stays dynamic.
    opset : int
    checkpoint_sha256 : str, optional
        Recorded in the metadata, ties the file to the checkpoint it came from.
    """
    import torch

    from cadx.io.atomic import atomic_path

    onnx = require_extra("onnx", "onnx")

    config: ModelConfig = model.cadx_config
    size = input_size or config.input_size

    class _LogitsAndFeatures(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> tuple[Any, Any]:
            f = self.net.forward_features(x)
            return self.net.forward_head(f, pre_logits=False), self.net.forward_head(f, pre_logits=True)

    wrapper = _LogitsAndFeatures(model.eval().cpu()).eval()
    dummy = torch.zeros(1, config.in_chans, size, size)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, dummy, str(tmp), input_names=["input"], output_names=list(OUTPUTS),
                          dynamic_axes={"input": {0: "batch"}, **{o: {0: "batch"} for o in OUTPUTS}},
                          opset_version=opset, dynamo=False)
        proto = onnx.load(str(tmp))
        meta = {META_MODEL: json.dumps(config.to_dict())}
        if checkpoint_sha256:
            meta[META_CHECKPOINT_SHA256] = checkpoint_sha256
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp))
    return Path(path)


def predict_tta(predictor: Predictor, x: np.ndarray) -> np.ndarray:
    """Mean of ``predictor.predict`` over the 8 dihedral transforms (flips, rotations) of each tile.

    Per-pixel outputs ``(N, K, H, W)`` (a segmenter's) are transformed back before averaging, so
    each output pixel stays aligned with its input pixel.

    Parameters
    ----------
    predictor : Predictor
    x : ndarray, (N, H, W, C) uint8
        Square tiles.

    Returns
    -------
    ndarray, (N, K) or (N, K, H, W) float32
    """
    acc = None
    for k in range(8):
        p = predictor.predict(np.stack([dihedral(t, k) for t in x]))
        if p.ndim == 4:
            p = undo_dihedral_maps(p, k)
        acc = p if acc is None else acc + p
    return (acc / 8.0).astype(np.float32)


def undo_dihedral_maps(maps: np.ndarray, k: int) -> np.ndarray:
    """Map outputs ``(N, K, H, W)`` of tiles transformed by ``dihedral(tile, k)`` back to the tiles' frame.

    Examples
    --------
    >>> m = np.arange(4.0).reshape(1, 1, 2, 2)
    >>> all(np.array_equal(undo_dihedral_maps(dihedral(m[0, 0], k)[None, None], k), m) for k in range(8))
    True
    """
    out = np.moveaxis(maps, (2, 3), (0, 1))  # (H, W, N, K): dihedral acts on the first two axes
    if k >= 4:
        out = out[:, ::-1]
    out = np.rot90(out, -(k % 4), axes=(0, 1))
    return np.ascontiguousarray(np.moveaxis(out, (0, 1), (2, 3)))


def load_predictor(checkpoint: str | Path, *, backend: str = "auto",
                   device: str | None = None) -> tuple[Predictor, dict[str, Any]]:
    """A predictor for a checkpoint, and the checkpoint's metadata.

    Parameters
    ----------
    checkpoint : str or Path
        Written by :func:`cadx.models.checkpoint.save_checkpoint`.
    backend : {"auto", "torch", "onnx"}
        ``auto``: PyTorch when the device is CUDA, else ONNX Runtime on CPU.
    device : str, optional
        Torch device (default ``"auto"``: CUDA when present); the ONNX backend always runs on CPU.

    Returns
    -------
    predictor : Predictor
    meta : dict
        As :func:`cadx.models.checkpoint.load_checkpoint` returns it (``meta["tile"]``,
        ``meta["model"]``, ...: plain dicts), plus ``meta["checkpoint_sha256"]``: the SHA-256 of the
        checkpoint file, which identifies the weights (outputs record it, so that a rerun can tell
        whether they were made by the same model).

    Notes
    -----
    The ONNX backend uses ``<checkpoint>.onnx`` beside the checkpoint when its metadata records the
    checkpoint's SHA-256, and (re-)exports it otherwise: a stale, foreign or unreadable file there is
    replaced, never trusted by its modification time.
    """
    from cadx.models.checkpoint import load_checkpoint

    checkpoint = Path(checkpoint)
    device = resolve_device(device or "auto")
    model, meta = load_checkpoint(checkpoint)
    digest = file_sha256(checkpoint)
    meta["checkpoint_sha256"] = digest
    if backend == "auto":
        backend = "torch" if device.startswith("cuda") else "onnx"
    if backend == "torch":
        return TorchPredictor(model, device=device), meta
    if backend != "onnx":
        raise ValueError(f"backend must be auto, torch or onnx, got {backend!r}")
    return cached_onnx_predictor(model, checkpoint.with_suffix(".onnx"), digest=digest), meta


def cached_onnx_predictor(model: Any, onnx_path: str | Path, *, digest: str) -> OnnxPredictor:
    """An :class:`OnnxPredictor` for ``model`` from ``onnx_path``, exported there first unless already done.

    The file is used when its metadata records ``digest`` (what identifies the model's weights and
    config: a checkpoint's SHA-256) and it has the ``features`` output; a missing, stale, foreign or
    unreadable file is (re-)exported (:func:`export_onnx`, atomic), never trusted by its
    modification time.

    Parameters
    ----------
    model : torch.nn.Module
        With ``cadx_config``.
    onnx_path : str or Path
    digest : str
        Recorded as the file's ``cadx_checkpoint_sha256``.
    """
    onnx_path = Path(onnx_path)
    if onnx_path.exists():
        try:
            predictor = OnnxPredictor(onnx_path)
        except CheckpointError as exc:
            log.warning("re-exporting %s: %s", onnx_path, exc)
        else:
            if predictor.metadata.get(META_CHECKPOINT_SHA256) == digest and OUTPUTS[1] in predictor.output_names:
                return predictor
            log.info("re-exporting %s: it was not exported from this model", onnx_path)
    export_onnx(model, onnx_path, checkpoint_sha256=digest)
    return OnnxPredictor(onnx_path)

