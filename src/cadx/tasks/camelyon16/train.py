"""Fine-tune a tile classifier on a CAMELYON16-layout directory.

The seed's recipe, sized for a CPU: tiles read on the fly, class-balanced sampling, dihedral, colour
and translation augmentation; a frozen-backbone warm-up of the new head, then fine-tuning of the last
stages (or all) with AdamW and a cosine schedule; validation AUC on held-out *slides* (never tiles)
for early stopping; resumable from ``last.pt``; seeded; CPU by default, CUDA when present. The loop
itself is the generic :func:`cadx.training.loop.fit`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, field_validator
from pydantic.dataclasses import dataclass

from cadx.datasets.tiles import NORMAL, TUMOR, BalancedSampler, TileDataset, TileIndex, build_tile_index
from cadx.errors import ConfigError
from cadx.io.atomic import atomic_path, prepare_output_folder
from cadx.models.checkpoint import save_checkpoint
from cadx.models.device import resolve_device
from cadx.models.factory import create_model
from cadx.preprocessing.augment import TileAugment
from cadx.tasks.camelyon16.layout import Camelyon16Layout, check_training_root
from cadx.training.config import (
    CONFIG_DICT,
    ModelTrainConfig,
)
from cadx.training.loop import RESUME_FILE, FitResult, fit, read_resume_file
from cadx.training.recipe import TqdmProgress, phases_for
from cadx.wsi.tiling import find_slides, tile_cohort

log = logging.getLogger(__name__)

#: How tiles are labelled (cadx.datasets.tiles.label_tiles), recorded in the checkpoint.
LABEL_RULE = "tumor: centre half >= 50% tumour; normal: no tumour"
#: Translation jitter of training tiles, as a fraction of the tile side.
JITTER_FRAC = 0.1


@dataclass(config=CONFIG_DICT)
class TrainConfig(ModelTrainConfig):
    """Everything a training run depends on (validated on creation, saved in the checkpoint).

    Invalid values (wrong type, out of range, unknown key, a ``data_dir`` without
    ``training/tumor`` and ``training/normal``, a missing weights file, an architecture timm does not
    know) raise :class:`~cadx.errors.ConfigError` before any work starts.

    Attributes
    ----------
    data_dir : str
        CAMELYON16 layout root: ``training/tumor``, ``training/normal``,
        ``training/lesion_annotations``.
    out_dir : str
        Where coordinates, the resume file ``last.pt``, the best checkpoint ``model.pt`` and
        ``history.json`` go.
    model : str
        timm architecture.
    pretrained : bool or str
        See :func:`cadx.models.factory.create_model` (a path must exist).
    mpp, tile_size : float, int
        Tile resolution (um/px) and side (px).
    context_mpp : float, optional
        Multi-scale input: a second tile of the same size and centre at this coarser resolution,
        stacked as channels 3-5 (the model gets 6 input channels).
    warmup_steps, lr_head : int, float
        Head-only warm-up: steps and peak learning rate.
    finetune_steps, lr : int, float
        Fine-tuning: steps and peak learning rate.
    trainable_blocks : int
        Stages fine-tuned after the warm-up, counted from the head, in timm's own stage grouping
        (:func:`cadx.training.freeze.set_trainable`; -1: the whole network, 0: the head only). The
        head is always trained. For ``tf_efficientnet_lite0``, 1 is ``blocks.6`` with ``conv_head``
        and ``bn2`` (what "3 blocks" meant before cadx 0.2); for a ResNet, N is ``layer(5-N)..layer4``.
    patience : int
        Validation evaluations without an AUC gain that end the fine-tuning.
    """

    data_dir: str
    out_dir: str
    model: str = "tf_efficientnet_lite0"
    pretrained: bool | str = True
    mpp: PositiveFloat = 0.5
    tile_size: PositiveInt = 128
    context_mpp: PositiveFloat | None = None
    min_tissue: Annotated[float, Field(ge=0, le=1)] = 0.5
    batch_size: PositiveInt = 32
    warmup_steps: NonNegativeInt = 20
    finetune_steps: NonNegativeInt = 80
    lr_head: PositiveFloat = 2e-3
    lr: PositiveFloat = 5e-4
    weight_decay: NonNegativeFloat = 1e-4
    trainable_blocks: Annotated[int, Field(ge=-1)] = 1
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.25
    val_tiles: PositiveInt = 256
    eval_every: PositiveInt = 20
    patience: PositiveInt = 3
    seed: int = 0
    num_workers: NonNegativeInt = 2
    device: str = "auto"
    resume: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @field_validator("data_dir")
    @classmethod
    def _camelyon_layout(cls, value: str) -> str:
        return check_training_root(value)





def split_slides(index: TileIndex, val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Held-out slides for validation, stratified by slide label (split by slide, never by tile)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in (1, 0):
        names = sorted(s.name for s in index.slides if s.slide_label == label)
        rng.shuffle(names)
        n_val = max(1, round(val_fraction * len(names))) if len(names) > 1 else 0
        val += names[:n_val]
        train += names[n_val:]
    return sorted(train), sorted(val)


def ensure_coords(cfg: TrainConfig, out: Path, *, show_progress: bool = True) -> list[Path]:
    """Tile the training slides into ``out/coords`` with tumour fractions from the annotations.

    Slides already tiled there with the same settings are not tiled again.

    Returns
    -------
    list of Path
        One coordinates file per training slide that could be tiled (failures are logged).

    Raises
    ------
    ConfigError
        No slides under ``training/tumor`` and ``training/normal``.
    """
    data = Camelyon16Layout(cfg.data_dir)
    coords_dir = out / "coords"
    slides = find_slides([data.training_tumor, data.training_normal])
    if not slides:
        raise ConfigError(f"{data.root}: no slides under training/tumor and training/normal (CAMELYON16 layout)")
    # tile_cohort skips slides tiled before with these settings and tiles again those made with others
    # (a changed mpp, tile size or annotation file), so coordinates never go stale.
    report = tile_cohort(slides, coords_dir, annotations=data.training_annotations,
                         target_mpp=cfg.mpp, tile_size_px=cfg.tile_size, min_tissue=cfg.min_tissue,
                         show_progress=show_progress)
    for path, why in report.failures:
        log.warning("training slide skipped: %s: %s", path, why)
    failed = {Path(p) for p, _ in report.failures}  # a file left from other settings is not used
    return sorted(coords_dir / f"{s.stem}.h5" for s in slides
                  if s not in failed and (coords_dir / f"{s.stem}.h5").exists())


def _evaluate(model: Any, batches: list[tuple[Any, Any]], device: str) -> dict[str, Any]:
    """Tile-level validation metrics (the model is in eval mode, gradients off)."""
    import torch
    from sklearn.metrics import roc_auc_score

    probs, labels = [], []
    for x, y in batches:
        probs.append(torch.softmax(model(x.to(device)), 1)[:, 1].cpu().numpy())
        labels.append(y.numpy())
    p, y = np.concatenate(probs), np.concatenate(labels)
    auc = float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else float("nan")
    pred = p >= 0.5
    return {"val_auc": auc, "val_sensitivity": float(pred[y == 1].mean()),
            "val_specificity": float((~pred[y == 0]).mean()), "val_tiles": len(y)}


def _val_positions(index: TileIndex, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    out = []
    for label in (TUMOR, NORMAL):
        pos = index.positions(label)
        if len(pos):
            out.append(pos[rng.choice(len(pos), size=min(n // 2, len(pos)), replace=False)])
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def train_tile_classifier(cfg: TrainConfig, *, show_progress: bool = True) -> Path:
    """Tile, train, and write the best checkpoint.

    Parameters
    ----------
    cfg : TrainConfig
    show_progress : bool
        tqdm bars for tiling and training.

    Returns
    -------
    Path
        ``out_dir/model.pt`` (best validation AUC), beside ``history.json`` and ``last.pt``.

    Raises
    ------
    CheckpointError
        ``out_dir/last.pt`` is not a cadx resume file (refused before any work; with ``resume``).
    OutputPathError
        ``out_dir`` is a file or cannot be created.
    """
    import torch
    from torch.utils.data import DataLoader

    out = prepare_output_folder(cfg.out_dir)
    if cfg.resume and (out / RESUME_FILE).exists():
        read_resume_file(out / RESUME_FILE)  # a bad resume file is refused before the tiling, not after
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    index = build_tile_index(ensure_coords(cfg, out, show_progress=show_progress), context_mpp=cfg.context_mpp)
    train_names, val_names = split_slides(index, cfg.val_fraction, cfg.seed)
    train_idx, val_idx = index.subset(train_names), index.subset(val_names)
    log.info("train slides %s, validation slides %s", train_names, val_names)

    model = create_model(cfg.model, pretrained=cfg.pretrained, num_classes=2, input_size=cfg.tile_size,
                         in_chans=6 if cfg.context_mpp else 3, class_names=("normal", "tumor"))
    mc = model.cadx_config
    total = cfg.warmup_steps + cfg.finetune_steps
    # The whole sample stream is fixed by the seed; item i carries its draw number i, which seeds its
    # augmentation, so a resumed run sees exactly the tiles an uninterrupted one would.
    drawn = BalancedSampler(train_idx, seed=cfg.seed, num_samples=total * cfg.batch_size)
    items = [(s, t, i) for i, (s, t) in enumerate(drawn)]
    train_ds = TileDataset(train_idx, mean=mc.mean, std=mc.std, transform=TileAugment(), jitter_frac=JITTER_FRAC,
                           seed=cfg.seed)

    def batches(start_step: int) -> Any:
        return DataLoader(train_ds, batch_size=cfg.batch_size, sampler=items[start_step * cfg.batch_size:],
                          num_workers=cfg.num_workers)

    val_ds = TileDataset(val_idx, mean=mc.mean, std=mc.std)
    val_pos = [tuple(p) for p in _val_positions(val_idx, cfg.val_tiles, cfg.seed)]
    val_batches = list(DataLoader(val_ds, batch_size=64, sampler=val_pos, num_workers=0))

    progress = TqdmProgress(monitor="val_auc", details={"sens": "val_sensitivity", "spec": "val_specificity"},
                            disable=not show_progress)
    try:
        result: FitResult = fit(
            model, phases_for(cfg), loss_fn=torch.nn.CrossEntropyLoss(), batches=batches,
            evaluate=lambda: _evaluate(model, val_batches, device), monitor="val_auc", mode="max",
            eval_every=cfg.eval_every, patience=cfg.patience, out_dir=out, resume=cfg.resume, seed=cfg.seed,
            device=device, batchnorm_eval=True,  # BatchNorm statistics stay the pretrained ones (small batches)
            on_step=progress)
        if result.stopped_early:
            progress.write(f"early stop at step {result.steps}: no validation AUC gain in {cfg.patience} evaluations")
    finally:
        progress.close()
    tile_spec = {"mpp": cfg.mpp, "size_px": cfg.tile_size, "context_mpp": cfg.context_mpp,
                 "min_tissue": cfg.min_tissue, "label_rule": LABEL_RULE}
    metrics = {**result.best, "train_slides": train_names, "val_slides": val_names,
               "train_tiles_seen": int(result.steps * cfg.batch_size), "device": device}
    path = save_checkpoint(out / "model.pt", model, tile=tile_spec, train_config=asdict(cfg), metrics=metrics)
    with atomic_path(out / "history.json") as tmp:
        tmp.write_text(json.dumps(result.history, indent=2))
    return path
