"""``cadx predict slides`` (whole slides -> heatmaps, detections, slide scores), ``cadx predict mil``
(features files -> slide probability, attention heatmaps, detections, top-k galleries), ``cadx predict derm``
(dermoscopy images -> the ISIC submission CSV), ``cadx predict seg`` (whole slides -> probability-mask
TIFFs, tumour outlines, side-by-side figures) and ``cadx predict ct`` (DICOM slices -> the RSNA 2019
submission and per-study results)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cadx.cli.common import (
    add_mpp_override,
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
    print_json,
    report_failures,
)
from cadx.errors import CadxError


def _slides(args: argparse.Namespace) -> int:
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
    if args.stride is not None and args.stride > int(tile["size_px"]):
        raise CadxError(f"--stride {args.stride} is larger than the model's tile size {tile['size_px']} px "
                        "(tiles would leave gaps)")
    report = predict_slides(slides, predictor, args.out, tile=tile, stride_px=args.stride, tta=args.tta,
                            batch_size=args.batch_size, nms_threshold=args.nms_threshold,
                            nms_radius_um=args.nms_radius_um, mpp_override=args.mpp_override,
                            slide_classifier=args.slide_classifier, model_id=meta["checkpoint_sha256"],
                            overwrite=args.overwrite)
    if args.json:
        print_json({"scores": report.scores, "failures": [[str(p), why] for p, why in report.failures],
                    "skipped": [str(p) for p in report.skipped], "out": args.out})
    else:
        skipped = (f", {len(report.skipped)} skipped: already predicted with this model and these settings "
                   "(--overwrite redoes them)" if report.skipped else "")
        print(f"predicted {len(report.scores) - len(report.skipped)} of {len(slides)} slides{skipped} -> {args.out} "
              "(slide_scores.csv, <slide>.h5/.png/.csv)")
    return report_failures(report.failures)


def _mil(args: argparse.Namespace) -> int:
    from cadx.tasks.camelyon16.mil_predict import predict_mil

    report = predict_mil(args.model, args.features, args.out, slides_dir=args.slides, top_k=args.top_k,
                         nms_threshold=args.nms_threshold, nms_radius_um=args.nms_radius_um)
    if args.json:
        print_json({"scores": report.scores, "galleries": report.galleries, "overlays": report.overlays,
                    "failures": [[str(p), why] for p, why in report.failures], "out": args.out})
    else:
        images = f", {len(report.overlays)} with overlay and top-{args.top_k} gallery" if args.slides else ""
        print(f"predicted {len(report.scores)} slides{images} -> {args.out} "
              "(slide_scores.csv, <slide>.h5/.csv/.xml/.geojson)")
    return report_failures(report.failures)


def _seg(args: argparse.Namespace) -> int:
    from cadx.inference.predictor import load_predictor
    from cadx.tasks.camelyon16.seg_predict import check_tile_spec, predict_seg
    from cadx.wsi.tiling import find_slides

    slides = find_slides(args.slides)
    if not slides:
        raise CadxError(f"no slides found in {', '.join(args.slides)}")
    predictor, meta = load_predictor(args.model, backend=args.backend)
    tile = meta.get("tile") or {}
    check_tile_spec(tile, str(args.model))
    size = int(tile["size_px"])
    overlap = size // 4 if args.overlap is None else args.overlap
    if overlap > size // 2 or size % args.out_downsample or overlap % args.out_downsample:
        raise CadxError(f"--overlap {overlap} must be at most half the model's tile size {size} px, and "
                        f"--out-downsample {args.out_downsample} must divide both")
    report = predict_seg(slides, predictor, args.out, tile=tile, overlap_px=overlap,
                         out_downsample=args.out_downsample, threshold=args.threshold, batch_size=args.batch_size,
                         annotations=args.annotations, mpp_override=args.mpp_override,
                         model_id=meta["checkpoint_sha256"], overwrite=args.overwrite)
    if args.json:
        print_json({"masks": report.masks, "failures": [[str(p), why] for p, why in report.failures],
                    "skipped": [str(p) for p in report.skipped], "out": args.out})
    else:
        skipped = (f", {len(report.skipped)} skipped: already predicted with this model and these settings "
                   "(--overwrite redoes them)" if report.skipped else "")
        print(f"segmented {len(report.masks) - len(report.skipped)} of {len(slides)} slides{skipped} -> {args.out} "
              "(<slide>_mask.tif, <slide>.xml/.geojson/.png)")
    return report_failures(report.failures)


def _derm(args: argparse.Namespace) -> int:
    from cadx.inference.predictor import load_predictor
    from cadx.io.images import find_images
    from cadx.models.checkpoint import read_checkpoint
    from cadx.tasks.isic2019.predict import check_outputs, checkpoint_preprocess, predict_images

    images = find_images(args.images)
    if not images:
        raise CadxError(f"no images found in {', '.join(args.images)}")
    check_outputs(images, args.out)
    # Not a dermoscopy model: one clear line before any work (load_predictor may export ONNX beside it).
    checkpoint_preprocess(read_checkpoint(args.model), args.model)
    predictor, meta = load_predictor(args.model, backend=args.backend)
    report = predict_images(images, predictor, meta, args.out, batch_size=args.batch_size)
    if args.json:
        probs = {name: {c: round(float(v), 6) for c, v in zip(report.class_names, row, strict=True)}
                 for name, row in zip(report.names, report.probs, strict=True)}
        print_json({"predictions": str(report.csv_path), "classes": list(report.class_names),
                    "temperature": report.temperature, "probabilities": probs,
                    "failures": [[str(p), why] for p, why in report.failures]})
    else:
        print(f"predicted {len(report.names)} of {len(images)} images -> {report.csv_path} "
              f"(columns image,{','.join(report.class_names)}; temperature {report.temperature:.3g})")
    return report_failures(report.failures)


def _ct(args: argparse.Namespace) -> int:
    from cadx.inference.predictor import load_predictor
    from cadx.io.atomic import ensure_not_input
    from cadx.models.checkpoint import read_checkpoint
    from cadx.tasks.rsna_ich.predict import (
        STUDIES_CSV,
        SUBMISSION_CSV,
        checkpoint_ct_input,
        find_dicoms,
        predict_ct,
    )

    files = find_dicoms(args.dicoms)
    if not files:
        raise CadxError(f"no DICOM files found in {', '.join(args.dicoms)}")
    for name in (SUBMISSION_CSV, STUDIES_CSV, "predict.json"):
        ensure_not_input(Path(args.out) / name, *files)
    # Not a head-CT model: one clear line before any work (load_predictor may export ONNX beside it).
    checkpoint_ct_input(read_checkpoint(args.model), args.model)
    predictor, meta = load_predictor(args.model, backend=args.backend)
    report = predict_ct(files, predictor, meta, args.out, batch_size=args.batch_size)
    if args.json:
        print_json({"submission": str(report.submission), "studies_csv": str(report.studies_csv),
                    "studies": {k: {"patient": p, "slices": n, **{c: round(float(v), 6)
                                                                  for c, v in zip(_SUBTYPES, best, strict=True)}}
                                for k, (p, n, best) in report.studies.items()},
                    "failures": [[str(p), why] for p, why in report.failures]})
    else:
        print(f"predicted {len(report.image_ids)} of {len(files)} slices in {len(report.studies)} studies -> "
              f"{report.submission}, {report.studies_csv}")
    return report_failures(report.failures)


_SUBTYPES = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any")


def _add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["auto", "onnx", "torch"], default="auto",
                        help="auto: ONNX Runtime on CPU, PyTorch on a GPU")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``cadx predict ...``."""
    predict = sub.add_parser("predict", help="run a checkpoint")
    ps = predict.add_subparsers(dest="predict_command", required=True, metavar="SUBCOMMAND")
    pr = ps.add_parser("slides", help="heatmaps (HDF5 + PNG), detections (CSV/XML/GeoJSON), slide scores")
    pr.add_argument("slides", nargs="+", help="slide files and/or directories")
    pr.add_argument("--model", required=True, help="cadx checkpoint (.pt)")
    pr.add_argument("--out", required=True)
    _add_backend(pr)
    pr.add_argument("--stride", type=positive_int,
                    help="tile stride in px at the model's resolution (default: tile size)")
    pr.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    pr.add_argument("--batch-size", type=positive_int, default=16,
                    help="tiles per model call (16 keeps ONNX Runtime's CPU memory arena small)")
    pr.add_argument("--nms-threshold", type=fraction, default=0.1, help="lowest probability reported as a detection")
    pr.add_argument("--nms-radius-um", type=positive_float, default=150.0, help="non-maximum suppression radius")
    add_mpp_override(pr)
    pr.add_argument("--slide-classifier", help="slide forest from `cadx slide-classifier fit` (adds rf_score)")
    pr.add_argument("--overwrite", action="store_true",
                    help="predict every slide again (default: skip slides already predicted with this checkpoint "
                         "and these settings)")
    pr.add_argument("--json", action="store_true", help="print slide scores and failures as JSON")
    pr.set_defaults(func=_slides)

    pm = ps.add_parser("mil", help="attention MIL on features files: slide probability, attention heatmaps (HDF5 + "
                       "PNG), detections (CSV/XML/GeoJSON), top-k attended tiles")
    pm.add_argument("--model", required=True, help="MIL checkpoint (.pt) from `cadx train mil`")
    pm.add_argument("--features", required=True, help="folder of `cadx features` (h5_files/<slide>.h5)")
    pm.add_argument("--out", required=True)
    pm.add_argument("--slides", help="folder holding the slides (searched recursively): adds the overlay PNG and "
                    "the gallery of the most attended tiles")
    pm.add_argument("--top-k", type=positive_int, default=8, help="tiles in the gallery")
    pm.add_argument("--nms-threshold", type=fraction, default=0.1,
                    help="lowest attention x slide probability reported as a detection")
    pm.add_argument("--nms-radius-um", type=positive_float, default=150.0, help="non-maximum suppression radius")
    pm.add_argument("--json", action="store_true", help="print slide scores, files and failures as JSON")
    pm.set_defaults(func=_mil)

    sg = ps.add_parser("seg", help="segmentation: probability-mask TIFF (pyramidal, with mpp), tumour outlines "
                       "(ASAP XML, GeoJSON), H&E with truth | predicted mask (PNG)")
    sg.add_argument("slides", nargs="+", help="slide files and/or directories")
    sg.add_argument("--model", required=True, help="segmentation checkpoint (.pt) from `cadx train seg`")
    sg.add_argument("--out", required=True)
    _add_backend(sg)
    sg.add_argument("--overlap", type=non_negative_int,
                    help="overlap of neighbouring tiles in px at the model's resolution (default: a quarter tile)")
    sg.add_argument("--out-downsample", type=positive_int, default=4,
                    help="tile pixels per mask pixel (the mask is this much coarser than the tiles)")
    sg.add_argument("--threshold", type=fraction, default=0.5, help="tumour probability for the outlines")
    sg.add_argument("--batch-size", type=positive_int, default=16, help="tiles per model call")
    sg.add_argument("--annotations", help="folder of ground-truth <slide>.xml for the figure's outline (default: "
                    "lesion_annotations/ beside the slides' folder, the CAMELYON16 layout)")
    add_mpp_override(sg)
    sg.add_argument("--overwrite", action="store_true",
                    help="predict every slide again (default: skip slides already predicted with this checkpoint "
                         "and these settings)")
    sg.add_argument("--json", action="store_true", help="print mask files and failures as JSON")
    sg.set_defaults(func=_seg)

    pd = ps.add_parser("derm", help="dermoscopy images -> predictions.csv in the ISIC submission layout")
    pd.add_argument("images", nargs="+", help="image files and/or directories")
    pd.add_argument("--model", required=True, help="cadx checkpoint (.pt) from `cadx train derm`")
    pd.add_argument("--out", required=True, help="output folder (predictions.csv, predict.json)")
    pd.add_argument("--batch-size", type=positive_int, default=32, help="images per model call")
    _add_backend(pd)
    pd.add_argument("--json", action="store_true", help="print probabilities and failures as JSON")
    pd.set_defaults(func=_derm)

    pc = ps.add_parser("ct", help="head-CT DICOM slices -> RSNA 2019 submission.csv and per-study studies.csv")
    pc.add_argument("dicoms", nargs="+", help="DICOM files and/or directories (searched for *.dcm)")
    pc.add_argument("--model", required=True, help="cadx checkpoint (.pt) from `cadx train ct`")
    pc.add_argument("--out", required=True, help="output folder (submission.csv, studies.csv, predict.json)")
    pc.add_argument("--batch-size", type=positive_int, default=32, help="slices per model call")
    _add_backend(pc)
    pc.add_argument("--json", action="store_true", help="print per-study probabilities and failures as JSON")
    pc.set_defaults(func=_ct)
