"""``cadx explain``: class activation maps of a checkpoint over image files, with the top classes."""

from __future__ import annotations

import argparse

from cadx.cli.common import print_json, report_failures
from cadx.errors import CadxError
from cadx.explain.cam import METHODS  # light: numpy only; torch and pytorch-grad-cam load when a map is made


def _explain(args: argparse.Namespace) -> int:
    from cadx.explain.images import explain_images, resolve_class
    from cadx.io.images import find_images
    from cadx.models.checkpoint import load_checkpoint
    from cadx.models.device import resolve_device

    paths = find_images(args.images)
    if not paths:
        raise CadxError(f"no images found in {', '.join(args.images)}")
    device = resolve_device("auto")
    model, meta = load_checkpoint(args.model, device=device)
    target = resolve_class(model.cadx_config, args.class_name) if args.class_name is not None else None
    report = explain_images(paths, model, meta, args.out, method=args.method, target=target, device=device)
    if args.json:
        print_json({
            "method": args.method,
            "images": [{"image": e.image, "overlay": e.overlay, "class": e.target_name,
                        "top": [{"class": name, "probability": p} for name, p in e.top]}
                       for e in report.explanations],
            "failures": [[str(p), why] for p, why in report.failures],
            "out": args.out,
        })
    else:
        for e in report.explanations:
            top = ", ".join(f"{name} {p:.3f}" for name, p in e.top)
            print(f"{e.image}: {top}; {args.method} of {e.target_name} -> {e.overlay}")
    return report_failures(report.failures)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``cadx explain``."""
    p = sub.add_parser("explain", help="class activation maps (Grad-CAM, ...) of a checkpoint over images")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or directories of images")
    p.add_argument("--model", required=True, help="cadx checkpoint (.pt)")
    p.add_argument("--method", choices=METHODS, default="gradcam",
                   help="gradcam (default), gradcam++, scorecam (slow: one forward pass per channel), "
                        "eigencam (class-agnostic: what the last layer responds to most)")
    p.add_argument("--class", dest="class_name", metavar="NAME",
                   help="class to explain (default: each image's top class)")
    p.add_argument("--backend", choices=["torch"], default="torch",
                   help="maps need gradients: PyTorch only (on CUDA when present)")
    p.add_argument("--out", required=True, help="folder for <image stem>.png overlays")
    p.add_argument("--json", action="store_true", help="print the top classes and failures as JSON")
    p.set_defaults(func=_explain)
