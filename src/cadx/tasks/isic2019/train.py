"""Fine-tune a dermoscopy classifier on an ISIC 2019 (or folder-per-class) directory.

The recipe: images split by *lesion* (never one lesion on both sides), stratified by class;
preprocessing recorded in the checkpoint (dark-border crop, Shades-of-Gray colour constancy, resize
and centre crop: :class:`~cadx.preprocessing.images.ImagePreprocess`); flips, rotations and colour
jitter as the training transform; class-balanced sampling or a class-weighted loss (NV dominates
real ISIC); a head-only warm-up then fine-tuning of the last stages on the generic
:func:`cadx.training.loop.fit`; early stopping on the validation balanced accuracy (the ISIC 2019
metric); a temperature fitted on the validation logits so the probabilities can be trusted.
"""

from __future__ import annotations

import csv
import json
import logging
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
)
from pydantic.dataclasses import dataclass

from cadx.datasets.images import ImageDataset, sample_stream
from cadx.datasets.splits import grouped_stratified_split
from cadx.errors import CadxError, ConfigError
from cadx.io.atomic import atomic_path, prepare_output_folder
from cadx.metrics.calibration import fit_temperature
from cadx.models.checkpoint import save_checkpoint
from cadx.models.device import resolve_device
from cadx.models.factory import create_model
from cadx.parallel.jobs import map_jobs
from cadx.preprocessing.augment import ImageAugment
from cadx.preprocessing.images import ImagePreprocess
from cadx.tasks.isic2019.layout import DermImages, is_isic_layout, isic_classes, parse_classes, read_derm_data
from cadx.training.config import (
    CONFIG_DICT,
    ModelTrainConfig,
)
from cadx.training.loop import RESUME_FILE, FitResult, fit, read_resume_file
from cadx.training.recipe import TqdmProgress, phases_for

log = logging.getLogger(__name__)

#: The validation metric that picks the best weights and stops training early.
MONITOR = "val_balanced_accuracy"
#: Preprocessed images are kept in memory when they take at most this many bytes (all copies).
CACHE_BYTES = 2 * 1024**3


@dataclass(config=CONFIG_DICT)
class DermTrainConfig(ModelTrainConfig):
    """Everything a dermoscopy training run depends on (validated on creation, saved in the checkpoint).

    Invalid values (wrong type, out of range, unknown key, a ``data_dir`` that is neither layout,
    classes the ISIC layout does not have, a missing weights file, an architecture timm does not
    know) raise :class:`~cadx.errors.ConfigError` before any work starts.

    Attributes
    ----------
    data_dir : str
        The ISIC 2019 layout (``ISIC_2019_Training_GroundTruth.csv``, ``ISIC_2019_Training_Input/``,
        optionally ``ISIC_2019_Training_Metadata.csv`` for lesion ids) or one folder per class.
    out_dir : str
        Where the best checkpoint ``model.pt``, the resume file ``last.pt``, ``history.json`` and
        ``split.csv`` (each image's lesion, class and side of the split) go.
    classes : str or list of str
        Class codes (``"MEL,NV,BCC"``, the original project's three) or ``"all"``: the eight
        diagnostic ISIC classes (UNK is never trained), or every sub-folder in the folder layout.
        The model's outputs follow this order.
    model : str
        timm architecture: ``tf_efficientnet_lite0`` (ImageNet weights ship with cadx),
        ``mobilenetv2_100`` (the original project; give its weights file as ``pretrained``), ...
    pretrained : bool or str
        See :func:`cadx.models.factory.create_model` (a path must exist).
    image_size : int
        Side in px of the square the model sees (after border crop, colour constancy, resize).
    batch_size : int
    warmup_steps, lr_head : int, float
        Head-only warm-up: steps and peak learning rate.
    finetune_steps, lr : int, float
        Fine-tuning of the last ``trainable_blocks`` stages: steps and peak learning rate.
    trainable_blocks : int
        See :func:`cadx.training.freeze.set_trainable` (-1: all, 0: the head only).
    weight_decay : float
    val_fraction : float
        Fraction of each class's images held out for validation (by lesion).
    eval_every : int
        Steps between validation evaluations.
    patience : int
        Evaluations without a gain in validation balanced accuracy that end the fine-tuning.
    seed : int
        Split, sampling, augmentation and the torch state all follow from it.
    balance : {"sampler", "loss_weights"}
        ``sampler``: every class drawn equally often; ``loss_weights``: natural frequencies, the
        cross-entropy weighted by inverse class frequency.
    device : str
        ``auto`` (CUDA when present), ``cpu``, ``cuda``, ...
    num_workers : int
        DataLoader worker processes.
    resume : bool
        Continue from ``out_dir/last.pt`` when it exists.
    """

    data_dir: str
    out_dir: str
    classes: str | list[str] = "MEL,NV,BCC"
    model: str = "tf_efficientnet_lite0"
    pretrained: bool | str = True
    image_size: Annotated[int, Field(ge=16)] = 224
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
    seed: int = 0
    balance: Literal["sampler", "loss_weights"] = "sampler"
    device: str = "auto"
    num_workers: NonNegativeInt = 2
    resume: bool = True

    @field_validator("data_dir")
    @classmethod
    def _layout(cls, value: str) -> str:
        root = Path(value)
        if not root.is_dir():
            raise ValueError(f"no such folder: {value}")
        if not is_isic_layout(root) and not any(d.is_dir() for d in root.iterdir()):
            raise ValueError(f"{value} is neither the ISIC 2019 layout (no ISIC_2019_Training_GroundTruth.csv) "
                             "nor a folder per class")
        return value

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: str | list[str], info: ValidationInfo) -> str:
        try:
            names = parse_classes(value)
            data_dir = info.data.get("data_dir")
            if data_dir is not None and is_isic_layout(data_dir):
                isic_classes(value)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("classes: ")) from None
        return "all" if names is None else ",".join(names)





