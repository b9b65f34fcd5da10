"""Attention MIL on CAMELYON16: tumour regions from slide labels alone (``cadx train mil``).

The model, the bag dataset and the fitting loop are the generic ones (:mod:`cadx.models.mil`,
:mod:`cadx.datasets.bags`, :mod:`cadx.training.mil`); this module adds the inputs (features files from
``cadx features``, slide labels from a CSV or the CAMELYON16 layout) and the training recipe
(:func:`train_mil`: cross-validation, then a final model). Prediction is
:mod:`cadx.tasks.camelyon16.mil_predict`, evaluation :mod:`cadx.tasks.camelyon16.mil_evaluate`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, field_validator
from pydantic.dataclasses import dataclass

from cadx.errors import ConfigError, InputFileError
from cadx.io.atomic import atomic_path, prepare_output_folder
from cadx.io.h5 import read_features_attrs
from cadx.io.tables import csv_rows
from cadx.models.checkpoint import save_checkpoint
from cadx.tasks.camelyon16.layout import slide_truth
from cadx.training.config import CONFIG_DICT, ValidatedConfig, load_yaml_config

log = logging.getLogger(__name__)


# --- inputs: features files and slide labels ----------------------------------------------------


def features_files(features_dir: str | Path) -> dict[str, Path]:
    """Slide -> features file: ``features_dir/h5_files/*.h5`` (``cadx features``, CLAM) or ``features_dir/*.h5``.

    Raises
    ------
    InputFileError
        No such folder, or no ``.h5`` file in it.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "h5_files").mkdir()
    >>> _ = (d / "h5_files" / "Tumor_001.h5").write_bytes(b"")
    >>> {k: v.name for k, v in features_files(d).items()}
    {'tumor_001': 'Tumor_001.h5'}
    """
    root = Path(features_dir)
    if not root.is_dir():
        raise InputFileError(root, "no such features folder")
    folder = root / "h5_files" if (root / "h5_files").is_dir() else root
    found = {p.stem.lower(): p for p in sorted(folder.glob("*.h5"))}
    if not found:
        raise InputFileError(folder, "no features files (*.h5): run `cadx features` first")
    return found


def read_slide_labels(source: str | Path) -> dict[str, int]:
    """Slide -> label (1 tumour, 0 normal) from a ``slide,label`` CSV or a CAMELYON16 folder.

    Parameters
    ----------
    source : path
        A CSV whose header has ``slide`` and ``label`` columns (label ``1``/``0``, ``tumor``/``normal``
        or ``tumour``, any case), or a folder :func:`~cadx.tasks.camelyon16.layout.slide_truth`
        reads (training slides labelled by their folder, test slides by ``reference.csv``).

    Returns
    -------
    dict of str to int
        Lower-case slide names.

    Raises
    ------
    InputFileError
        Missing, no ``slide``/``label`` columns, an unknown label or a repeated slide (by row).

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "labels.csv"
    >>> _ = p.write_text("slide,label\\nTumor_001,tumor\\nnormal_001,0\\n")
    >>> read_slide_labels(p)
    {'tumor_001': 1, 'normal_001': 0}
    """
    path = Path(source)
    if path.is_dir():
        return {name: label for name, (label, _) in slide_truth(path).items()}
    rows = csv_rows(path, what="slide-labels")
    try:
        header_row, header = next(rows)
    except StopIteration:
        raise InputFileError(path, "empty: expected a header slide,label") from None
    header = [h.strip().lower() for h in header]
    if "slide" not in header or "label" not in header:
        raise InputFileError(path, f"row {header_row}: expected columns slide and label (got {', '.join(header)})")
    i_slide, i_label = header.index("slide"), header.index("label")
    out: dict[str, int] = {}
    for number, row in rows:
        row = row + [""] * (len(header) - len(row))
        name, text = row[i_slide].strip().lower(), row[i_label].strip().lower()
        if text not in _LABELS:
            raise InputFileError(path, f"row {number}, column label: {text!r}: expected 1/0 or tumor/normal")
        if not name or name in out:
            raise InputFileError(path, f"row {number}, column slide: {'empty' if not name else repr(name) + ' twice'}")
        out[name] = _LABELS[text]
    return out


_LABELS = {"1": 1, "0": 0, "tumor": 1, "tumour": 1, "normal": 0}


def labelled_bags(features_dir: str | Path, labels: str | Path) -> tuple[list[Path], list[int]]:
    """Features files with a label, sorted by slide; slides missing on either side are logged.

    Raises
    ------
    ConfigError
        No features file has a label.
    """
    files, known = features_files(features_dir), read_slide_labels(labels)
    names = sorted(set(files) & set(known))
    if not names:
        raise ConfigError(f"{features_dir}: none of {len(files)} features files has a label in {labels}")
    for what, missing in (("features without a label (left out)", set(files) - set(known)),
                          ("labelled slides without features", set(known) - set(files))):
        if missing:
            log.warning("%d %s: %s", len(missing), what, ", ".join(sorted(missing)[:5]))
    return [files[n] for n in names], [known[n] for n in names]


# --- training ------------------------------------------------------------------------------------


@dataclass(config=CONFIG_DICT)
class MilTrainConfig(ValidatedConfig):
    """A MIL training run (validated on creation; ``cadx train mil --config FILE`` reads it from YAML).

    Attributes
    ----------
    features_dir : str
        Features files (``cadx features``): ``h5_files/<slide>.h5`` or ``<slide>.h5``.
    labels : str
        A ``slide,label`` CSV or a CAMELYON16 folder (see :func:`read_slide_labels`).
    out_dir : str
        ``cv/fold_<k>/model.pt``, ``cv.json``, the final ``model.pt`` and ``history.json``.
    model : {"abmil", "maxmil"}
        Gated attention (CLAM-SB sizes) or the max-pooling baseline.
    folds : int
        Cross-validation folds (>= 2; each class needs as many slides).
    epochs, lr, weight_decay, patience, monitor, instance_weight, instance_k, dropout
        See :class:`cadx.training.mil.MilFitSettings`.
    seed : int
        Seeds the split, the weights and the bag order.
    """

    features_dir: str
    labels: str
    out_dir: str
    model: Literal["abmil", "maxmil"] = "abmil"
    folds: Annotated[int, Field(ge=2)] = 4
    epochs: PositiveInt = 50
    lr: PositiveFloat = 2e-4
    weight_decay: NonNegativeFloat = 1e-5
    patience: PositiveInt | None = 10
    monitor: Literal["val_loss", "val_auc"] = "val_loss"
    instance_weight: Annotated[float, Field(ge=0, le=1)] = 0.3
    instance_k: PositiveInt = 8
    dropout: Annotated[float, Field(ge=0, lt=1)] | None = None
    seed: int = 0

    @field_validator("features_dir")
    @classmethod
    def _features_exist(cls, value: str) -> str:
        try:
            features_files(value)
        except InputFileError as exc:  # reported as a ConfigError on the key
            raise ValueError(str(exc)) from None
        return value

    @field_validator("labels")
    @classmethod
    def _labels_exist(cls, value: str) -> str:
        if not Path(value).exists():
            raise ValueError(f"no such labels file or folder: {value}")
        return value

    @classmethod
    def from_yaml(cls, path: str | Path) -> MilTrainConfig:
        """Read and validate a YAML file whose keys are this class's fields (one-line ConfigError)."""
        return load_yaml_config(path, cls)

    def fit_settings(self, *, epochs: int | None = None) -> Any:
        """The :class:`~cadx.training.mil.MilFitSettings` of this run (``epochs`` overrides)."""
        from cadx.training.mil import MilFitSettings

        return MilFitSettings(epochs=epochs or self.epochs, lr=self.lr, weight_decay=self.weight_decay,
                              patience=self.patience, monitor=self.monitor, instance_weight=self.instance_weight,
                              instance_k=self.instance_k, seed=self.seed, dropout=self.dropout)


def train_mil(cfg: MilTrainConfig, *, show_progress: bool = True) -> Path:
    """Cross-validate, then train the final model on every labelled slide; returns its checkpoint.

    1. :func:`cadx.training.mil.cross_validate` over the slides (``cfg.folds`` folds split by
       slide, early stopping on a held-back eighth of each fold's training slides): fold models in
       ``out_dir/cv/fold_<k>/model.pt``, the folds' slide AUC and loss as mean +- sd and the
       out-of-fold probabilities in ``out_dir/cv.json``.
    2. The final model is trained on *all* slides (no slide is left for early stopping) for the
       median over folds of the best epoch, and saved as ``out_dir/model.pt`` with the
       cross-validation metrics; ``history.json`` holds its loss per epoch.

    Parameters
    ----------
    cfg : MilTrainConfig
    show_progress : bool
        A tqdm bar per fold and for the final model.

    Returns
    -------
    Path
        ``out_dir/model.pt``.

    Raises
    ------
    ConfigError
        No labelled features, or too few slides of a class for the folds.
    """
    import torch

    from cadx.datasets.bags import BagDataset
    from cadx.models.factory import create_model
    from cadx.training.mil import cross_validate_bags, fit_mil

    out = prepare_output_folder(cfg.out_dir)
    paths, labels = labelled_bags(cfg.features_dir, cfg.labels)
    bags = BagDataset(paths, labels)
    dim = bags.feature_dim

    def build(d: int) -> Any:
        return create_model(cfg.model, kind="mil", in_chans=d, num_classes=2)

    progress = _progress(show_progress)
    try:
        cv = cross_validate_bags(bags, folds=cfg.folds, seed=cfg.seed, build_model=build,
                                 settings=cfg.fit_settings(), out_dir=out / "cv", progress=progress)
    finally:
        progress.close()
    best = [f["best_epoch"] for f in cv.per_fold if f.get("best_epoch")]
    epochs = max(1, int(round(float(np.median(best))))) if best else cfg.epochs
    summary = {**cv.summary(), "final_epochs": epochs, "model": cfg.model, "slides": len(bags)}
    with atomic_path(out / "cv.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str))

    torch.manual_seed(cfg.seed)
    model = build(dim)
    progress = _progress(show_progress)
    try:
        result = fit_mil(model, bags, None, cfg.fit_settings(epochs=epochs), out_dir=out / "final",
                         progress=progress)
    finally:
        progress.close()
    attrs, _ = read_features_attrs(paths[0])
    metrics = {"cv_auc_mean": cv.mean["auc"], "cv_auc_sd": cv.sd["auc"], "cv_loss_mean": cv.mean["loss"],
               "cv_loss_sd": cv.sd["loss"], "cv_oof_auc": cv.oof_auc, "final_epochs": epochs,
               "train_slides": len(bags), "train_loss": result.history[-1].get("loss") if result.history else None}
    ckpt = save_checkpoint(out / "model.pt", model, train_config=dataclasses.asdict(cfg), metrics=metrics,
                           extra={"features": {k: attrs[k] for k in _FEATURE_KEYS if k in attrs},
                                  "slides": [p.stem for p in paths]})
    with atomic_path(out / "history.json") as tmp:
        tmp.write_text(json.dumps(result.history, indent=2, default=str))
    return ckpt


#: Features attributes a MIL checkpoint records: what its inputs must have been made with.
_FEATURE_KEYS = ("encoder", "weights", "feature_dim", "mpp", "tile_size_px", "tile_size_level0_px", "min_tissue")


def _progress(show: bool) -> Any:
    from cadx.training.recipe import TqdmProgress

    return TqdmProgress(monitor="val_auc", details={"val loss": "val_loss"}, disable=not show)


