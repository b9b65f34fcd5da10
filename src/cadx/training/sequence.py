"""Training a study-level sequence model on per-slice embeddings with :func:`cadx.training.loop.fit`.

A *study* here is a pair ``(embeddings, labels)``: ``embeddings`` ``(T, D)`` float, one row per slice
in slice order along the patient axis (from ``predictor.embed``), ``labels`` ``(T, K)`` in {0, 1}.
Studies are padded into batches (:func:`pad_studies`); the loss is a label-weighted binary cross
entropy over the real slices only (:func:`masked_bce`), with weight 2 for "any" in the RSNA task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import ConfigError
from cadx.models.factory import create_model
from cadx.models.sequence import sequence_architecture
from cadx.training.loop import FitResult, Phase, StepCallback, fit

__all__ = ["Study", "SequenceTrainConfig", "masked_bce", "pad_studies", "predict_studies", "train_sequence_model"]

log = logging.getLogger(__name__)

#: ``(embeddings (T, D) float, labels (T, K) {0, 1})`` of one study, slices in order.
Study = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class SequenceTrainConfig:
    """How :func:`train_sequence_model` trains.

    Attributes
    ----------
    kind : {"gru", "conv"}
        Sequence layer (see :class:`cadx.models.sequence.StudySequenceModel`).
    hidden : int
        Hidden width.
    steps : int
        Optimiser steps (one batch of studies each).
    lr : float
        Peak AdamW learning rate (cosine to 0).
    weight_decay : float
        AdamW weight decay.
    batch_studies : int
        Studies per batch.
    label_weights : tuple of float, optional
        Loss weight per label (RSNA: ``(1, 1, 1, 1, 1, 2)``); ``None``: all 1.
    eval_every : int
        Steps between validation evaluations.
    patience : int, optional
        Early stopping after this many evaluations without gain.
    seed : int
        Seeds the weights, batch order and dropout.
    """

    kind: str = "gru"
    hidden: int = 64
    steps: int = 300
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_studies: int = 16
    label_weights: tuple[float, ...] | None = None
    eval_every: int = 50
    patience: int | None = None
    seed: int = 0


def pad_studies(studies: Sequence[Study]) -> tuple[Any, Any, Any]:
    """Pad studies to the longest one.

    Returns
    -------
    x : torch.Tensor
        ``(B, T, D)`` float32, zeros after each study's last slice.
    y : torch.Tensor
        ``(B, T, K)`` float32.
    mask : torch.Tensor
        ``(B, T)`` bool, True on real slices.

    Raises
    ------
    ConfigError
        No studies, an empty study, or embeddings/labels of mismatched shapes.

    Examples
    --------
    >>> x, y, m = pad_studies([(np.ones((2, 3)), np.ones((2, 1))), (np.ones((1, 3)), np.zeros((1, 1)))])
    >>> tuple(x.shape), m.tolist(), float(x[1, 1].sum())
    ((2, 2, 3), [[True, True], [True, False]], 0.0)
    """
    import torch

    if not studies:
        raise ConfigError("sequence model: no studies")
    d, k = _check_study(studies[0], 0)
    t = max(len(s[0]) for s in studies)
    x = np.zeros((len(studies), t, d), np.float32)
    y = np.zeros((len(studies), t, k), np.float32)
    mask = np.zeros((len(studies), t), bool)
    for i, study in enumerate(studies):
        if _check_study(study, i) != (d, k):
            raise ConfigError(f"sequence model: study {i} has {_check_study(study, i)} (D, K), study 0 {(d, k)}")
        n = len(study[0])
        x[i, :n], y[i, :n], mask[i, :n] = study[0], study[1], True
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask)


def masked_bce(label_weights: Sequence[float] | None = None) -> Callable[[Any, Any], Any]:
    """``loss(logits (B, T, K), (y (B, T, K), mask (B, T)))``: weighted BCE averaged over real slices.

    Each slice's loss is ``sum_k w_k * bce_k / sum_k w_k`` (the RSNA weighted log loss of a slice);
    the batch loss is its mean over the slices where ``mask`` is True.

    Examples
    --------
    >>> import torch
    >>> loss = masked_bce([1.0, 3.0])
    >>> logits = torch.zeros(1, 2, 2); y = torch.tensor([[[1.0, 0.0], [5.0, 5.0]]])
    >>> round(float(loss(logits, (y, torch.tensor([[True, False]])))), 4)  # log 2; padded slice ignored
    0.6931
    """
    import torch

    weights = None if label_weights is None else torch.as_tensor(list(label_weights), dtype=torch.float32)

    def loss(logits: Any, targets: Any) -> Any:
        y, mask = targets
        per = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        w = torch.ones(per.shape[-1], device=per.device) if weights is None else weights.to(per.device)
        per_slice = (per * w).sum(-1) / w.sum()
        m = mask.to(per_slice.dtype)
        return (per_slice * m).sum() / m.sum().clamp(min=1.0)

    return loss


def train_sequence_model(
    train: Sequence[Study],
    val: Sequence[Study],
    *,
    config: SequenceTrainConfig | None = None,
    class_names: Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    on_step: StepCallback | None = None,
    device: str = "cpu",
) -> tuple[Any, FitResult]:
    """Train a :class:`~cadx.models.sequence.StudySequenceModel` on studies; best weights by val loss.

    Parameters
    ----------
    train, val : sequence of Study
        ``(embeddings (T, D), labels (T, K))`` per study; ``val`` picks the best weights
        (``val_loss``, the label-weighted log loss over all validation slices).
    config : SequenceTrainConfig, optional
    class_names : sequence of str, optional
        One per label, stored in the model config (RSNA: the five subtypes and ``any``).
    out_dir : str or Path, optional
        :func:`fit`'s resume folder.
    on_step : callable, optional
        Progress callback of :func:`fit`.
    device : str

    Returns
    -------
    model : torch.nn.Module
        In eval mode, sigmoid activation, ``cadx_config.kind == "sequence"``; save it with
        :func:`cadx.models.checkpoint.save_checkpoint`.
    result : FitResult
    """
    import torch

    cfg = config or SequenceTrainConfig()
    if not train or not val:
        raise ConfigError("sequence model: needs training and validation studies")
    d, k = _check_study(train[0], 0)
    torch.manual_seed(cfg.seed)
    model = create_model(sequence_architecture(cfg.kind, cfg.hidden), kind="sequence", in_chans=d, num_classes=k,
                         class_names=tuple(class_names) if class_names else None, activation="sigmoid")
    loss_fn = masked_bce(cfg.label_weights)
    vx, vy, vmask = pad_studies(val)

    def batches(start: int) -> Iterator[Any]:
        step = start
        while True:
            rng = np.random.default_rng([cfg.seed, step])
            pick = rng.choice(len(train), size=min(cfg.batch_studies, len(train)), replace=False)
            x, y, mask = pad_studies([train[i] for i in pick])
            yield (x, mask), (y, mask)
            step += 1

    def evaluate() -> dict[str, float]:
        logits = model((vx.to(device), vmask.to(device)))
        return {"val_loss": float(loss_fn(logits, (vy.to(device), vmask.to(device))))}

    result = fit(model, [Phase("sequence", cfg.steps, cfg.lr, trainable=None, weight_decay=cfg.weight_decay)],
                 loss_fn=loss_fn, batches=batches, evaluate=evaluate, monitor="val_loss", mode="min",
                 eval_every=cfg.eval_every, patience=cfg.patience, out_dir=out_dir, seed=cfg.seed, device=device,
                 on_step=on_step)
    log.info("sequence model: best %s", result.best)
    return model.eval(), result


def predict_studies(model: Any, studies: Sequence[np.ndarray | Study], *, batch_studies: int = 32,
                    device: str = "cpu") -> list[np.ndarray]:
    """Per-slice probabilities ``(T, K)`` float32 (sigmoid of the logits) for each study.

    ``studies`` holds embeddings ``(T, D)`` or ``(embeddings, labels)`` pairs (labels ignored).
    """
    import torch

    embs = [s[0] if isinstance(s, tuple) else s for s in studies]
    k = model.cadx_config.num_classes
    out: list[np.ndarray] = []
    model.eval().to(device)
    with torch.no_grad():
        for start in range(0, len(embs), batch_studies):
            chunk = embs[start:start + batch_studies]
            x, _, mask = pad_studies([(e, np.zeros((len(e), k), np.float32)) for e in chunk])
            p = torch.sigmoid(model((x.to(device), mask.to(device)))).cpu().numpy()
            out.extend(p[i, :len(e)].astype(np.float32) for i, e in enumerate(chunk))
    return out


def _check_study(study: Study, index: int) -> tuple[int, int]:
    emb, lab = np.asarray(study[0]), np.asarray(study[1])
    if emb.ndim != 2 or lab.ndim != 2 or len(emb) != len(lab) or len(emb) == 0:
        raise ConfigError(f"sequence model: study {index}: need embeddings (T, D) and labels (T, K) with the same "
                          f"T >= 1, got {emb.shape} and {lab.shape}")
    return emb.shape[1], lab.shape[1]
