"""``cadx train [TASK] --config``: fine-tune a model from a validated YAML config.

``TASK`` is ``camelyon16`` (the default, so ``cadx train --config x.yaml`` trains the CAMELYON16
tile classifier as before), ``seg`` (a CAMELYON16 tumour segmenter from the polygon annotations),
``mil`` (attention MIL on features files, slide labels only), ``derm`` (ISIC 2019 dermoscopy) or
``ct`` (RSNA 2019 head CT).
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: task -> help text of its config class
TASKS = {
    "camelyon16": "tile classifier on a CAMELYON16-layout directory (cadx.tasks.camelyon16.train.TrainConfig)",
    "seg": "tumour segmenter (U-Net on a timm encoder) on a CAMELYON16-layout directory, pixel masks from the "
           "ASAP polygons (cadx.tasks.camelyon16.seg.SegTrainConfig; needs pip install 'cadx[seg]')",
    "mil": "attention MIL on features files from `cadx features`, slide labels only: k-fold cross-validation, "
           "then a final model on every slide (cadx.tasks.camelyon16.mil.MilTrainConfig)",
    "derm": "dermoscopy classifier on an ISIC 2019 or folder-per-class directory "
            "(cadx.tasks.isic2019.train.DermTrainConfig)",
    "ct": "head-CT haemorrhage classifier on an RSNA 2019 directory (cadx.tasks.rsna_ich.train.CtTrainConfig)",
}


def _train(args: argparse.Namespace) -> int:
    if args.task == "mil":
        from cadx.tasks.camelyon16.mil import MilTrainConfig, train_mil

        path = train_mil(MilTrainConfig.from_yaml(args.config))  # validated before any work starts
        print(f"cross-validation: {Path(path).parent / 'cv.json'}")
        print(f"final model: {path}")
        return 0
    if args.task == "ct":
        from cadx.tasks.rsna_ich.train import CtTrainConfig, train_ct

        path = train_ct(CtTrainConfig.from_yaml(args.config))  # validated before any work starts
    elif args.task == "seg":
        from cadx.tasks.camelyon16.seg import SegTrainConfig, train_seg

        path = train_seg(SegTrainConfig.from_yaml(args.config))  # validated before any work starts
    elif args.task == "derm":
        from cadx.tasks.isic2019.train import DermTrainConfig, train_derm

        path = train_derm(DermTrainConfig.from_yaml(args.config))  # validated before any work starts
    else:
        from cadx.tasks.camelyon16.train import TrainConfig, train_tile_classifier

        path = train_tile_classifier(TrainConfig.from_yaml(args.config))
    print(f"best checkpoint: {path}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``cadx train``."""
    train = sub.add_parser("train", help="train a model: camelyon16 tiles (default), seg (tumour segmenter), mil "
                                         "on tile features, derm images or ct slices",
                           description="; ".join(f"{k}: {v}" for k, v in TASKS.items()))
    train.add_argument("task", nargs="?", choices=sorted(TASKS), default="camelyon16",
                       help="what to train (default: camelyon16)")
    train.add_argument("--config", required=True, help="YAML with the fields of the task's config class")
    train.set_defaults(func=_train)
