"""``cadx demo [TASK]``: each task end to end on built-in synthetic data; ``all`` adds an index page."""

from __future__ import annotations

import argparse

from cadx.cli.common import fraction, positive_float, positive_int


def _demo(args: argparse.Namespace) -> int:
    from cadx.tasks.demo import run_demos

    camelyon = {"seed": args.seed, "size_px": args.size, "n_train": args.train_slides, "n_test": args.test_slides,
                "tumor_contrast": args.contrast, "max_lesion_um": args.max_lesion_um}
    mil = {**camelyon, "folds": args.folds}  # the same cohort: `cadx demo all` makes it once
    seg = {**camelyon, **({"steps": args.seg_steps} if args.seg_steps else {})}
    result = run_demos(args.out, args.task, options={"camelyon16": camelyon, "mil": mil, "seg": seg,
                                                     "derm": {"seed": args.seed}, "ct": {"seed": args.seed}})
    return 0 if not result["failed"] else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``cadx demo``."""
    from cadx.tasks import TASKS

    demo = sub.add_parser("demo", help="run a task end to end on built-in synthetic data ('all': every task)")
    demo.add_argument("task", nargs="?", default="camelyon16", choices=["all", *TASKS],
                      help="which task (default camelyon16; 'all' runs every task and writes OUT/index.html)")
    demo.add_argument("--out", default="demo_out")
    demo.add_argument("--seed", type=int, default=2026)
    camelyon = demo.add_argument_group("camelyon16, mil and seg options (mil and seg reuse the camelyon16 cohort)")
    camelyon.add_argument("--size", type=positive_int, default=8192, help="slide side in px")
    camelyon.add_argument("--train-slides", type=positive_int, default=6,
                          help="tumour (and as many normal) training slides")
    camelyon.add_argument("--test-slides", type=positive_int, default=16)
    camelyon.add_argument("--contrast", type=fraction, default=0.2, help="tumour vs normal contrast of the generator")
    camelyon.add_argument("--max-lesion-um", type=positive_float, default=500.0,
                          help="cap on lesion diameters (small micro-metastases keep FROC informative)")
    camelyon.add_argument("--folds", type=positive_int, default=4,
                          help="mil: cross-validation folds over all slides (>= 2)")
    camelyon.add_argument("--seg-steps", type=positive_int, default=None,
                          help="seg: U-Net training steps after the decoder warm-up (default: the demo's)")
    demo.set_defaults(func=_demo)
