"""``cadx features``: tissue tiles of slides through a frozen encoder, one CLAM-layout HDF5 (and .pt) per slide."""

from __future__ import annotations

import argparse

from cadx.cli.common import add_mpp_override, fraction, positive_float, positive_int, print_json, report_failures
from cadx.errors import CadxError


def _features(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from cadx.inference.features import ENCODER_CACHE_DIR, H5_DIR, PT_DIR, extract_features, load_encoder
    from cadx.io.atomic import prepare_output_folder
    from cadx.wsi.tiling import find_slides

    slides = find_slides(args.slides)
    if not slides:
        raise CadxError(f"no slides found in {', '.join(args.slides)}")
    out = prepare_output_folder(args.out)
    predictor, encoder_id = load_encoder(args.encoder, weights=args.weights, input_size=args.tile_size,
                                         backend=args.backend, cache_dir=out / ENCODER_CACHE_DIR)
    with tqdm(desc="features", unit="tile") as bar:
        report = extract_features(slides, predictor, out, mpp=args.mpp, tile_size_px=args.tile_size,
                                  min_tissue=args.min_tissue, batch_size=args.batch_size, encoder_id=encoder_id,
                                  mpp_override=args.mpp_override, overwrite=args.overwrite, write_pt=not args.no_pt,
                                  progress=bar.update)
    tiles = sum(done["tiles"] for _, done in report.done)
    dim = predictor.config.num_classes if predictor.config.kind == "encoder" else None
    if args.json:
        print_json({"out": str(out), "encoder": args.encoder, "encoder_id": encoder_id, "feature_dim": dim,
                    "backend": type(predictor).__name__, "written": [str(d["h5"]) for _, d in report.done],
                    "tiles": tiles, "skipped": [str(p) for p in report.skipped],
                    "failures": [[str(p), why] for p, why in report.failures]})
    else:
        skipped = (f", {len(report.skipped)} skipped: already extracted with this encoder and these settings "
                   "(--overwrite redoes them)" if report.skipped else "")
        pts = "" if args.no_pt else f" and {out / PT_DIR}"
        print(f"extracted {len(report.done)} of {len(slides)} slides ({tiles} tiles, {dim}-d {args.encoder} "
              f"features){skipped} -> {out / H5_DIR}{pts}")
    return report_failures(report.failures)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``cadx features``."""
    from cadx.models.factory import DEFAULT_ENCODER, RESNET50_TRUNC

    p = sub.add_parser("features", help="tile features for attention MIL -> h5_files/<slide>.h5 (CLAM layout)",
                       description="Tissue tiles of each slide through a frozen encoder: <out>/h5_files/<slide>.h5 "
                                   "(features N x D, coords N x 2 level-0 x,y) and <out>/pt_files/<slide>.pt. "
                                   "Slides already extracted with the same encoder and settings are skipped.")
    p.add_argument("slides", nargs="+", help="slide files and/or directories of slides")
    p.add_argument("--encoder", default=DEFAULT_ENCODER,
                   help=f"a timm backbone, or {RESNET50_TRUNC} (CLAM's ResNet-50 to layer3, 1024-d; needs --weights "
                        f"with a ResNet-50 state dict); default {DEFAULT_ENCODER} (offline ImageNet weights, 1280-d)")
    p.add_argument("--weights", metavar="FILE", help="encoder weights (.pth/.safetensors state dict)")
    p.add_argument("--mpp", type=positive_float, required=True, help="tile resolution, um/px (0.5 is '20x')")
    p.add_argument("--tile-size", type=positive_int, required=True, help="tile side in px at that resolution")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--min-tissue", type=fraction, default=0.25, help="minimum tissue fraction of a tile (0.25)")
    p.add_argument("--backend", choices=["auto", "onnx", "torch"], default="auto",
                   help="auto: PyTorch on a GPU, else ONNX Runtime when installed (the encoder is exported once "
                        "to <out>/encoders)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="tiles per encoder call (16)")
    add_mpp_override(p)
    p.add_argument("--no-pt", action="store_true", help="do not write pt_files/<slide>.pt")
    p.add_argument("--overwrite", action="store_true", help="extract every slide again")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_features)
