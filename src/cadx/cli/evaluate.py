"""``cadx evaluate camelyon``: a challenge's own metrics on a predictions folder."""

from __future__ import annotations

import argparse

from cadx.cli.common import fraction, print_json


def _camelyon(args: argparse.Namespace) -> int:
    from cadx.tasks.camelyon16.evaluate import evaluate_camelyon

    m = evaluate_camelyon(args.pred, args.truth, out_dir=args.out, threshold=args.threshold,
                          score_column=args.score_column)
    if args.json:
        print_json(m)
        return 0
    print(f"slides {m['slides']} ({m['tumor_slides']} tumour)  slide AUC {m['slide_auc']:.3f} "
          f"(95% CI {m['slide_auc_ci95'][0]:.3f}-{m['slide_auc_ci95'][1]:.3f})  "
          f"sens/spec@{args.threshold} {m['slide_sensitivity']:.2f}/{m['slide_specificity']:.2f}")
    print(f"FROC {m['froc']:.3f}  " + "  ".join(f"{k} FP: {v:.3f}" for k, v in m["froc_sensitivities"].items()))
    if "tile_auc" in m:
        print(f"tile AUC {m['tile_auc']:.3f}  sensitivity {m['tile_sensitivity']:.3f}  "
              f"specificity {m['tile_specificity']:.3f}")
    print(f"wrote metrics.json, per_slide.csv, roc.png, froc.png to {args.out or args.pred}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``cadx evaluate ...``."""
    ev = sub.add_parser("evaluate", help="score predictions with a challenge's own metrics")
    es = ev.add_subparsers(dest="evaluate_command", required=True, metavar="SUBCOMMAND")
    ec = es.add_parser("camelyon", help="slide AUC (bootstrap CI), lesion FROC, tile AUC; plots")
    ec.add_argument("--pred", required=True, help="folder written by `cadx predict slides`")
    ec.add_argument("--truth", required=True,
                    help="CAMELYON16 testing folder: reference.csv + lesion_annotations/")
    ec.add_argument("--out", help="where metrics and plots go (default: --pred)")
    ec.add_argument("--threshold", type=fraction, default=0.5)
    ec.add_argument("--score-column", default="score", help="slide score column: score (max) or rf_score")
    ec.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ec.set_defaults(func=_camelyon)
