"""``cadx slide-classifier fit``: the slide-level random forest on heatmap features."""

from __future__ import annotations

import argparse
from pathlib import Path

from cadx.errors import CadxError


def _fit(args: argparse.Namespace) -> int:
    from cadx.io.atomic import ensure_not_input
    from cadx.io.tables import read_reference
    from cadx.tasks.camelyon16.slide_forest import (
        fit_slide_forest,
        label_from_name,
        read_feature_table,
        save_slide_forest,
    )

    ensure_not_input(args.out, Path(args.pred) / "slide_scores.csv", args.reference)
    names, feats = read_feature_table(args.pred)
    if args.reference:
        ref = read_reference(args.reference)
        missing = [n for n in names if n.lower() not in ref]
        if missing:
            raise CadxError(f"{args.reference}: no label for {len(missing)} predicted slides: {', '.join(missing[:5])}")
        labels = [ref[n.lower()] for n in names]
    else:
        labels = [label_from_name(n) for n in names]
    save_slide_forest(args.out, fit_slide_forest(feats, labels, seed=args.seed))
    print(f"{args.out}: random forest on {len(names)} slides ({sum(labels)} tumour)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``cadx slide-classifier ...``."""
    sc = sub.add_parser("slide-classifier", help="slide-level random forest on heatmap features")
    scs = sc.add_subparsers(dest="sc_command", required=True, metavar="SUBCOMMAND")
    fit = scs.add_parser("fit", help="fit on the predictions of training slides")
    fit.add_argument("--pred", required=True, help="`cadx predict slides` output for training slides")
    fit.add_argument("--reference", help="reference.csv with labels (default: tumor_/normal_ names)")
    fit.add_argument("--out", required=True, help="output file, JSON (e.g. slide_forest.json)")
    fit.add_argument("--seed", type=int, default=0)
    fit.set_defaults(func=_fit)
