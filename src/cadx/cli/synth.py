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


def _derm(args: argparse.Namespace) -> int:
    from cadx.synth.derm import GROUND_TRUTH_CSV, SYNTH_CLASSES, generate_derm

    records = generate_derm(args.out, n=args.n, seed=args.seed, classes=args.classes.split(","), size_px=args.size,
                            revisit_fraction=args.revisit_fraction, atypical_fraction=args.atypical_fraction)
    lesions = len({r.lesion_id for r in records})
    counts = ", ".join(f"{c} {n}" for c in SYNTH_CLASSES if (n := sum(r.diagnosis == c for r in records)))
    print(f"wrote {len(records)} images of {lesions} lesions ({counts}) to {args.out} (seed {args.seed}); "
          f"labels {Path(args.out) / GROUND_TRUTH_CSV}")
    return 0


def _ct(args: argparse.Namespace) -> int:
    from cadx.synth.ct import LABEL_CSV, generate_ct

    records = generate_ct(args.out, studies=args.studies, seed=args.seed, slices_per_study=args.slices,
                          size_px=args.size, wrap_fraction=args.wrap_fraction, bleed_fraction=args.bleed_fraction)
    positive = sum(r.label("any") for r in records)
    patients = len({r.patient_id for r in records})
    print(f"wrote {len(records)} CT slices of {args.studies} studies ({patients} patients; {positive} slices with "
          f"haemorrhage) to {args.out} (seed {args.seed}); labels {Path(args.out) / LABEL_CSV}")
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
    de = sy.add_parser("derm", help="ISIC 2019-layout dermoscopy images (MEL, NV, BCC) with ground truth and metadata")
    de.add_argument("--out", required=True)
    de.add_argument("--n", type=positive_int, default=100, help="images (some lesions are photographed twice)")
    de.add_argument("--seed", type=non_negative_int, default=0)
    de.add_argument("--classes", default="MEL,NV,BCC", help="comma-separated subset of MEL,NV,BCC")
    de.add_argument("--size", type=_at_least_64, default=320, help="picture width in px (4:3 or square)")
    de.add_argument("--revisit-fraction", type=fraction, default=0.2, help="fraction of lesions photographed twice")
    de.add_argument("--atypical-fraction", type=fraction, default=0.2,
                    help="fraction of naevi and of melanomas drawn alike (atypical naevi, early melanomas)")
    de.set_defaults(func=_derm)
    ct = sy.add_parser("ct", help="RSNA 2019-layout head CT: DICOM slices and stage_2_train.csv (haemorrhage labels)")
    ct.add_argument("--out", required=True)
    ct.add_argument("--studies", type=positive_int, default=8, help="studies (one axial series each)")
    ct.add_argument("--seed", type=non_negative_int, default=0)
    ct.add_argument("--slices", type=_at_least_4, default=24, help="slices per study, skull base to vertex")
    ct.add_argument("--size", type=_at_least_32, default=512, help="image side in px (RSNA: 512)")
    ct.add_argument("--wrap-fraction", type=fraction, default=0.25,
                    help="fraction of studies with the 12-bit wrap quirk")
    ct.add_argument("--bleed-fraction", type=fraction, default=0.5, help="fraction of studies with a haemorrhage")
    ct.set_defaults(func=_ct)


def _at_least(minimum: int):
    def check(text: str) -> int:
        value = positive_int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value
    return check


_at_least_64 = _at_least(64)
_at_least_32 = _at_least(32)
_at_least_4 = _at_least(4)
