"""Fine-tune a per-slice head-CT haemorrhage classifier on an RSNA 2019 folder.

The recipe: slices split by *patient* with multi-label stratification (never one patient on both
sides); each slice windowed in HU (brain, subdural, bone by default) and, for 2.5D, stacked with its
neighbours in the series; a sigmoid multi-label model from the factory with six outputs in
:data:`~cadx.tasks.rsna_ich.layout.SUBTYPES` order; binary cross-entropy weighted 2 for ``any`` and 1
per subtype (the competition's metric as the loss); a head-only warm-up then fine-tuning of the last
stages on :func:`cadx.training.loop.fit`; the best weights by validation weighted log loss. The input
recipe is recorded in the checkpoint (``extra["ct_input"]``) for prediction.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, field_validator
from pydantic.dataclasses import dataclass

from cadx.datasets.ct_slices import CtSliceDataset, HorizontalFlip, context_indices
from cadx.datasets.images import sample_stream
from cadx.io.atomic import atomic_path
from cadx.metrics.classification import roc_auc
from cadx.metrics.multilabel import RSNA_WEIGHTS, per_label_log_loss, weighted_log_loss
from cadx.models.checkpoint import save_checkpoint
from cadx.models.device import resolve_device
from cadx.models.factory import create_model
from cadx.preprocessing.ct_window import DEFAULT_WINDOWS
from cadx.tasks.rsna_ich.layout import SUBTYPES, CtImages, is_rsna_layout, patient_split, read_rsna_data
from cadx.training.config import (
    CONFIG_DICT,
    ModelTrainConfig,
)
from cadx.training.loop import FitResult, fit
from cadx.training.recipe import TqdmProgress, phases_for

log = logging.getLogger(__name__)

#: The validation metric that picks the best weights and stops training early (lower is better).
MONITOR = "val_weighted_log_loss"
#: Slice inputs are kept in memory when they take at most this many bytes (all copies).
CACHE_BYTES = 2 * 1024**3


@dataclass(config=CONFIG_DICT)
class CtTrainConfig(ModelTrainConfig):
    """Everything a head-CT training run depends on (validated on creation, saved in the checkpoint).

    Attributes
    ----------
    data_dir : str
        The RSNA 2019 layout: ``stage_2_train.csv`` and ``stage_2_train/ID_*.dcm``.
    out_dir : str
        Where ``model.pt``, ``last.pt``, ``history.json`` and ``split.csv`` go.
    model : str
        timm architecture: ``tf_efficientnet_lite0`` (offline weights), ``resnet50``,
        ``tf_efficientnet_b4`` (the original project's; give their weights as ``pretrained``).
    pretrained : bool or str
        See :func:`cadx.models.factory.create_model`.
    image_size : int
        Side in px of the square the model sees (slices are resampled to it).
    windows : list of [centre, width]
        HU windows, one input channel each per context slice (default brain 40/80, subdural 80/200,
        bone 600/2800).
    context_slices : {0, 1}
        2.5D: neighbours on each side added as channels (sorted by position within the series).
    crop : {"head", "none"}
        ``head``: each slice is cut to the square around the head before resizing (the head fills the
        input instead of about two thirds of it); ``none``: the whole field of view.
    batch_size : int
    warmup_steps, lr_head : int, float
        Head-only warm-up: steps and peak learning rate.
    finetune_steps, lr : int, float
        Fine-tuning of the last ``trainable_blocks`` stages.
    trainable_blocks : int
        See :func:`cadx.training.freeze.set_trainable` (-1: all, 0: the head only).
    weight_decay : float
    val_fraction : float
        Fraction of patients held out for validation.
    eval_every, patience : int
        Steps between validation evaluations; evaluations without a gain that end fine-tuning.
    flip : bool
        Random left-right flips while training.
    seed : int
    device : str
        ``auto``, ``cpu``, ``cuda``, ...
    num_workers : int
        DataLoader worker processes.
    resume : bool
        Continue from ``out_dir/last.pt`` when it exists.
    """

    data_dir: str
    out_dir: str
    model: str = "tf_efficientnet_lite0"
    pretrained: bool | str = True
    image_size: Annotated[int, Field(ge=16)] = 256
    windows: list[tuple[float, Annotated[float, Field(gt=0)]]] = Field(
        default_factory=lambda: [tuple(w) for w in DEFAULT_WINDOWS])
    context_slices: Annotated[int, Field(ge=0, le=1)] = 0
    crop: Literal["none", "head"] = "head"
    batch_size: PositiveInt = 32
    warmup_steps: NonNegativeInt = 50
    finetune_steps: NonNegativeInt = 300
    trainable_blocks: Annotated[int, Field(ge=-1)] = 2
    lr_head: PositiveFloat = 2e-3
    lr: PositiveFloat = 5e-4
    weight_decay: NonNegativeFloat = 1e-4
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    eval_every: PositiveInt = 25
    patience: PositiveInt = 4
    flip: bool = True
    seed: int = 0
    device: str = "auto"
    num_workers: NonNegativeInt = 2
    resume: bool = True

    @field_validator("data_dir")
    @classmethod
    def _layout(cls, value: str) -> str:
        if not Path(value).is_dir():
            raise ValueError(f"no such folder: {value}")
        if not is_rsna_layout(value):
            raise ValueError(f"{value} is not the RSNA 2019 layout (no stage_2_train.csv)")
        return value

    @field_validator("windows")
    @classmethod
    def _some_windows(cls, value: list) -> list:
        if not value:
            raise ValueError("needs at least one [centre, width] window")
        return value




    def ct_input(self) -> dict[str, Any]:
        """The input recipe recorded in the checkpoint (``extra["ct_input"]``), plain types."""
        return {"windows": [[float(c), float(w)] for c, w in self.windows],
                "context_slices": int(self.context_slices), "image_size": int(self.image_size), "crop": self.crop}


def weighted_bce(weights: tuple[float, ...] = RSNA_WEIGHTS) -> Any:
    """``loss(logits (N, K), targets (N, K))``: per-column BCE weighted like the metric, ``sum(w * bce) / sum(w)``.

    Examples
    --------
    >>> import torch
    >>> loss = weighted_bce()
    >>> round(float(loss(torch.zeros(2, 6), torch.ones(2, 6))), 4)  # ln 2
    0.6931
    """
    import torch

    w = torch.as_tensor(weights, dtype=torch.float32)

    def loss(logits: Any, targets: Any) -> Any:
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets.float(), reduction="none")
        ww = w.to(bce.device)
        return (bce * ww).sum(dim=1).mean() / ww.sum()

    return loss


def validation_outputs(model: Any, dataset: CtSliceDataset, *, device: str = "cpu",
                       batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid probabilities ``(N, 6)`` and labels ``(N, 6)`` of every item of ``dataset`` (call under no_grad)."""
    import torch
    from torch.utils.data import DataLoader

    probs, labels = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, num_workers=0):
        probs.append(torch.sigmoid(model(x.to(device)).float()).cpu().numpy())
        labels.append(y.numpy())
    if not probs:
        return np.zeros((0, 6)), np.zeros((0, 6))
    return np.concatenate(probs).astype(np.float64), np.concatenate(labels).astype(np.float64)


