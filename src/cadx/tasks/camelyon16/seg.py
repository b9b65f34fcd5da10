"""Train a tumour segmenter (U-Net on a timm encoder) on a CAMELYON16-layout directory.

The tile classifier's recipe (:mod:`cadx.tasks.camelyon16.train`) with pixel targets: the training
slides are tiled with their annotations (the same coordinates files), each tile's mask is rasterised
from the ASAP polygons at the tile's origin and scale (``_2`` holes background), tumour-containing
and tumour-free tiles are drawn half and half, tile and mask share one dihedral symmetry (colour
jitter on the tile only), the loss is Dice + BCE. A decoder-only warm-up on the ImageNet encoder
is followed by training of the whole network; validation Dice on held-out *slides* decides the best
weights and early stopping; resumable from ``last.pt``; seeded. The loop is
:func:`cadx.training.loop.fit`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, field_validator
from pydantic.dataclasses import dataclass

from cadx.datasets.seg_tiles import SegTileDataset, slide_polygons
from cadx.datasets.tiles import BalancedSampler, build_tile_index
from cadx.errors import ConfigError
from cadx.io.atomic import atomic_path, prepare_output_folder
from cadx.metrics.segmentation import ConfusionCounts, confusion_counts
from cadx.models.checkpoint import save_checkpoint
from cadx.models.device import resolve_device
from cadx.models.factory import create_model
from cadx.preprocessing.augment import TileMaskAugment
from cadx.tasks.camelyon16.layout import Camelyon16Layout, check_training_root
from cadx.tasks.camelyon16.train import JITTER_FRAC, _val_positions, ensure_coords, split_slides
from cadx.training.config import CONFIG_DICT, ModelTrainConfig
from cadx.training.loop import RESUME_FILE, FitResult, Phase, fit, read_resume_file
from cadx.training.losses import dice_bce_loss
from cadx.training.recipe import TqdmProgress

log = logging.getLogger(__name__)

#: How the training masks were made, recorded in the checkpoint's tile spec.
LABEL_RULE = "pixel mask: ASAP tumour polygons (_0, _1, Tumor) at the tile's scale, _2 holes background"
#: The encoder's total stride: tile sides must be multiples of it.
STRIDE = 32


@dataclass(config=CONFIG_DICT)
class SegTrainConfig(ModelTrainConfig):
    """Everything a segmentation training run depends on (validated on creation, saved in the checkpoint).

    Invalid values (wrong type, out of range, unknown key, a ``data_dir`` without ``training/tumor``
    and ``training/normal``, a missing weights file, an unknown architecture, a tile side that is
    not a multiple of 32) raise :class:`~cadx.errors.ConfigError` before any work starts.

    Attributes
    ----------
    data_dir : str
        CAMELYON16 layout root: ``training/tumor``, ``training/normal``,
        ``training/lesion_annotations``.
    out_dir : str
        Where coordinates, the resume file ``last.pt``, the best checkpoint ``model.pt`` and
        ``history.json`` go.
    model : str
        ``<decoder>-<timm encoder>`` (:mod:`cadx.models.segmenter`), e.g. ``unet-tf_efficientnet_lite0``.
    pretrained : bool or str
        Encoder weights, see :func:`cadx.models.factory.create_model` (a path must exist).
    mpp, tile_size : float, int
        Tile resolution (um/px) and side (px, a multiple of 32).
    warmup_steps, lr_head : int, float
        Decoder-only warm-up (the ImageNet encoder frozen): steps and peak learning rate.
    steps, lr : int, float
        Training of the whole network: steps and peak learning rate.
    val_tiles : int
        Validation tiles (half tumour-containing where there are enough) from the held-out slides.
    threshold : float
        Probability above which a pixel counts as tumour for the validation metrics.
    freeze_batchnorm : bool
        Keep BatchNorm statistics fixed while training (those of ImageNet in the encoder).
    patience : int
        Validation evaluations without a Dice gain that end training (after the warm-up).
    """

    data_dir: str
    out_dir: str
    model: str = "unet-tf_efficientnet_lite0"
    pretrained: bool | str = True
    mpp: PositiveFloat = 0.5
    tile_size: PositiveInt = 128
    min_tissue: Annotated[float, Field(ge=0, le=1)] = 0.5
    batch_size: PositiveInt = 8
    warmup_steps: NonNegativeInt = 10
    steps: NonNegativeInt = 60
    lr_head: PositiveFloat = 2e-3
    lr: PositiveFloat = 5e-4
    weight_decay: NonNegativeFloat = 1e-4
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.25
    val_tiles: PositiveInt = 64
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    freeze_batchnorm: bool = False
    eval_every: PositiveInt = 10
    patience: PositiveInt = 3
    seed: int = 0
    num_workers: NonNegativeInt = 2
    device: str = "auto"
    resume: bool = True

    @field_validator("model")
    @classmethod
    def _known_architecture(cls, value: str) -> str:  # overrides the timm-name check of ModelTrainConfig
        from cadx.models.segmenter import split_architecture

        try:
            split_architecture(value)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("model config: ")) from None
        return value

    @field_validator("tile_size")
    @classmethod
    def _multiple_of_stride(cls, value: int) -> int:
        if value % STRIDE:
            raise ValueError(f"must be a multiple of {STRIDE} (the encoder's stride), got {value}")
        return value

    @field_validator("data_dir")
    @classmethod
    def _camelyon_layout(cls, value: str) -> str:
        return check_training_root(value)


def _evaluate(model: Any, batches: list[tuple[Any, Any]], device: str, threshold: float) -> dict[str, Any]:
    """Pixel metrics pooled over the validation tiles (the model is in eval mode, gradients off)."""
    import torch

    counts = ConfusionCounts()
    for x, y in batches:
        p = torch.sigmoid(model(x.to(device))).cpu().numpy()
        counts = counts + confusion_counts(p >= threshold, y.numpy() > 0.5)
    return {"val_dice": counts.dice, "val_iou": counts.iou, "val_sensitivity": counts.sensitivity,
            "val_specificity": counts.specificity, "val_tiles": sum(len(y) for _, y in batches)}


def seg_phases(cfg: SegTrainConfig) -> list[Phase]:
    """Decoder-only warm-up (never stopped early), then the whole network.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> cfg = SimpleNamespace(warmup_steps=5, lr_head=1e-3, steps=20, lr=1e-4, weight_decay=0.0)
    >>> [(p.name, p.steps, p.trainable is None, p.stop_early) for p in seg_phases(cfg)]
    [('warmup', 5, False, False), ('train', 20, True, True)]
    """
    return [Phase("warmup", cfg.warmup_steps, cfg.lr_head, trainable=lambda m: m.decoder_parameters(),
                  weight_decay=cfg.weight_decay, stop_early=False),
            Phase("train", cfg.steps, cfg.lr, trainable=None, weight_decay=cfg.weight_decay)]


def train_seg(cfg: SegTrainConfig, *, show_progress: bool = True) -> Path:
    """Tile, train, and write the best segmenter checkpoint.

    Parameters
    ----------
    cfg : SegTrainConfig
    show_progress : bool
        tqdm bars for tiling and training.

    Returns
    -------
    Path
        ``out_dir/model.pt`` (best validation Dice), beside ``history.json`` and ``last.pt``. The
        checkpoint records the tile spec (mpp, tile size) that whole-slide prediction must use.

    Raises
    ------
    CheckpointError
        ``out_dir/last.pt`` is not a cadx resume file (refused before any work; with ``resume``).
    OutputPathError
        ``out_dir`` is a file or cannot be created.
    ValueError
        The training slides have no tumour-containing or no tumour-free tiles.
    """
    import torch
    from torch.utils.data import DataLoader

    out = prepare_output_folder(cfg.out_dir)
    if cfg.resume and (out / RESUME_FILE).exists():
        read_resume_file(out / RESUME_FILE)  # a bad resume file is refused before the tiling, not after
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    index = build_tile_index(ensure_coords(cfg, out, show_progress=show_progress), any_tumor=True)
    polygons = slide_polygons(index, Camelyon16Layout(cfg.data_dir).training_annotations)
    train_names, val_names = split_slides(index, cfg.val_fraction, cfg.seed)
    train_idx, val_idx = index.subset(train_names), index.subset(val_names)
    log.info("train slides %s, validation slides %s", train_names, val_names)

    model = create_model(cfg.model, kind="segmenter", pretrained=cfg.pretrained, num_classes=1,
                         input_size=cfg.tile_size, class_names=("tumor",))
    mc = model.cadx_config
    total = cfg.warmup_steps + cfg.steps
    # The sample stream is fixed by the seed and item i's augmentation by its draw number i, so a
    # resumed run sees exactly the tiles and masks an uninterrupted one would.
    drawn = BalancedSampler(train_idx, seed=cfg.seed, num_samples=total * cfg.batch_size)
    items = [(s, t, i) for i, (s, t) in enumerate(drawn)]
    train_ds = SegTileDataset(train_idx, polygons, mean=mc.mean, std=mc.std, transform=TileMaskAugment(),
                              jitter_frac=JITTER_FRAC, seed=cfg.seed)

    def batches(start_step: int) -> Any:
        return DataLoader(train_ds, batch_size=cfg.batch_size, sampler=items[start_step * cfg.batch_size:],
                          num_workers=cfg.num_workers)

    val_ds = SegTileDataset(val_idx, polygons, mean=mc.mean, std=mc.std)
    val_pos = [tuple(p) for p in _val_positions(val_idx, cfg.val_tiles, cfg.seed)]
    val_batches = list(DataLoader(val_ds, batch_size=16, sampler=val_pos, num_workers=0))
    val_ds.close()

    progress = TqdmProgress(monitor="val_dice", details={"iou": "val_iou", "sens": "val_sensitivity"},
                            disable=not show_progress)
    try:
        result: FitResult = fit(
            model, seg_phases(cfg), loss_fn=dice_bce_loss(), batches=batches,
            evaluate=lambda: _evaluate(model, val_batches, device, cfg.threshold), monitor="val_dice", mode="max",
            eval_every=cfg.eval_every, patience=cfg.patience, out_dir=out, resume=cfg.resume, seed=cfg.seed,
            device=device, batchnorm_eval=cfg.freeze_batchnorm, on_step=progress)
        if result.stopped_early:
            progress.write(f"early stop at step {result.steps}: no validation Dice gain in {cfg.patience} evaluations")
    finally:
        progress.close()
        train_ds.close()
    tile_spec = {"mpp": cfg.mpp, "size_px": cfg.tile_size, "min_tissue": cfg.min_tissue, "label_rule": LABEL_RULE}
    metrics = {**result.best, "train_slides": train_names, "val_slides": val_names,
               "train_tiles_seen": int(result.steps * cfg.batch_size), "device": device}
    path = save_checkpoint(out / "model.pt", model, tile=tile_spec, train_config=asdict(cfg), metrics=metrics)
    with atomic_path(out / "history.json") as tmp:
        tmp.write_text(json.dumps(result.history, indent=2))
    return path
