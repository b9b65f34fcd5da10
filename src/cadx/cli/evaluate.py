"""``cadx evaluate camelyon|mil|seg|derm|ct``: a challenge's own metrics on a predictions folder or file."""

from __future__ import annotations

import argparse
from pathlib import Path

from cadx.cli.common import fraction, non_negative_int, print_json


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


def _mil(args: argparse.Namespace) -> int:
    from cadx.tasks.camelyon16.mil_evaluate import evaluate_mil

    m = evaluate_mil(args.pred, args.truth, out_dir=args.out, threshold=args.threshold)
    if args.json:
        print_json(m)
        return 0
    print(f"slides {m['slides']} ({m['tumor_slides']} tumour)  slide AUC {m['slide_auc']:.3f} "
          f"(95% CI {m['slide_auc_ci95'][0]:.3f}-{m['slide_auc_ci95'][1]:.3f})  "
          f"sens/spec@{args.threshold} {m['slide_sensitivity']:.2f}/{m['slide_specificity']:.2f}")
    print(f"tile AUC: attention {m['attention_tile_auc']:.3f} (tumour slides; per-slide mean "
          f"{m['attention_tile_auc_slide_mean']:.3f})  instance {m['instance_tile_auc']:.3f}  "
          f"attention x slide probability {m['detection_tile_auc']:.3f} ({m['tiles']} tiles)")
    print(f"FROC {m['froc']:.3f}  " + "  ".join(f"{k} FP: {v:.3f}" for k, v in m["froc_sensitivities"].items()))
    print(f"wrote metrics.json, per_slide.csv, roc.png, froc.png to {args.out or args.pred}")
    return 0


def _seg(args: argparse.Namespace) -> int:
    from cadx.tasks.camelyon16.seg_evaluate import evaluate_seg

    m = evaluate_seg(args.pred, args.truth, out_dir=args.out, level=args.level, threshold=args.threshold)
    if args.json:
        print_json(m)
        return 0

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    print(f"slides {m['slides']} ({m['tumor_slides']} tumour)  at level {m['level']}: Dice {num(m['dice'])}  "
          f"IoU {num(m['iou'])}  pixel AUC {num(m['pixel_auc'])}  sens/spec@{m['threshold']} "
          f"{num(m['sensitivity'])}/{num(m['specificity'])}")
    if m["froc"] is not None:
        print(f"FROC {m['froc']:.3f}  " + "  ".join(f"{k} FP: {v:.3f}" for k, v in m["froc_sensitivities"].items()))
    for r in m["per_slide"]:
        print(f"  {r['slide']:<16} {r['label']:<6} Dice {num(r['dice'])}  IoU {num(r['iou'])}  "
              f"AUC {num(r['pixel_auc'])}")
    print(f"wrote seg_metrics.json, seg_per_slide.csv to {args.out or args.pred}")
    return 0


def _derm(args: argparse.Namespace) -> int:
    from cadx.tasks.isic2019.evaluate import evaluate_derm

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    m = evaluate_derm(args.pred, args.truth, out_dir=args.out, classes=classes)
    if args.json:
        print_json(m)
        return 0

    def num(v: float | None) -> str:
        return "  n/a" if v is None else f"{v:.3f}"

    counts = ", ".join(f"{c} {n}" for c, n in m["class_counts"].items())
    print(f"images {m['images']} ({counts})  balanced accuracy {num(m['balanced_accuracy'])}  "
          f"accuracy {num(m['accuracy'])}  mean AUC {num(m['mean_auc'])}  ECE {num(m['ece'])}")
    print(f"{'class':<6} {'images':>6} {'sens':>6} {'spec':>6} {'prec':>6} {'F1':>6} {'AUC':>6}")
    for r in m["per_class"]:
        print(f"{r['class']:<6} {r['images']:>6} {num(r['sensitivity']):>6} {num(r['specificity']):>6} "
              f"{num(r['precision']):>6} {num(r['f1']):>6} {num(r['auc']):>6}")
    if m["excluded"]["images"]:
        by = ", ".join(f"{c} {n}" for c, n in m["excluded"]["by_class"].items())
        print(f"left out {m['excluded']['images']} images whose true class is not predicted ({by})")
    out = args.out if args.out is not None else Path(m["predictions"]).parent
    print(f"wrote metrics.json, per_class.csv, confusion.png, roc.png to {out}")
    return 0


