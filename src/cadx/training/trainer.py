"""Fine-tune a tile classifier on a CAMELYON16-layout directory.

The seed's recipe, sized for a CPU: tiles read on the fly, class-balanced sampling, dihedral and
colour augmentation; a frozen-backbone warm-up of the new head, then fine-tuning of the last
blocks (or all) with AdamW and a cosine schedule; validation AUC on held-out *slides* (never
tiles) for early stopping; resumable from ``last.pt``; seeded; CPU by default, CUDA when present.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cadx.datasets.tiles import NORMAL, TUMOR, BalancedSampler, TileDataset, TileIndex, build_tile_index
from cadx.errors import CadxError
from cadx.models.checkpoint import load_checkpoint, save_checkpoint
from cadx.models.device import resolve_device
from cadx.models.factory import create_model
from cadx.wsi.tiling import find_slides, tile_cohort

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved in the checkpoint).

    Attributes
    ----------
    data_dir : str
        CAMELYON16 layout root: ``training/tumor``, ``training/normal``,
        ``training/lesion_annotations``.
    out_dir : str
        Where coordinates, checkpoints (``model.pt``, ``last.pt``) and ``history.json`` go.
    model : str
        timm architecture.
    pretrained : bool or str
        See :func:`cadx.models.factory.create_model`.
    mpp, tile_size : float, int
        Tile resolution (um/px) and side (px).
    context_mpp : float, optional
        Multi-scale input: a second tile of the same size and centre at this coarser resolution,
        stacked as channels 3-5 (the model gets 6 input channels).
    trainable_blocks : int
        Blocks fine-tuned after the warm-up, counted from the top (-1: the whole network).
    """

    data_dir: str
    out_dir: str
    model: str = "tf_efficientnet_lite0"
    pretrained: bool | str = True
    mpp: float = 0.5
    tile_size: int = 128
    context_mpp: float | None = None
    min_tissue: float = 0.5
    batch_size: int = 32
    warmup_steps: int = 20
    finetune_steps: int = 80
    lr_head: float = 2e-3
    lr: float = 5e-4
    weight_decay: float = 1e-4
    trainable_blocks: int = 3
    val_fraction: float = 0.25
    val_tiles: int = 256
    eval_every: int = 20
    patience: int = 3
    seed: int = 0
    num_workers: int = 2
    device: str = "auto"
    resume: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML file whose keys are this class's fields."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise CadxError(f"{path}: no such config file")
        with open(path) as fh:
            raw = yaml.safe_load(fh) or {}
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise CadxError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        if "data_dir" not in raw or "out_dir" not in raw:
            raise CadxError(f"{path}: 'data_dir' and 'out_dir' are required")
        return cls(**raw)


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


def trainable_units(model: Any) -> list[Any]:
    """The network cut into blocks, input to output, for partial fine-tuning."""
    if hasattr(model, "blocks"):  # EfficientNet / MobileNet
        units = list(model.blocks)
        tail = [m for m in (getattr(model, "conv_head", None), getattr(model, "bn2", None)) if m is not None]
        return units + tail
    if hasattr(model, "layer4"):  # ResNet
        return [model.layer1, model.layer2, model.layer3, model.layer4]
    head = model.get_classifier()
    return [m for m in model.children() if m is not head and any(True for _ in m.parameters())]


def _set_trainable(model: Any, n_blocks: int) -> list[Any]:
    for p in model.parameters():
        p.requires_grad_(False)
    head = model.get_classifier()
    params = list(head.parameters())
    units = trainable_units(model) if n_blocks != 0 else []
    chosen = units if n_blocks < 0 else units[len(units) - n_blocks:]
    for unit in chosen:
        params += list(unit.parameters())
    for p in params:
        p.requires_grad_(True)
    return params


def _evaluate(model: Any, loader_batches: list[tuple[Any, Any]], device: str) -> dict[str, float]:
    import torch
    from sklearn.metrics import roc_auc_score

    model.eval()
    probs, labels = [], []
    with torch.no_grad():
        for x, y in loader_batches:
            out = model(x.to(device))
            probs.append(torch.softmax(out, 1)[:, 1].cpu().numpy())
            labels.append(y.numpy())
    p, y = np.concatenate(probs), np.concatenate(labels)
    auc = float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else float("nan")
    pred = p >= 0.5
    return {"val_auc": auc, "val_sensitivity": float(pred[y == 1].mean()), "val_specificity": float((~pred[y == 0]).mean()),
            "val_tiles": int(len(y))}


