"""The ``cadx`` command line: parse arguments, call one library function, format the output.

User errors (:class:`~cadx.errors.CadxError`) print one line, ``cadx: error: <file>: <problem>``,
and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from cadx import __version__
from cadx.errors import CadxError

log = logging.getLogger("cadx")


def _report_failures(failures: Sequence[tuple[Path, str]]) -> int:
    """List the inputs a cohort command skipped; exit status 1 if any."""
    if not failures:
        return 0
    print(f"{len(failures)} failed:", file=sys.stderr)
    for path, why in failures:
        print(f"  {path}: {why}", file=sys.stderr)
    return 1


def _slide_info(args: argparse.Namespace) -> int:
    from cadx.io.slide import open_slide

    with open_slide(args.slide, mpp=args.mpp) as slide:
        info = slide.info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    mpp = "unknown (pass --mpp)" if info["mpp_x"] is None else f"{info['mpp_x']:.4f} x {info['mpp_y']:.4f} um/px"
    print(f"{info['name']}  ({info['vendor']})")
    print(f"  path   {info['path']}")
    print(f"  mpp    {mpp}")
    print(f"  levels {info['level_count']}")
    print("  level  width x height    downsample   um/px")
    for i, ((w, h), ds) in enumerate(zip(info["level_dimensions"], info["level_downsamples"], strict=True)):
        lm = "" if info["mpp_x"] is None else f"{info['mpp_x'] * ds:.3f}"
        print(f"  {i:>5}  {w:>7} x {h:<8}  {ds:>10.3f}  {lm:>6}")
    return 0


def _slide_mask(args: argparse.Namespace) -> int:
    from cadx.io.slide import open_slide
    from cadx.wsi.preview import write_mask_png, write_mask_preview
    from cadx.wsi.tissue import detect_tissue

    with open_slide(args.slide, mpp=args.mpp) as slide:
        tissue = detect_tissue(slide, mask_mpp=args.mask_mpp)
        write_mask_preview(args.out, slide, tissue)
    raw = Path(args.mask_out) if args.mask_out else Path(args.out).with_suffix(".mask.png")
    write_mask_png(raw, tissue)
    print(f"{Path(args.slide).name}: tissue {tissue.area_um2 / 1e6:.2f} mm2 at {tissue.mpp:.2f} um/px "
          f"({tissue.method}, saturation > {tissue.saturation_threshold:.3f}); overlay {args.out}, mask {raw}")
    return 0


def _slide_tile(args: argparse.Namespace) -> int:
    from cadx.wsi.tiling import find_slides, tile_cohort

    slides = find_slides(args.slides)
    if not slides:
        raise CadxError(f"no slides found in {', '.join(args.slides)}")
    report = tile_cohort(
        slides, args.out, annotations=args.annotations, mpp_override=args.mpp_override, previews=args.preview,
        target_mpp=None if args.level is not None else args.mpp, level=args.level, tile_size_px=args.tile_size,
        overlap_px=args.overlap, min_tissue=args.min_tissue, mask_mpp=args.mask_mpp,
    )
    print(f"tiled {len(report.written)} of {len(slides)} slides, {report.n_tiles} tiles -> {args.out}")
    return _report_failures(report.failures)


def _synth_slides(args: argparse.Namespace) -> int:
    from cadx.synth.cohort import generate_cohort

    slides = generate_cohort(args.out, n_tumor=args.tumor, n_normal=args.normal, n_test=args.test,
                             size_px=args.size, seed=args.seed, tumor_contrast=args.contrast,
                             max_lesion_um=args.max_lesion_um,
                             artefacts=not args.no_artefacts, workers=args.workers)
    print(f"wrote {len(slides)} slides to {args.out} (seed {args.seed}); manifest {Path(args.out) / 'cohort.csv'}")
    return 0


def _annotations_mask(args: argparse.Namespace) -> int:
    from cadx.io.annotations import read_asap_xml
    from cadx.io.slide import open_slide
    from cadx.io.tiff import pyramid_level_count
    from cadx.wsi.annotation_mask import write_annotation_mask_tiff

    anns = read_asap_xml(args.xml)
    with open_slide(args.slide, mpp=args.mpp) as slide:
        w, h = slide.dimensions
        n = pyramid_level_count((w, h), max_levels=slide.level_count, exact=True)
        write_annotation_mask_tiff(args.out, anns, size_wh=(w, h), mpp=slide.mpp, n_levels=n, annotations_path=args.xml)
    print(f"{args.out}: {len(anns)} annotations, {n} levels")
    return 0


def _annotations_convert(args: argparse.Namespace) -> int:
    from cadx.io.annotations import read_asap_xml, write_geojson

    anns = read_asap_xml(args.xml)
    write_geojson(args.geojson, anns)
    print(f"{args.geojson}: {len(anns)} polygons")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from cadx.demo import run_demo

    run_demo(args.out, seed=args.seed, size_px=args.size, n_train=args.train_slides, n_test=args.test_slides,
             tumor_contrast=args.contrast, max_lesion_um=args.max_lesion_um)
    return 0


def _train(args: argparse.Namespace) -> int:
    from cadx.tasks.camelyon16.train import TrainConfig, train_tile_classifier

    cfg = TrainConfig.from_yaml(args.config)
    path = train_tile_classifier(cfg)
    print(f"best checkpoint: {path}")
    return 0


def _predict_slides(args: argparse.Namespace) -> int:
    from cadx.inference.predictor import load_predictor
    from cadx.tasks.camelyon16.predict import predict_slides
    from cadx.wsi.tiling import find_slides

    slides = find_slides(args.slides)
    if not slides:
        raise CadxError(f"no slides found in {', '.join(args.slides)}")
    predictor, meta = load_predictor(args.model, backend=args.backend)
    tile = meta.get("tile") or {}
    if "mpp" not in tile or "size_px" not in tile:
        raise CadxError(f"{args.model}: the checkpoint records no tile spec (mpp, size_px)")
    report = predict_slides(slides, predictor, args.out, tile=tile, stride_px=args.stride, tta=args.tta,
                            batch_size=args.batch_size, nms_threshold=args.nms_threshold,
                            nms_radius_um=args.nms_radius_um, mpp_override=args.mpp_override,
                            slide_classifier=args.slide_classifier)
    print(f"predicted {len(report.scores)} of {len(slides)} slides -> {args.out} (slide_scores.csv, <slide>.h5/.png/.csv)")
    return _report_failures(report.failures)


def _fit_slide_classifier(args: argparse.Namespace) -> int:
    from cadx.tasks.camelyon16.slide_forest import (
        fit_slide_forest,
        label_from_name,
        read_feature_table,
        save_slide_forest,
    )

    names, feats = read_feature_table(args.pred)
    if args.reference:
        from cadx.io.tables import read_reference

        ref = read_reference(args.reference)
        labels = [ref[n.lower()] for n in names]
    else:
        labels = [label_from_name(n) for n in names]
    save_slide_forest(args.out, fit_slide_forest(feats, labels, seed=args.seed))
    print(f"{args.out}: random forest on {len(names)} slides ({sum(labels)} tumour)")
    return 0


def _evaluate_camelyon(args: argparse.Namespace) -> int:
    from cadx.tasks.camelyon16.evaluate import evaluate_camelyon

    m = evaluate_camelyon(args.pred, args.truth, out_dir=args.out, threshold=args.threshold,
                          score_column=args.score_column)
    print(f"slides {m['slides']} ({m['tumor_slides']} tumour)  slide AUC {m['slide_auc']:.3f} "
          f"(95% CI {m['slide_auc_ci95'][0]:.3f}-{m['slide_auc_ci95'][1]:.3f})  "
          f"sens/spec@{args.threshold} {m['slide_sensitivity']:.2f}/{m['slide_specificity']:.2f}")
    print(f"FROC {m['froc']:.3f}  " + "  ".join(f"{k} FP: {v:.3f}" for k, v in m["froc_sensitivities"].items()))
    if "tile_auc" in m:
        print(f"tile AUC {m['tile_auc']:.3f}  sensitivity {m['tile_sensitivity']:.3f}  specificity {m['tile_specificity']:.3f}")
    print(f"wrote metrics.json, per_slide.csv, roc.png, froc.png to {args.out or args.pred}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full ``cadx`` argument parser."""
    p = argparse.ArgumentParser(
        prog="cadx",
        description="Computer-aided detection on medical images: a second opinion with its evidence.",
    )
    p.add_argument("--version", action="version", version=f"cadx {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    slide = sub.add_parser("slide", help="inspect, mask and tile whole-slide images")
    ss = slide.add_subparsers(dest="slide_command", required=True, metavar="SUBCOMMAND")

    info = ss.add_parser("info", help="levels, dimensions, downsamples, mpp, vendor")
    info.add_argument("slide", help="slide file (TIFF, SVS, NDPI, MRXS, ... or PNG/JPEG)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--mpp", type=float, help="level-0 um/px for files that do not record it")
    info.set_defaults(func=_slide_info)

    mask = ss.add_parser("mask", help="tissue mask (HSV saturation + Otsu) and its overlay PNG")
    mask.add_argument("slide")
    mask.add_argument("--out", required=True, help="overlay PNG (thumbnail with the mask)")
    mask.add_argument("--mask-out", help="binary mask PNG (default: OUT with .mask.png)")
    mask.add_argument("--mask-mpp", type=float, default=16.0, help="mask resolution, um/px (default 16, ~64x)")
    mask.add_argument("--mpp", type=float, help="level-0 um/px for files that do not record it")
    mask.set_defaults(func=_slide_mask)

    tile = ss.add_parser("tile", help="tissue tiles at a resolution -> <slide>.h5 (CLAM layout)")
    tile.add_argument("slides", nargs="+", help="slide files and/or directories of slides")
    tile.add_argument("--out", required=True, help="output directory")
    tile.add_argument("--mpp", type=float, default=0.5, help="tile resolution, um/px (default 0.5, '20x')")
    tile.add_argument("--level", type=int, help="read this level as is (instead of --mpp)")
    tile.add_argument("--tile-size", type=int, default=256, help="tile side in px at that resolution")
    tile.add_argument("--overlap", type=int, default=0, help="overlap in px between neighbouring tiles")
    tile.add_argument("--min-tissue", type=float, default=0.5, help="minimum tissue fraction of a tile")
    tile.add_argument("--annotations", help="ASAP XML, or a directory of <slide>.xml: adds tumour fractions")
    tile.add_argument("--mask-mpp", type=float, default=16.0, help="tissue-mask resolution, um/px")
    tile.add_argument("--mpp-override", type=float, help="level-0 um/px for files that do not record it")
    tile.add_argument("--preview", action="store_true", help="also write <slide>.png with the tile grid")
    tile.set_defaults(func=_slide_tile)

    synth = sub.add_parser("synth", help="synthetic data with known ground truth")
    sy = synth.add_subparsers(dest="synth_command", required=True, metavar="SUBCOMMAND")
    sl = sy.add_parser("slides", help="CAMELYON16-layout cohort: pyramidal TIFFs, ASAP XML, reference.csv")
    sl.add_argument("--out", required=True)
    sl.add_argument("--tumor", type=int, default=2, help="training tumour slides")
    sl.add_argument("--normal", type=int, default=2, help="training normal slides")
    sl.add_argument("--test", type=int, default=0, help="test slides (about half tumour)")
    sl.add_argument("--size", type=int, default=8192, help="level-0 side in px (snapped for exact levels)")
    sl.add_argument("--seed", type=int, default=0)
    sl.add_argument("--contrast", type=float, default=0.6, help="tumour vs normal contrast, 0..1")
    sl.add_argument("--max-lesion-um", type=float, help="cap on lesion diameters, um")
    sl.add_argument("--no-artefacts", action="store_true", help="no pen marks, borders or blur")
    sl.add_argument("--workers", type=int, default=2, help="render threads")
    sl.set_defaults(func=_synth_slides)

    ann = sub.add_parser("annotations", help="ASAP XML: masks and conversions")
    an = ann.add_subparsers(dest="annotations_command", required=True, metavar="SUBCOMMAND")
    am = an.add_parser("mask", help="CAMELYON-style mask TIFF (tumour 255) with the slide's geometry")
    am.add_argument("xml")
    am.add_argument("--slide", required=True)
    am.add_argument("--out", required=True)
    am.add_argument("--mpp", type=float, help="level-0 um/px for files that do not record it")
    am.set_defaults(func=_annotations_mask)
    ac = an.add_parser("convert", help="ASAP XML -> QuPath GeoJSON")
    ac.add_argument("xml")
    ac.add_argument("--geojson", required=True)
    ac.set_defaults(func=_annotations_convert)

    train = sub.add_parser("train", help="fine-tune a tile classifier on a CAMELYON16-layout directory")
    train.add_argument("--config", required=True, help="YAML with the fields of cadx.training.trainer.TrainConfig")
    train.set_defaults(func=_train)

    predict = sub.add_parser("predict", help="run a checkpoint")
    ps = predict.add_subparsers(dest="predict_command", required=True, metavar="SUBCOMMAND")
    pr = ps.add_parser("slides", help="heatmaps (HDF5 + PNG), detections (CSV/XML/GeoJSON), slide scores")
    pr.add_argument("slides", nargs="+", help="slide files and/or directories")
    pr.add_argument("--model", required=True, help="cadx checkpoint (.pt)")
    pr.add_argument("--out", required=True)
    pr.add_argument("--backend", choices=["auto", "onnx", "torch"], default="auto",
                    help="auto: ONNX Runtime on CPU, PyTorch on a GPU")
    pr.add_argument("--stride", type=int, help="tile stride in px at the model's resolution (default: tile size)")
    pr.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    pr.add_argument("--batch-size", type=int, default=16,
                    help="tiles per model call (16 keeps ONNX Runtime's CPU memory arena small)")
    pr.add_argument("--nms-threshold", type=float, default=0.1, help="lowest probability reported as a detection")
    pr.add_argument("--nms-radius-um", type=float, default=150.0, help="non-maximum suppression radius")
    pr.add_argument("--mpp-override", type=float, help="level-0 um/px for files that do not record it")
    pr.add_argument("--slide-classifier", help="random forest from `cadx slide-classifier fit` (adds rf_score)")
    pr.set_defaults(func=_predict_slides)

    sc = sub.add_parser("slide-classifier", help="slide-level random forest on heatmap features")
    scs = sc.add_subparsers(dest="sc_command", required=True, metavar="SUBCOMMAND")
    fit = scs.add_parser("fit", help="fit on the predictions of training slides")
    fit.add_argument("--pred", required=True, help="`cadx predict slides` output for training slides")
    fit.add_argument("--reference", help="reference.csv with labels (default: tumor_/normal_ names)")
    fit.add_argument("--out", required=True, help="output file, JSON (e.g. slide_forest.json)")
    fit.add_argument("--seed", type=int, default=0)
    fit.set_defaults(func=_fit_slide_classifier)

    ev = sub.add_parser("evaluate", help="score predictions with a challenge's own metrics")
    es = ev.add_subparsers(dest="evaluate_command", required=True, metavar="SUBCOMMAND")
    ec = es.add_parser("camelyon", help="slide AUC (bootstrap CI), lesion FROC, tile AUC; plots")
    ec.add_argument("--pred", required=True, help="folder written by `cadx predict slides`")
    ec.add_argument("--truth", required=True, help="CAMELYON16 testing folder: reference.csv + lesion_annotations/")
    ec.add_argument("--out", help="where metrics and plots go (default: --pred)")
    ec.add_argument("--threshold", type=float, default=0.5)
    ec.add_argument("--score-column", default="score", help="slide score column: score (max) or rf_score")
    ec.set_defaults(func=_evaluate_camelyon)

    demo = sub.add_parser("demo", help="the main job on built-in synthetic data (CAMELYON16 end to end)")
    demo.add_argument("--out", default="demo_out")
    demo.add_argument("--seed", type=int, default=2026)
    demo.add_argument("--size", type=int, default=8192, help="slide side in px")
    demo.add_argument("--train-slides", type=int, default=6, help="tumour (and as many normal) training slides")
    demo.add_argument("--test-slides", type=int, default=16)
    demo.add_argument("--contrast", type=float, default=0.2, help="tumour vs normal contrast of the generator")
    demo.add_argument("--max-lesion-um", type=float, default=500.0,
                      help="cap on lesion diameters (small micro-metastases keep FROC informative)")
    demo.set_defaults(func=_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cadx`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except CadxError as exc:
        print(f"cadx: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"cadx: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cadx: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
