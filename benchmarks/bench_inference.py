"""Slide inference benchmark: model-only vs end-to-end throughput, peak memory, seconds per slide.

Prints a table. Targets (issue #3): end-to-end >= 90% of model-only throughput on the same tiles
(reading and JPEG decoding hidden behind compute); peak memory of predicting a 100k x 100k px slide
<= 2 GB; seconds per slide at 0.5 um/px for EfficientNet-Lite0 and ResNet-50.

    python benchmarks/bench_inference.py                         # 20k px slide (generated once)
    python benchmarks/bench_inference.py --big bench_out/synthetic_100000.tif   # + the 100k memory run

Models are built with random weights where no offline ImageNet weights exist (ResNet-50): speed
does not depend on the weights. Each measurement runs in a fresh process (its own peak RSS).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mb, run_fresh  # noqa: E402


def _predictor(name: str, size: int, backend: str, workdir: str):
    from cadx.inference.predictor import OnnxPredictor, TorchPredictor, export_onnx
    from cadx.models.factory import create_model

    model = create_model(name, pretrained=name == "tf_efficientnet_lite0", num_classes=2, input_size=size)
    if backend == "torch":
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        return TorchPredictor(model)
    return OnnxPredictor(export_onnx(model, Path(workdir) / f"{name}_{size}.onnx"))


def run_case(name: str, size: int, backend: str, slide: str, n_model: int, q: mp.Queue) -> None:
    import numpy as np

    from cadx.inference.slide import predict_slide
    from cadx.io.slide import open_slide

    with tempfile.TemporaryDirectory() as tmp:
        pred = _predictor(name, size, backend, tmp)
        tiles = np.random.default_rng(0).integers(0, 256, (16, size, size, 3), dtype=np.uint8)
        pred.predict(tiles[:8])  # warm-up
        t0 = time.perf_counter()
        done = 0
        while done < n_model:
            pred.predict(tiles)
            done += len(tiles)
        model_only = done / (time.perf_counter() - t0)
        with open_slide(slide) as s:
            predict_slide(s, pred, mpp=0.5, tile_size_px=size)  # warm the page cache
            r = predict_slide(s, pred, mpp=0.5, tile_size_px=size)
    q.put({"model_only": model_only, "e2e": r.seconds["tiles_per_s"], "stream": r.seconds["stream_tiles_per_s"],
           "tiling_s": r.seconds["tiling"], "tiles": r.seconds["tiles"],
           "slide_s": r.seconds["total"], "model_s": r.seconds["model"], "rss": peak_rss_mb()})


def make_checkpoint(path: str, size: int, q: mp.Queue) -> None:
    """A lite0 checkpoint with its ONNX export beside it, as `cadx predict slides` leaves them."""
    from cadx.inference.predictor import load_predictor
    from cadx.models.checkpoint import save_checkpoint
    from cadx.models.factory import create_model

    model = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=2, input_size=size)
    save_checkpoint(path, model, tile={"mpp": 0.5, "size_px": size})
    load_predictor(path, backend="onnx")  # exports <name>.onnx once
    q.put(True)


def run_big(slide: str, ckpt: str, q: mp.Queue) -> None:
    """The production path: load the checkpoint (cached ONNX), predict the whole slide."""
    from cadx.inference.predictor import load_predictor
    from cadx.inference.slide import predict_slide
    from cadx.io.slide import open_slide

    pred, meta = load_predictor(ckpt, backend="onnx")
    size = int(meta["tile"]["size_px"])
    base = peak_rss_mb()
    with open_slide(slide) as s:
        r = predict_slide(s, pred, mpp=0.5, tile_size_px=size)
        dims = s.dimensions
    q.put({"tiles": r.seconds["tiles"], "slide_s": r.seconds["total"], "e2e": r.seconds["tiles_per_s"],
           "rss": peak_rss_mb(), "base_rss": base, "dims": dims, "grid": list(r.grid.shape_hw), "size": size})



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slide", default="bench_out/synthetic_20000.tif",
                    help="slide for throughput (generated if missing)")
    ap.add_argument("--big", help="a ~100k x 100k px slide for the peak-memory run")
    ap.add_argument("--model-tiles", type=int, default=512)
    args = ap.parse_args()
    slide = Path(args.slide)
    if not slide.exists():
        from cadx.synth.cohort import snap_size, write_synthetic_slide
        from cadx.synth.layout import make_layout

        size, n = snap_size(20000)
        write_synthetic_slide(slide, make_layout(size_wh=(size, size), seed=1, tumor=True), n_levels=n)
    rows = []
    cases = [("tf_efficientnet_lite0", 128, "onnx"), ("tf_efficientnet_lite0", 224, "onnx"),
             ("tf_efficientnet_lite0", 224, "torch"), ("resnet50", 224, "onnx")]
    for name, size, backend in cases:
        r = run_fresh(run_case, name, size, backend, str(slide), args.model_tiles)
        rows.append((f"{name} {size}px {backend}", f"{r['model_only']:.1f}", f"{r['stream']:.1f}",
                     f"{100 * r['stream'] / r['model_only']:.0f}%", f"{r['e2e']:.1f}",
                     f"{r['slide_s']:.1f} s ({r['tiles']} tiles; tissue + grid {r['tiling_s']:.2f} s)",
                     f"{r['rss']:.0f}"))
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; slide {slide} "
          "at 0.5 um/px (level 1 of 0.243 um/px)\n")
    print("| model | model-only tiles/s | end-to-end streaming tiles/s (read + decode + model) "
          "| streaming / model-only "
          "| whole slide tiles/s (with tissue detection) | seconds per slide | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if args.big:
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = str(Path(tmp) / "lite0_224.pt")
            run_fresh(make_checkpoint, ckpt, 224)
            b = run_fresh(run_big, args.big, ckpt)
        print(f"\n100k-class slide {b['dims'][0]}x{b['dims'][1]} px: {b['tiles']} tiles of {b['size']} px "
              "at 0.5 um/px in "
              f"{b['slide_s']:.0f} s ({b['e2e']:.0f} tiles/s), heatmap grid {b['grid']}, peak RSS {b['rss']:.0f} MB "
              f"(target <= 2048 MB: {'met' if b['rss'] <= 2048 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
