"""Training attention MIL on slide labels alone, with :func:`cadx.training.loop.fit`.

One bag (one slide's tile features) per optimiser step, AdamW at ``lr`` 2e-4 and weight decay 1e-5
(CLAM's values), validation loss and slide AUC after every epoch, early stopping on either, and a
resume file after every epoch (:func:`fit_mil`). The loss of a bag is
``(1 - instance_weight) * cross_entropy(bag) + instance_weight * instance_loss`` (CLAM's
``bag_weight`` 0.7; :func:`cadx.models.mil.instance_loss`). :func:`cross_validate` runs k folds
split by slide and reports slide AUC as mean +- sd over the folds, with the out-of-fold
probability and attention of every slide.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cadx.datasets.bags import BagDataset
from cadx.errors import ConfigError
from cadx.metrics.classification import roc_auc
from cadx.models.checkpoint import save_checkpoint
from cadx.models.factory import create_model
from cadx.models.mil import MILOutput, instance_loss
from cadx.training.loop import FitResult, Phase, StepCallback, fit

__all__ = ["CvResult", "MilFitSettings", "bag_predict", "cross_validate", "cross_validate_bags", "fit_mil",
           "mil_loss"]

log = logging.getLogger(__name__)

#: File name of a fold's model in ``out_dir/fold_<k>/``.
FOLD_CHECKPOINT = "model.pt"


@dataclass(frozen=True)
class MilFitSettings:
    """How :func:`fit_mil` trains.

    Attributes
    ----------
    epochs : int
        Most passes over the training bags (one bag per step).
    lr : float
        Peak AdamW learning rate; it follows the loop's half cosine to 0 over ``epochs``.
    weight_decay : float
        AdamW weight decay.
    patience : int, optional
        Stop after this many epochs without a better ``monitor``; ``None`` runs all epochs.
    monitor : {"val_loss", "val_auc"}
        What picks the best epoch (its weights are kept) and drives early stopping.
    instance_weight : float
        Weight of :func:`~cadx.models.mil.instance_loss` in the loss (0 turns it off); used only for
        models with ``uses_instance_loss`` (gated attention, not max pooling).
    instance_k : int
        Tiles taken from each end of the attention ranking for the instance loss.
    seed : int
        Seeds the bag order of every epoch and dropout of every step.
    dropout : float, optional
        Sets every dropout layer of the model; ``None`` keeps the model's (0.25 for the factory's models).

    Raises
    ------
    ConfigError
        A value out of range.

    Examples
    --------
    >>> MilFitSettings(epochs=20).lr
    0.0002
    >>> MilFitSettings(monitor="auc")
    Traceback (most recent call last):
    ...
    cadx.errors.ConfigError: MIL training: monitor must be 'val_loss' or 'val_auc' (got 'auc')
    """

    epochs: int = 50
    lr: float = 2e-4
    weight_decay: float = 1e-5
    patience: int | None = 10
    monitor: str = "val_loss"
    instance_weight: float = 0.3
    instance_k: int = 8
    seed: int = 0
    dropout: float | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1 (got {self.epochs})"),
            (self.lr > 0 and self.weight_decay >= 0, f"lr must be > 0 and weight_decay >= 0 (got {self.lr}, "
                                                     f"{self.weight_decay})"),
            (self.patience is None or self.patience >= 1, f"patience must be >= 1 or None (got {self.patience})"),
            (self.monitor in ("val_loss", "val_auc"),
             f"monitor must be 'val_loss' or 'val_auc' (got {self.monitor!r})"),
            (0 <= self.instance_weight <= 1, f"instance_weight must be in [0, 1] (got {self.instance_weight})"),
            (self.instance_k >= 1, f"instance_k must be >= 1 (got {self.instance_k})"),
            (self.dropout is None or 0 <= self.dropout < 1, f"dropout must be in [0, 1) (got {self.dropout})"),
        ]
        for ok, problem in checks:
            if not ok:
                raise ConfigError(f"MIL training: {problem}")


def mil_loss(instance_weight: float = 0.3, instance_k: int = 8) -> Callable[[MILOutput, Any], Any]:
    """``loss(out, label)`` of one bag: weighted bag cross entropy plus instance loss.

    Examples
    --------
    >>> import torch
    >>> out = MILOutput(torch.zeros(2), torch.full((4,), 0.25), torch.zeros(4))
    >>> round(float(mil_loss(0.3, 2)(out, torch.tensor(1))), 4)   # both terms log 2
    0.6931
    """
    import torch

    def loss(out: MILOutput, label: Any) -> Any:
        target = torch.as_tensor(label, device=out.logits.device).reshape(1).long()
        bag = torch.nn.functional.cross_entropy(out.logits[None], target)
        if instance_weight == 0:
            return bag
        return (1 - instance_weight) * bag + instance_weight * instance_loss(out, int(target), instance_k)

    return loss


def fit_mil(model: Any, train: BagDataset, val: BagDataset | None, settings: MilFitSettings, *,
            out_dir: str | Path | None = None, progress: StepCallback | None = None,
            device: str = "cpu") -> FitResult:
    """Train a MIL model one bag per step; keep the weights of the best epoch.

    Parameters
    ----------
    model : torch.nn.Module
        Kind ``"mil"`` (:func:`cadx.models.factory.create_model`); holds the best weights on return.
    train : BagDataset
        Shuffled anew every epoch (seeded by ``settings.seed`` and the epoch).
    val : BagDataset, optional
        Scored after every epoch: ``val_loss`` (mean bag cross entropy) and ``val_auc`` (slide AUC;
        NaN when it holds one class). ``None``: no validation, the last epoch's weights are kept.
    settings : MilFitSettings
    out_dir : str or Path, optional
        :func:`~cadx.training.loop.fit`'s resume folder: a rerun into it continues after the last
        finished epoch and ends with the same weights as an uninterrupted run.
    progress : callable, optional
        ``progress(step, total, metrics)`` after every step (one step = one bag).
    device : str

    Returns
    -------
    FitResult
        One history entry per epoch, with ``epoch``; ``samples_per_s`` counts tiles.

    Raises
    ------
    ConfigError
        No training bags, or ``monitor="val_auc"`` with validation bags of one class only.
    """
    import torch

    if not len(train):
        raise ConfigError("MIL training: no training bags")
    if settings.monitor == "val_auc" and val is not None and len(set(val.labels.tolist())) < 2:
        raise ConfigError("MIL training: monitor 'val_auc' needs validation bags of both classes")
    if settings.dropout is not None:
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = settings.dropout
    weight = settings.instance_weight if getattr(model, "uses_instance_loss", False) else 0.0
    loss_fn = mil_loss(weight, settings.instance_k)
    n = len(train)

    def batches(start: int) -> Iterator[Any]:
        step = start
        while True:
            epoch, pos = divmod(step, n)
            order = np.random.default_rng([settings.seed, epoch]).permutation(n)
            x, label, _ = train[int(order[pos])]
            yield x, torch.tensor(label)
            step += 1

    def evaluate() -> dict[str, Any]:
        if val is None:
            return {}
        losses, probs = [], []
        for i in range(len(val)):
            x, label, _ = val[i]
            out = model(x.to(device))
            losses.append(float(torch.nn.functional.cross_entropy(out.logits[None], torch.tensor([label],
                                                                                              device=device))))
            probs.append(float(torch.softmax(out.logits, 0)[1]))
        y = val.labels
        auc = roc_auc(y, probs) if len(set(y.tolist())) == 2 else float("nan")
        return {"val_loss": float(np.mean(losses)), "val_auc": auc}

    monitor, mode = (settings.monitor, "min" if settings.monitor == "val_loss" else "max")
    if val is None:
        monitor, mode = "step", "max"  # the latest epoch is the best
    result = fit(model, [Phase("mil", settings.epochs * n, settings.lr, weight_decay=settings.weight_decay)],
                 loss_fn=loss_fn, batches=batches, evaluate=evaluate, monitor=monitor, mode=mode, eval_every=n,
                 patience=settings.patience if val is not None else None, out_dir=out_dir, seed=settings.seed,
                 device=device, on_step=progress)
    for entry in result.history:
        entry["epoch"] = int(entry["step"]) // n
    if result.best:
        result.best["epoch"] = int(result.best["step"]) // n
    log.info("MIL: best %s after %d steps", result.best, result.steps)
    return result


def bag_predict(model: Any, features: Any, *, device: str = "cpu") -> dict[str, Any]:
    """Slide probability, attention and tile probabilities of one bag.

    Parameters
    ----------
    model : torch.nn.Module
        Kind ``"mil"``; put in eval mode.
    features : array or tensor
        ``(N, D)`` tile features.
    device : str

    Returns
    -------
    dict
        ``probability``: the slide's tumour probability (float, softmax of the bag logits);
        ``attention``: ``(N,)`` float32 summing to 1; ``instance``: ``(N,)`` float32 per-tile tumour
        probability (sigmoid of the instance scores).

    Examples
    --------
    >>> from cadx.models.factory import create_model
    >>> p = bag_predict(create_model("abmil", kind="mil", in_chans=4), np.ones((3, 4)))
    >>> 0 <= p["probability"] <= 1, p["attention"].shape, p["instance"].dtype
    (True, (3,), dtype('float32'))
    """
    import torch

    model.eval().to(device)
    x = torch.as_tensor(np.asarray(features, np.float32)) if not isinstance(features, torch.Tensor) else features
    with torch.no_grad():
        out = model(x.float().to(device))
    return {"probability": float(torch.softmax(out.logits.float(), 0)[1]),
            "attention": out.attention.float().cpu().numpy(),
            "instance": torch.sigmoid(out.instance_scores.float()).cpu().numpy()}


@dataclass
class CvResult:
    """What :func:`cross_validate` returns.

    Attributes
    ----------
    per_fold : list of dict
        Per fold: ``fold``, ``auc`` (slide AUC on the held-out fold; NaN with one class), ``loss``
        (mean bag cross entropy there), ``n_train``, ``n_val``, ``n_test``, ``best_epoch``, ``epochs``
        (run), ``stopped_early``, ``checkpoint`` (path or None).
    mean, sd : dict
        Mean and sample standard deviation (ddof=1; NaN for one fold) of ``auc`` and ``loss`` over folds.
    oof : dict
        Slide name -> ``{"label", "fold", "probability", "attention" (N,), "instance" (N,)}``, each slide
        scored by the model of the fold that held it out.
    """

    per_fold: list[dict[str, Any]] = field(default_factory=list)
    mean: dict[str, float] = field(default_factory=dict)
    sd: dict[str, float] = field(default_factory=dict)
    oof: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def oof_auc(self) -> float:
        """Slide AUC of the out-of-fold probabilities pooled over all folds (NaN with one class)."""
        y = [v["label"] for v in self.oof.values()]
        p = [v["probability"] for v in self.oof.values()]
        return roc_auc(y, p) if len(set(y)) == 2 else float("nan")

    def summary(self) -> dict[str, Any]:
        """Plain data for a JSON file: the folds, mean, sd, pooled AUC and out-of-fold probabilities."""
        return {"per_fold": [{k: str(v) if isinstance(v, Path) else v for k, v in f.items()} for f in self.per_fold],
                "mean": dict(self.mean), "sd": dict(self.sd), "oof_auc": self.oof_auc,
                "oof": {name: {"label": v["label"], "fold": v["fold"], "probability": v["probability"]}
                        for name, v in self.oof.items()}}


def cross_validate(paths: Sequence[str | Path], labels: Sequence[int], *, folds: int = 4, seed: int = 0,
                   build_model: Callable[[int], Any] | None = None, settings: MilFitSettings | None = None,
                   out_dir: str | Path | None = None, progress: StepCallback | None = None,
                   in_memory: bool = True) -> CvResult:
    """k-fold cross-validation over features files; see :func:`cross_validate_bags`."""
    return cross_validate_bags(BagDataset(paths, labels, in_memory=in_memory), folds=folds, seed=seed,
                               build_model=build_model, settings=settings, out_dir=out_dir, progress=progress)


def cross_validate_bags(bags: BagDataset, *, folds: int = 4, seed: int = 0,
                        build_model: Callable[[int], Any] | None = None, settings: MilFitSettings | None = None,
                        out_dir: str | Path | None = None, progress: StepCallback | None = None) -> CvResult:
    """k-fold cross-validation split by slide, each slide scored by the fold model that never saw it.

    Folds are scikit-learn's ``StratifiedKFold(folds, shuffle=True, random_state=seed)`` over the
    slide labels. In each fold a slide-stratified eighth of the training slides (at least one per
    class) is held back for :func:`fit_mil`'s early stopping and choice of the best epoch; the model
    is then scored on the held-out fold.

    Parameters
    ----------
    bags : BagDataset
        One bag per slide, labels 0/1.
    folds : int
        k >= 2; every class needs at least k slides.
    seed : int
        Seeds the split, each fold's initial weights and (plus the fold number) its training.
    build_model : callable, optional
        ``build_model(D) -> model`` called once per fold; default
        ``create_model("abmil", kind="mil", in_chans=D)``.
    settings : MilFitSettings, optional
    out_dir : str or Path, optional
        Per fold ``fold_<k>/``: ``model.pt`` (a cadx checkpoint with the fold's slides and metrics)
        and the resume file; a rerun resumes unfinished folds and re-scores finished ones.
    progress : callable, optional
        ``progress(step, total, metrics)`` of each fold's training; ``metrics["fold"]`` is the fold.

    Returns
    -------
    CvResult

    Raises
    ------
    ConfigError
        Fewer than 2 folds, labels other than 0/1, or a class with fewer slides than folds.
    """
    import torch
    from sklearn.model_selection import StratifiedKFold, train_test_split

    settings = settings or MilFitSettings()
    y = bags.labels
    counts = np.bincount(y, minlength=2) if len(y) else np.zeros(2, int)
    if folds < 2 or len(counts) != 2 or counts.min() < folds:
        raise ConfigError(f"MIL cross-validation: {folds} folds need labels 0/1 with at least {folds} slides each "
                          f"(got {counts.tolist()} slides per label)")
    d = bags.feature_dim
    build = build_model or (lambda dim: create_model("abmil", kind="mil", in_chans=dim))
    result = CvResult()
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (train_idx, test_idx) in enumerate(splitter.split(np.zeros(len(y)), y)):
        n_val = max(2, int(round(len(train_idx) / 8)))
        strat = y[train_idx] if np.bincount(y[train_idx]).min() >= 2 else None
        fit_idx, val_idx = train_test_split(train_idx, test_size=n_val, stratify=strat, random_state=seed + k)
        torch.manual_seed(seed * 1009 + k)
        model = build(d)
        fold_dir = Path(out_dir) / f"fold_{k}" if out_dir is not None else None
        on_step = None if progress is None else _with_fold(progress, k)
        fit_result = fit_mil(model, bags.subset(fit_idx), bags.subset(val_idx),
                             dataclasses.replace(settings, seed=settings.seed + k), out_dir=fold_dir, progress=on_step)
        test = bags.subset(test_idx)
        losses, probs = [], []
        for i in range(len(test)):
            x, label, name = test[i]
            p = bag_predict(model, x)
            result.oof[name] = {"label": label, "fold": k, **p}
            probs.append(p["probability"])
            losses.append(-np.log(max(p["probability"] if label == 1 else 1 - p["probability"], 1e-12)))
        yt = test.labels
        metrics: dict[str, Any] = {
            "fold": k, "auc": roc_auc(yt, probs) if len(set(yt.tolist())) == 2 else float("nan"),
            "loss": float(np.mean(losses)), "n_train": len(fit_idx), "n_val": len(val_idx), "n_test": len(test_idx),
            "best_epoch": fit_result.best.get("epoch"), "epochs": fit_result.steps // len(fit_idx),
            "stopped_early": fit_result.stopped_early, "checkpoint": None}
        if fold_dir is not None:
            metrics["checkpoint"] = save_checkpoint(
                fold_dir / FOLD_CHECKPOINT, model, train_config=settings,
                metrics={k_: v for k_, v in metrics.items() if k_ != "checkpoint"},
                extra={"fold": k, "slides": {"train": [bags.names[i] for i in fit_idx],
                                             "val": [bags.names[i] for i in val_idx],
                                             "test": [bags.names[i] for i in test_idx]}})
        log.info("MIL fold %d: slide AUC %.3f on %d slides", k, metrics["auc"], len(test_idx))
        result.per_fold.append(metrics)
    for key in ("auc", "loss"):
        values = np.array([f[key] for f in result.per_fold], float)
        result.mean[key] = float(values.mean())
        result.sd[key] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return result


def _with_fold(progress: StepCallback, fold: int) -> StepCallback:
    def on_step(step: int, total: int, metrics: dict[str, Any]) -> None:
        progress(step, total, {**metrics, "fold": fold})

    return on_step