def _ct(args: argparse.Namespace) -> int:
    from cadx.tasks.rsna_ich.evaluate import evaluate_ct

    m = evaluate_ct(args.pred, args.truth, out_dir=args.out)
    if args.json:
        print_json(m)
        return 0
    auc = "n/a" if m["mean_auc"] is None else f"{m['mean_auc']:.3f}"
    print(f"images {m['images']}  weighted log loss {m['weighted_log_loss']:.4f}  mean AUC {auc}")
    print(f"{'label':<17} {'pos':>5} {'logloss':>8} {'AUC':>6}")
    for r in m["per_label"]:
        a = "  n/a" if r["auc"] is None else f"{r['auc']:.3f}"
        print(f"{r['label']:<17} {r['positives']:>5} {r['log_loss']:>8.4f} {a:>6}")
    out = args.out if args.out is not None else Path(m["predictions"]).parent
    print(f"wrote metrics.json, per_label.csv, roc.png to {out}")
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
    em = es.add_parser("mil", help="attention MIL: slide AUC (bootstrap CI), attention and instance tile AUC, "
                       "lesion FROC from the attention map; plots")
    em.add_argument("--pred", required=True, help="folder written by `cadx predict mil`")
    em.add_argument("--truth", required=True,
                    help="CAMELYON16 root (training/ and/or testing/) or a testing folder (reference.csv + "
                         "lesion_annotations/)")
    em.add_argument("--out", help="where metrics and plots go (default: --pred)")
    em.add_argument("--threshold", type=fraction, default=0.5, help="slide probability operating point")
    em.add_argument("--json", action="store_true", help="print the metrics as JSON")
    em.set_defaults(func=_mil)
    eg = es.add_parser("seg", help="segmentation: Dice, IoU, pixel AUC, sensitivity/specificity per slide and "
                       "pooled; lesion FROC from the predicted mask")
    eg.add_argument("--pred", required=True, help="folder written by `cadx predict seg` (<slide>_mask.tif)")
    eg.add_argument("--truth", required=True, help="CAMELYON16 testing folder: lesion_annotations/ or <slide>_Mask.tif "
                    "(reference.csv optional: slides without truth are normal)")
    eg.add_argument("--out", help="where the metrics go (default: --pred)")
    eg.add_argument("--level", type=non_negative_int, default=5,
                    help="evaluation level: pixels of 2**level level-0 pixels (5, as the official FROC)")
    eg.add_argument("--threshold", type=fraction, default=0.5, help="tumour probability")
    eg.add_argument("--json", action="store_true", help="print the metrics as JSON")
    eg.set_defaults(func=_seg)
    ed = es.add_parser("derm", help="ISIC 2019: balanced accuracy, per-class metrics, one-vs-rest AUC; plots")
    ed.add_argument("--pred", required=True,
                    help="predictions CSV (image + one probability column per class) or its folder")
    ed.add_argument("--truth", required=True,
                    help="ISIC_2019_Training_GroundTruth.csv, a CSV in its layout, or the folder holding it")
    ed.add_argument("--out", help="where metrics and plots go (default: the folder of the predictions)")
    ed.add_argument("--classes", metavar="MEL,NV,BCC",
                    help="evaluate only these predicted classes (default: every prediction column)")
    ed.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ed.set_defaults(func=_derm)
    et = es.add_parser("ct", help="RSNA 2019 head CT: weighted multi-label log loss, per-label log loss and AUC; ROC")
    et.add_argument("--pred", required=True, help="submission CSV (ID,Label long format) or the folder holding "
                    "submission.csv")
    et.add_argument("--truth", required=True, help="stage_2_train.csv (or a CSV in its layout) or its folder")
    et.add_argument("--out", help="where metrics and plots go (default: the folder of the predictions)")
    et.add_argument("--json", action="store_true", help="print the metrics as JSON")
    et.set_defaults(func=_ct)
