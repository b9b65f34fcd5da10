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
    if report.failures:
        print(f"{len(report.failures)} failed:", file=sys.stderr)
        for path, why in report.failures:
            print(f"  {path}: {why}", file=sys.stderr)
        return 1
    return 0


def _synth_slides(args: argparse.Namespace) -> int:
    from cadx.synth.cohort import generate_cohort

    slides = generate_cohort(args.out, n_tumor=args.tumor, n_normal=args.normal, n_test=args.test,
                             size_px=args.size, seed=args.seed, tumor_contrast=args.contrast,
                             artefacts=not args.no_artefacts, workers=args.workers)
    print(f"wrote {len(slides)} slides to {args.out} (seed {args.seed}); manifest {Path(args.out) / 'cohort.csv'}")
    return 0


def _annotations_mask(args: argparse.Namespace) -> int:
    from cadx.io.annotations import read_asap_xml
    from cadx.io.slide import open_slide
    from cadx.wsi.annotation_mask import write_annotation_mask_tiff

    anns = read_asap_xml(args.xml)
    with open_slide(args.slide, mpp=args.mpp) as slide:
        w, h = slide.dimensions
        n = 1
        while n < slide.level_count and w % 2**n == 0 and h % 2**n == 0 and min(w, h) >> n >= 512:
            n += 1
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

    run_demo(args.out, seed=args.seed, size_px=args.size)
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

    demo = sub.add_parser("demo", help="the main job on built-in synthetic data")
    demo.add_argument("--out", default="demo_out")
    demo.add_argument("--seed", type=int, default=2026)
    demo.add_argument("--size", type=int, default=8192, help="slide side in px")
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
