"""``cadx train``: fine-tune a tile classifier from a validated YAML config."""

from __future__ import annotations

import argparse


def _train(args: argparse.Namespace) -> int:
    from cadx.tasks.camelyon16.train import TrainConfig, train_tile_classifier

    cfg = TrainConfig.from_yaml(args.config)  # validated before any work starts
    path = train_tile_classifier(cfg)
    print(f"best checkpoint: {path}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``cadx train``."""
    train = sub.add_parser("train", help="fine-tune a tile classifier on a CAMELYON16-layout directory")
    train.add_argument("--config", required=True,
                       help="YAML with the fields of cadx.tasks.camelyon16.train.TrainConfig")
    train.set_defaults(func=_train)