def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights ``n / (K * n_c)`` (1 for every class when balanced; 0 for an absent class).

    Examples
    --------
    >>> class_weights(np.array([0, 0, 0, 1]), 2).tolist()
    [0.6666666666666666, 2.0]
    """
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)


def train_derm(cfg: DermTrainConfig, *, show_progress: bool = True) -> Path:
    """Split by lesion, train, fit the temperature, and write the best checkpoint.

    Parameters
    ----------
    cfg : DermTrainConfig
    show_progress : bool
        A tqdm bar over training steps.

    Returns
    -------
    Path
        ``out_dir/model.pt`` (best validation balanced accuracy), with ``extra`` entries
        ``preprocess`` (an :class:`~cadx.preprocessing.images.ImagePreprocess` dict) and
        ``calibration`` (``{"temperature": T, ...}``); beside it ``history.json``, ``split.csv`` and
        ``last.pt``.

    Raises
    ------
    InputFileError
        A CSV problem, or an image listed but missing (named).
    CadxError
        An unreadable image (named; checked before training when the images fit in memory).
    ConfigError
        No class has two lesions, so there is nothing to validate on.
    OutputPathError
        ``out_dir`` is a file or cannot be created.
    CheckpointError
        ``out_dir/last.pt`` is not a cadx resume file (refused before any work; with ``resume``).
    """
    import torch
    from torch.utils.data import DataLoader

    out = prepare_output_folder(cfg.out_dir)
    if cfg.resume and (out / RESUME_FILE).exists():
        read_resume_file(out / RESUME_FILE)  # a bad resume file is refused before any work, not after
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    data = read_derm_data(cfg.data_dir, classes=cfg.classes)
    labels = np.asarray(data.labels, np.int64)
    train_idx, val_idx = grouped_stratified_split(labels, data.lesions, val_fraction=cfg.val_fraction, seed=cfg.seed)
    if len(val_idx) == 0:
        raise ConfigError(f"{cfg.data_dir}: no validation images: every class has a single lesion "
                          "(need two or more lesions of a class)")
    write_split_csv(out / "split.csv", data, train_idx, val_idx)
    k = len(data.class_names)
    log.info("classes %s: %d training, %d validation images", data.class_names, len(train_idx), len(val_idx))

    model = create_model(cfg.model, pretrained=cfg.pretrained, num_classes=k, input_size=cfg.image_size,
                         class_names=data.class_names, activation="softmax")
    mc = model.cadx_config
    preprocess = ImagePreprocess(size_px=cfg.image_size)
    cache = len(data) * cfg.image_size**2 * 3 * (cfg.num_workers + 1) <= CACHE_BYTES

    def dataset(idx: np.ndarray, transform: Any) -> ImageDataset:
        return ImageDataset([data.paths[i] for i in idx], labels[idx], preprocess=preprocess, transform=transform,
                            mean=mc.mean, std=mc.std, seed=cfg.seed, cache=cache)

    train_ds, val_ds = dataset(train_idx, ImageAugment()), dataset(val_idx, None)
    if cache:  # decode once, here: a bad image is reported by name before training starts
        _fill_cache(train_ds)
        _fill_cache(val_ds)
    total = cfg.warmup_steps + cfg.finetune_steps
    # The whole sample stream is fixed by the seed; item i carries its draw number i, which seeds its
    # augmentation, so a resumed run sees exactly the images an uninterrupted one would.
    stream = sample_stream(labels[train_idx], num_samples=total * cfg.batch_size, seed=cfg.seed,
                           balanced=cfg.balance == "sampler")
    items = [(int(i), d) for d, i in enumerate(stream)]

    def batches(start_step: int) -> Any:
        return DataLoader(train_ds, batch_size=cfg.batch_size, sampler=items[start_step * cfg.batch_size:],
                          num_workers=cfg.num_workers)

    weight = None
    if cfg.balance == "loss_weights":
        weight = torch.as_tensor(class_weights(labels[train_idx], k), dtype=torch.float32, device=device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)

    def evaluate() -> dict[str, Any]:
        logits, y = validation_logits(model, val_ds, device=device)
        return validation_metrics(logits, y)

    progress = TqdmProgress(monitor=MONITOR, details={"acc": "val_accuracy", "nll": "val_nll"},
                            disable=not show_progress)
    try:
        result: FitResult = fit(
            model, phases_for(cfg), loss_fn=loss_fn, batches=batches, evaluate=evaluate, monitor=MONITOR,
            mode="max", eval_every=cfg.eval_every, patience=cfg.patience, out_dir=out, resume=cfg.resume,
            seed=cfg.seed, device=device, batchnorm_eval=cfg.pretrained is not False, on_step=progress)
        if result.stopped_early:
            progress.write(f"early stop at step {result.steps}: no balanced-accuracy gain in {cfg.patience} "
                           "evaluations")
    finally:
        progress.close()

    model.eval()
    with torch.no_grad():
        logits, y = validation_logits(model, val_ds, device=device)
    temperature = fit_temperature(logits, y)
    calibrated = validation_metrics(logits / temperature, y)
    metrics = {**result.best, "val_nll_calibrated": calibrated["val_nll"], "temperature": temperature,
               "train_counts": _counts(data, train_idx), "val_counts": _counts(data, val_idx),
               "train_images_seen": int(result.steps * cfg.batch_size), "device": device}
    log.info("temperature %.3f: validation NLL %.4f -> %.4f", temperature, result.best.get("val_nll", float("nan")),
             calibrated["val_nll"])
    path = save_checkpoint(out / "model.pt", model, train_config=asdict(cfg), metrics=metrics,
                           extra={"preprocess": preprocess.to_dict(),
                                  "calibration": {"temperature": temperature, "fitted_on": "validation split",
                                                  "images": len(val_idx)}})
    with atomic_path(out / "history.json") as tmp:
        tmp.write_text(json.dumps(result.history, indent=2))
    return path


def validation_logits(model: Any, dataset: ImageDataset, *, device: str = "cpu",
                      batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Raw outputs ``(N, K)`` float64 and labels ``(N,)`` of every item of ``dataset`` (call under no_grad)."""
    from torch.utils.data import DataLoader

    out, labels = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, num_workers=0):
        out.append(model(x.to(device)).float().cpu().numpy())
        labels.append(y.numpy())
    k = model.cadx_config.num_classes
    if not out:
        return np.zeros((0, k)), np.zeros(0, np.int64)
    return np.concatenate(out).astype(np.float64), np.concatenate(labels).astype(np.int64)


