"""``cadx annotations mask|convert``: ASAP XML to mask TIFFs and QuPath GeoJSON."""

from __future__ import annotations

import argparse

from cadx.cli.common import add_mpp_override


def _mask(args: argparse.Namespace) -> int:
    from cadx.io.annotations import read_asap_xml
    from cadx.io.atomic import ensure_not_input
    from cadx.io.slide import open_slide
    from cadx.io.tiff import pyramid_level_count
    from cadx.wsi.annotation_mask import write_annotation_mask_tiff

    ensure_not_input(args.out, args.xml, args.slide)
    anns = read_asap_xml(args.xml)
    with open_slide(args.slide, mpp=args.mpp_override) as slide:
        n = pyramid_level_count(slide.dimensions, max_levels=slide.level_count, exact=True)
        write_annotation_mask_tiff(args.out, anns, size_wh=slide.dimensions, mpp=slide.mpp, n_levels=n,
                                   annotations_path=args.xml)
    print(f"{args.out}: {len(anns)} annotations, {n} levels")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from cadx.io.annotations import read_asap_xml, write_geojson
    from cadx.io.atomic import ensure_not_input

    ensure_not_input(args.geojson, args.xml)
    anns = read_asap_xml(args.xml)
    write_geojson(args.geojson, anns)
    print(f"{args.geojson}: {len(anns)} polygons")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``cadx annotations ...``."""
    ann = sub.add_parser("annotations", help="ASAP XML: masks and conversions")
    an = ann.add_subparsers(dest="annotations_command", required=True, metavar="SUBCOMMAND")
    am = an.add_parser("mask", help="CAMELYON-style mask TIFF (tumour 255) with the slide's geometry")
    am.add_argument("xml")
    am.add_argument("--slide", required=True)
    am.add_argument("--out", required=True)
    add_mpp_override(am, legacy_mpp=True)
    am.set_defaults(func=_mask)
    ac = an.add_parser("convert", help="ASAP XML -> QuPath GeoJSON")
    ac.add_argument("xml")
    ac.add_argument("--geojson", required=True)
    ac.set_defaults(func=_convert)
