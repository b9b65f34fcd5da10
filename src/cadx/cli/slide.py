"""``cadx slide info|mask|tile``: inspect, mask and tile whole-slide images."""

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


def _info(args: argparse.Namespace) -> int:
    from cadx.io.slide import open_slide

    with open_slide(args.slide, mpp=args.mpp_override) as slide:
        info = slide.info()
    if args.json:
        print_json(info)
        return 0
    mpp = ("unknown (pass --mpp-override)" if info["mpp_x"] is None
           else f"{info['mpp_x']:.4f} x {info['mpp_y']:.4f} um/px")
    print(f"{info['name']}  ({info['vendor']})")
    print(f"  path   {info['path']}")
    print(f"  mpp    {mpp}")
    print(f"  levels {info['level_count']}")
    print("  level  width x height    downsample   um/px")
    for i, ((w, h), ds) in enumerate(zip(info["level_dimensions"], info["level_downsamples"], strict=True)):
        lm = "" if info["mpp_x"] is None else f"{info['mpp_x'] * ds:.3f}"
        print(f"  {i:>5}  {w:>7} x {h:<8}  {ds:>10.3f}  {lm:>6}")
    return 0


def _mask(args: argparse.Namespace) -> int:
    from cadx.io.atomic import ensure_not_input
    from cadx.io.slide import open_slide
    from cadx.wsi.preview import write_mask_png, write_mask_preview
    from cadx.wsi.tissue import detect_tissue

    raw = Path(args.mask_out) if args.mask_out else Path(args.out).with_suffix(".mask.png")
    ensure_not_input(args.out, args.slide)
    ensure_not_input(raw, args.slide)
    with open_slide(args.slide, mpp=args.mpp_override) as slide:
        tissue = detect_tissue(slide, mask_mpp=args.mask_mpp)
        write_mask_preview(args.out, slide, tissue)
    write_mask_png(raw, tissue)
    summary = {"slide": str(args.slide), "tissue_mm2": tissue.area_um2 / 1e6, "mask_mpp": tissue.mpp,
               "method": tissue.method, "saturation_threshold": tissue.saturation_threshold,
               "overlay": str(args.out), "mask": str(raw)}
    if args.json:
        print_json(summary)
    else:
        print(f"{Path(args.slide).name}: tissue {tissue.area_um2 / 1e6:.2f} mm2 at {tissue.mpp:.2f} um/px "
              f"({tissue.method}, saturation > {tissue.saturation_threshold:.3f}); overlay {args.out}, mask {raw}")
    return 0


def _tile(args: argparse.Namespace) -> int:
    from cadx.wsi.tiling import find_slides, tile_cohort

    slides = find_slides(args.slides)
    if not slides:
        raise CadxError(f"no slides found in {', '.join(args.slides)}")
    if args.overlap >= args.tile_size:
        raise CadxError(f"--overlap {args.overlap} must be smaller than --tile-size {args.tile_size}")
    report = tile_cohort(
        slides, args.out, annotations=args.annotations, mpp_override=args.mpp_override, previews=args.preview,
        target_mpp=None if args.level is not None else args.target_mpp, level=args.level,
        tile_size_px=args.tile_size, overlap_px=args.overlap, min_tissue=args.min_tissue, mask_mpp=args.mask_mpp,
        overwrite=args.overwrite,
    )
    if args.json:
        print_json({"written": [str(p) for p in report.written], "tiles": report.n_tiles,
                    "skipped": [str(p) for p in report.skipped],
                    "failures": [[str(p), why] for p, why in report.failures]})
    else:
        skipped = (f" ({len(report.skipped)} skipped: already tiled with these settings; --overwrite redoes them)"
                   if report.skipped else "")
        print(f"tiled {len(report.written)} of {len(slides)} slides, {report.n_tiles} tiles -> {args.out}{skipped}")
    return report_failures(report.failures)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``cadx slide ...``."""
    slide = sub.add_parser("slide", help="inspect, mask and tile whole-slide images")
    ss = slide.add_subparsers(dest="slide_command", required=True, metavar="SUBCOMMAND")

    info = ss.add_parser("info", help="levels, dimensions, downsamples, mpp, vendor")
    info.add_argument("slide", help="slide file (TIFF, SVS, NDPI, MRXS, ... or PNG/JPEG)")
    info.add_argument("--json", action="store_true", help="print JSON")
    add_mpp_override(info, legacy_mpp=True)
    info.set_defaults(func=_info)

    mask = ss.add_parser("mask", help="tissue mask (HSV saturation + Otsu) and its overlay PNG")
    mask.add_argument("slide")
    mask.add_argument("--out", required=True, help="overlay PNG (thumbnail with the mask)")
    mask.add_argument("--mask-out", help="binary mask PNG (default: OUT with .mask.png)")
    mask.add_argument("--mask-mpp", type=positive_float, default=16.0,
                      help="mask resolution, um/px (default 16, ~64x)")
    mask.add_argument("--json", action="store_true", help="print the result as JSON")
    add_mpp_override(mask, legacy_mpp=True)
    mask.set_defaults(func=_mask)

    tile = ss.add_parser("tile", help="tissue tiles at a resolution -> <slide>.h5 (CLAM layout)")
    tile.add_argument("slides", nargs="+", help="slide files and/or directories of slides")
    tile.add_argument("--out", required=True, help="output directory")
    tile.add_argument("--target-mpp", "--mpp", dest="target_mpp", type=positive_float, default=0.5,
                      help="tile resolution, um/px (default 0.5, '20x'; --mpp is the older spelling)")
    tile.add_argument("--level", type=non_negative_int, help="read this level as is (instead of --target-mpp)")
    tile.add_argument("--tile-size", type=positive_int, default=256, help="tile side in px at that resolution")
    tile.add_argument("--overlap", type=non_negative_int, default=0, help="overlap in px between neighbouring tiles")
    tile.add_argument("--min-tissue", type=fraction, default=0.5, help="minimum tissue fraction of a tile")
    tile.add_argument("--annotations", help="ASAP XML, or a directory of <slide>.xml: adds tumour fractions")
    tile.add_argument("--mask-mpp", type=positive_float, default=16.0, help="tissue-mask resolution, um/px")
    add_mpp_override(tile)
    tile.add_argument("--preview", action="store_true", help="also write <slide>.png with the tile grid")
    tile.add_argument("--overwrite", action="store_true",
                      help="tile every slide again (default: skip slides already tiled with the same settings)")
    tile.add_argument("--json", action="store_true", help="print the result as JSON")
    tile.set_defaults(func=_tile)