def _val_positions(index: TileIndex, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    out = []
    for label in (TUMOR, NORMAL):
        pos = index.positions(label)
        if len(pos):
            out.append(pos[rng.choice(len(pos), size=min(n // 2, len(pos)), replace=False)])
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def ensure_coords(cfg: TrainConfig, out: Path) -> list[Path]:
    """Tile the training slides (once) with tumour fractions from the annotations."""
    data = Path(cfg.data_dir)
    coords_dir = out / "coords"
    slides = find_slides([data / "training" / "tumor", data / "training" / "normal"])
    if not slides:
        raise CadxError(f"{data}: no slides under training/tumor and training/normal (CAMELYON16 layout)")
    todo = [s for s in slides if not (coords_dir / f"{s.stem}.h5").exists()]
    if todo:
        report = tile_cohort(todo, coords_dir, annotations=data / "training" / "lesion_annotations",
                             target_mpp=cfg.mpp, tile_size_px=cfg.tile_size, min_tissue=cfg.min_tissue)
        for path, why in report.failures:
            log.warning("training slide skipped: %s: %s", path, why)
    return sorted(coords_dir / f"{s.stem}.h5" for s in slides if (coords_dir / f"{s.stem}.h5").exists())


def train_tile_classifier(cfg: TrainConfig, *, show_progress: bool = True) -> Path:
    """Run training; returns the path of the best checkpoint (``out_dir/model.pt``)."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    index = build_tile_index(ensure_coords(cfg, out), context_mpp=cfg.context_mpp)
    train_names, val_names = split_slides(index, cfg.val_fraction, cfg.seed)
    train_idx, val_idx = index.subset(train_names), index.subset(val_names)
    log.info("train slides %s, validation slides %s", train_names, val_names)

    model = create_model(cfg.model, pretrained=cfg.pretrained, num_classes=2, input_size=cfg.tile_size,
                         in_chans=6 if cfg.context_mpp else 3, class_names=("normal", "tumor"))
    mc = model.cadx_config
    model.to(device)
    tile_spec = {"mpp": cfg.mpp, "size_px": cfg.tile_size, "context_mpp": cfg.context_mpp, "min_tissue": cfg.min_tissue,
                 "label_rule": "tumor: centre half >= 50% tumour; normal: no tumour"}
    total_steps = cfg.warmup_steps + cfg.finetune_steps
    history: list[dict[str, Any]] = []
    step, best_auc, best_state, bad_evals = 0, -1.0, None, 0
    last = out / "last.pt"
    resumed_opt = None
    if cfg.resume and last.exists():
        resumed, payload = load_checkpoint(last, device=device)  # payload: everything but the weights
        model.load_state_dict(resumed.state_dict())
        step, best_auc = int(payload["step"]), float(payload["best_auc"])
        history, bad_evals = list(payload["history"]), int(payload["bad_evals"])
        resumed_opt = payload["optimizer"]
        if payload.get("best_state") is not None:
            best_state = payload["best_state"]
        log.info("resumed from %s at step %d", last, step)

    train_ds = TileDataset(train_idx, mean=mc.mean, std=mc.std, augment=True, seed=cfg.seed)
    sampler = BalancedSampler(train_idx, seed=cfg.seed + step, num_samples=(total_steps - step) * cfg.batch_size)
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=list(sampler), num_workers=cfg.num_workers,
                        persistent_workers=cfg.num_workers > 0)
    val_ds = TileDataset(val_idx, mean=mc.mean, std=mc.std, augment=False)
    val_pos = [tuple(p) for p in _val_positions(val_idx, cfg.val_tiles, cfg.seed)]
    val_batches = list(DataLoader(val_ds, batch_size=64, sampler=val_pos, num_workers=0))

    loss_fn = torch.nn.CrossEntropyLoss()
    phase = None
    opt = sched = None
    bar = tqdm(total=total_steps, initial=step, desc="training", unit="step", disable=not show_progress)
    t0 = time.perf_counter()
    seen = 0
    for x, y in loader:
        want = "warmup" if step < cfg.warmup_steps else "finetune"
        if want != phase:
            phase = want
            params = _set_trainable(model, 0 if phase == "warmup" else cfg.trainable_blocks)
            lr = cfg.lr_head if phase == "warmup" else cfg.lr
            opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
            n_phase = cfg.warmup_steps if phase == "warmup" else cfg.finetune_steps
            start = 0 if phase == "warmup" else cfg.warmup_steps
            sched = torch.optim.lr_scheduler.LambdaLR(  # cosine over the phase, continued on resume
                opt, lambda i, n=n_phase, o=step - start: 0.5 * (1 + math.cos(math.pi * min(1.0, (i + o) / max(n, 1)))))
            if resumed_opt is not None and resumed_opt.get("phase") == phase:
                opt.load_state_dict(resumed_opt["state"])
            resumed_opt = None
        model.train()
        # BatchNorm statistics stay those of the pretrained network (small CPU batches).
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x.to(device)), y.to(device))
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        seen += len(y)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", phase=phase)
        if step % cfg.eval_every == 0 or step == total_steps:
            metrics = _evaluate(model, val_batches, device)
            metrics.update(step=step, phase=phase, loss=float(loss.item()),
                           tiles_per_s=seen / (time.perf_counter() - t0))
            history.append(metrics)
            log.info("step %d: %s", step, metrics)
            bar.write(f"step {step:>4} [{phase}] loss {loss.item():.3f}  val AUC {metrics['val_auc']:.3f}  "
                      f"sens {metrics['val_sensitivity']:.2f} spec {metrics['val_specificity']:.2f}")
            improved = metrics["val_auc"] > best_auc + 1e-4 or best_state is None
            if improved:
                best_auc = metrics["val_auc"]
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                bad_evals = 0
            else:
                bad_evals += 1
            save_checkpoint(last, model, tile=tile_spec, train_config=asdict(cfg), metrics=metrics,
                            extra={"step": step, "best_auc": best_auc, "history": history, "bad_evals": bad_evals,
                                   "optimizer": {"phase": phase, "state": opt.state_dict()}, "best_state": best_state})
            if phase == "finetune" and bad_evals >= cfg.patience:
                bar.write(f"early stop at step {step}: no validation AUC gain in {cfg.patience} evaluations")
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    best = max(history, key=lambda h: h["val_auc"]) if history else {}
    metrics = {**best, "train_slides": train_names, "val_slides": val_names,
               "train_tiles_seen": int(step * cfg.batch_size), "device": device}
    path = save_checkpoint(out / "model.pt", model, tile=tile_spec, train_config=asdict(cfg), metrics=metrics)
    (out / "history.json").write_text(json.dumps(history, indent=2))
    return path