def validation_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Weighted log loss (the monitor), per-label log loss and ``any`` AUC (NaN when undefined).

    Examples
    --------
    >>> y = np.zeros((2, 6)); y[0, 5] = 1
    >>> m = validation_metrics(np.full((2, 6), 0.5), y)
    >>> round(m["val_weighted_log_loss"], 4), m["val_any_auc"]
    (0.6931, 0.5)
    """
    ll = per_label_log_loss(labels, probs)
    y_any = labels[:, 5].astype(int)
    auc = roc_auc(y_any, probs[:, 5]) if 0 < y_any.sum() < y_any.size else float("nan")
    return {MONITOR: weighted_log_loss(labels, probs), "val_any_auc": float(auc),
            **{f"val_ll_{name}": float(v) for name, v in zip(SUBTYPES, ll, strict=True)},
            "val_images": int(len(labels))}


def write_split_csv(path: str | Path, data: CtImages, train_idx: np.ndarray, val_idx: np.ndarray) -> Path:
    """``image,patient,study,any,split`` per slice (``split``: ``train`` or ``val``), in data order."""
    side = {int(i): "train" for i in train_idx} | {int(i): "val" for i in val_idx}
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "patient", "study", "any", "split"])
        for i in sorted(side):
            w.writerow([data.image_ids[i], data.patients[i], data.studies[i], int(data.labels[i, 5]), side[i]])
    return Path(path)


def train_ct(cfg: CtTrainConfig, *, show_progress: bool = True) -> Path:
    """Split by patient, train, and write the best checkpoint.

    Returns
    -------
    Path
        ``out_dir/model.pt`` (lowest validation weighted log loss) with ``extra["ct_input"]``
        (``windows``, ``context_slices``, ``image_size``); beside it ``history.json``, ``split.csv``,
        ``last.pt``.

    Raises
    ------
    InputFileError
        A CSV problem or a listed slice without its file (named).
    CadxError
        An unreadable DICOM header or slice (named).
    ConfigError
        Fewer than two patients.
    """
    import torch
    from torch.utils.data import DataLoader

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    data = read_rsna_data(cfg.data_dir)
    train_idx, val_idx = patient_split(data.labels, data.patients, val_fraction=cfg.val_fraction, seed=cfg.seed)
    write_split_csv(out / "split.csv", data, train_idx, val_idx)
    log.info("%d training, %d validation slices (%d / %d patients)", len(train_idx), len(val_idx),
             len({data.patients[i] for i in train_idx}), len({data.patients[i] for i in val_idx}))
    context = context_indices(data.series, data.z_mm, cfg.context_slices)
    in_chans = len(cfg.windows) * (2 * cfg.context_slices + 1)
    model = create_model(cfg.model, pretrained=cfg.pretrained, num_classes=len(SUBTYPES), in_chans=in_chans,
                         input_size=cfg.image_size, class_names=SUBTYPES, activation="sigmoid")
    mc = model.cadx_config
    cache = len(data) * cfg.image_size**2 * in_chans * (cfg.num_workers + 1) <= CACHE_BYTES

    def dataset(idx: np.ndarray, transform: Any) -> CtSliceDataset:
        # contexts index into the full list, so every slice of a series stays reachable
        return CtSliceDataset(data.paths, data.labels, context=context, windows=cfg.windows,
                              image_size=cfg.image_size, mean=mc.mean, std=mc.std, transform=transform,
                              seed=cfg.seed, cache=cache, crop=cfg.crop)

    train_ds = dataset(train_idx, HorizontalFlip() if cfg.flip else None)
    val_ds = torch.utils.data.Subset(dataset(val_idx, None), val_idx.tolist())
    total = cfg.warmup_steps + cfg.finetune_steps
    stream = sample_stream(np.zeros(len(train_idx), np.int64), num_samples=max(total, 1) * cfg.batch_size,
                           seed=cfg.seed, balanced=False)
    items = [(int(train_idx[i]), d) for d, i in enumerate(stream)]

    def batches(start_step: int) -> Any:
        return DataLoader(train_ds, batch_size=cfg.batch_size, sampler=items[start_step * cfg.batch_size:],
                          num_workers=cfg.num_workers)

    def evaluate() -> dict[str, Any]:
        return validation_metrics(*validation_outputs(model, val_ds, device=device))

    progress = TqdmProgress(monitor=MONITOR, details={"auc": "val_any_auc"}, disable=not show_progress)
    try:
        result: FitResult = fit(
            model, phases_for(cfg), loss_fn=weighted_bce(), batches=batches, evaluate=evaluate, monitor=MONITOR,
            mode="min", eval_every=cfg.eval_every, patience=cfg.patience, out_dir=out, resume=cfg.resume,
            seed=cfg.seed, device=device, batchnorm_eval=cfg.pretrained is not False, on_step=progress)
        if result.stopped_early:
            progress.write(f"early stop at step {result.steps}: no log-loss gain in {cfg.patience} evaluations")
    finally:
        progress.close()

    metrics = {**result.best, "train_slices": int(len(train_idx)), "val_slices": int(len(val_idx)),
               "train_patients": len({data.patients[i] for i in train_idx}),
               "val_patients": len({data.patients[i] for i in val_idx}), "device": device}
    path = save_checkpoint(out / "model.pt", model, train_config=_plain(asdict(cfg)), metrics=metrics,
                           extra={"ct_input": cfg.ct_input()})
    with atomic_path(out / "history.json") as tmp:
        tmp.write_text(json.dumps(result.history, indent=2))
    return path


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively (checkpoint metadata holds plain types)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
