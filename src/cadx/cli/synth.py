"""``cadx synth ...``: synthetic data in the public datasets' own formats, with known ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from cadx.cli.common import fraction, non_negative_int, positive_float, positive_int


def _slides(args: argparse.Namespace) -> int:
    from cadx.synth.cohort import generate_cohort

    slides = generate_cohort(args.out, n_tumor=args.tumor, n_normal=args.normal, n_test=args.test,
                             size_px=args.size, seed=args.seed, tumor_contrast=args.contrast,
                             max_lesion_um=args.max_lesion_um,
                             artefacts=not args.no_artefacts, workers=args.workers)
    print(f"wrote {len(slides)} slides to {args.out} (seed {args.seed}); manifest {Path(args.out) / 'cohort.csv'}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``cadx synth ...``."""
    synth = sub.add_parser("synth", help="synthetic data with known ground truth")
    sy = synth.add_subparsers(dest="synth_command", required=True, metavar="SUBCOMMAND")
    sl = sy.add_parser("slides", help="CAMELYON16-layout cohort: pyramidal TIFFs, ASAP XML, reference.csv")
    sl.add_argument("--out", required=True)
    sl.add_argument("--tumor", type=non_negative_int, default=2, help="training tumour slides")
    sl.add_argument("--normal", type=non_negative_int, default=2, help="training normal slides")
    sl.add_argument("--test", type=non_negative_int, default=0, help="test slides (about half tumour)")
    sl.add_argument("--size", type=positive_int, default=8192, help="level-0 side in px (snapped for exact levels)")
    sl.add_argument("--seed", type=int, default=0)
    sl.add_argument("--contrast", type=fraction, default=0.6, help="tumour vs normal contrast, 0..1")
    sl.add_argument("--max-lesion-um", type=positive_float, help="cap on lesion diameters, um")
    sl.add_argument("--no-artefacts", action="store_true", help="no pen marks, borders or blur")
    sl.add_argument("--workers", type=positive_int, default=2, help="render threads")
    sl.set_defaults(func=_slides)