def validation_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Balanced accuracy (mean recall over the classes present), accuracy and mean NLL of softmax(logits).

    Examples
    --------
    >>> z = np.log(np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]]))
    >>> m = validation_metrics(z, np.array([0, 1, 1]))
    >>> m["val_balanced_accuracy"], round(m["val_accuracy"], 3), round(m["val_nll"], 3)
    (0.75, 0.667, 0.499)
    """
    from scipy.special import log_softmax
    from sklearn.metrics import balanced_accuracy_score

    pred = logits.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class predicted but absent from validation
        ba = float(balanced_accuracy_score(labels, pred))
    nll = float(-log_softmax(logits, axis=1)[np.arange(len(labels)), labels].mean())
    return {MONITOR: ba, "val_accuracy": float((pred == labels).mean()), "val_nll": nll,
            "val_images": int(len(labels))}


def write_split_csv(path: str | Path, data: DermImages, train_idx: np.ndarray, val_idx: np.ndarray) -> Path:
    """``image,lesion_id,class,split`` per image (``split``: ``train`` or ``val``), in data order."""
    side = {int(i): "train" for i in train_idx} | {int(i): "val" for i in val_idx}
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "lesion_id", "class", "split"])
        for i in sorted(side):
            w.writerow([data.names[i], data.lesions[i], data.class_names[data.labels[i]], side[i]])
    return Path(path)


def _counts(data: DermImages, idx: np.ndarray) -> dict[str, int]:
    n = np.bincount(np.asarray(data.labels, np.int64)[idx], minlength=len(data.class_names))
    return {c: int(v) for c, v in zip(data.class_names, n, strict=True)}


def _fill_cache(dataset: ImageDataset) -> None:
    """Read and preprocess every image once; raise one error naming the unreadable ones."""
    report = map_jobs(dataset.image, range(len(dataset)))
    if report.failures:
        more = f" (and {len(report.failures) - 1} more unreadable images)" if len(report.failures) > 1 else ""
        raise CadxError(f"{report.failures[0][1]}{more}")
