"""Feature-extraction benchmark: encoder model-only vs end-to-end tiles/s, and peak memory.

Prints a table. Target (issue #10): extracting features end to end (tiles read and decoded by
threads ahead of the encoder) runs at >= 90 % of the encoder's model-only throughput on the same
tile size. Peak memory is the process's peak RSS (each case runs in a fresh process).

    python benchmarks/bench_features.py                   # 8k px generated slide, Lite0 ONNX at 224 px
    python benchmarks/bench_features.py --size 20000 --torch --resnet

Lite0 uses its offline ImageNet weights; ResNet-50 (truncated, CLAM's 1024-d encoder) random weights:
speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mb, run_fresh  # noqa: E402


def _encoder(name: str, size: int, backend: str, workdir: str):
    from cadx.inference.predictor import OnnxPredictor, TorchPredictor, export_onnx
    from cadx.models.factory import create_model

    model = create_model(name, kind="encoder", pretrained=name == "tf_efficientnet_lite0", input_size=size)
    if backend == "torch":
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        return TorchPredictor(model, device="cpu")
    return OnnxPredictor(export_onnx(model, Path(workdir) / f"{name}_{size}.onnx"))


def run_case(name: str, size: int, backend: str, slide: str, mpp: float, n_model: int, q) -> None:
    import numpy as np

    from cadx.inference.features import extract_slide_features
    from cadx.io.slide import open_slide

    with tempfile.TemporaryDirectory() as tmp:
        enc = _encoder(name, size, backend, tmp)
        tiles = np.random.default_rng(0).integers(0, 256, (16, size, size, 3), dtype=np.uint8)
        enc.embed(tiles[:8])  # warm-up
        t0 = time.perf_counter()
        done = 0
        while done < n_model:
            enc.embed(tiles)
            done += len(tiles)
        model_only = done / (time.perf_counter() - t0)
        with open_slide(slide) as s:
            extract_slide_features(s, enc, mpp=mpp, tile_size_px=size)  # warm the page cache
            tf = extract_slide_features(s, enc, mpp=mpp, tile_size_px=size)
    secs, tiling = tf.attrs["seconds"], tf.attrs["seconds_tiling"]
    q.put({"model_only": model_only, "tiles": len(tf), "dim": tf.features.shape[1], "total_s": secs,
           "tiling_s": tiling, "e2e": len(tf) / secs, "stream": len(tf) / (secs - tiling), "rss": peak_rss_mb()})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slide", help="slide to extract (default: a generated one of --size px, made once)")
    ap.add_argument("--size", type=int, default=8192, help="side of the generated slide in px (0.243 um/px)")
    ap.add_argument("--mpp", type=float, default=0.5, help="tile resolution, um/px")
    ap.add_argument("--model-tiles", type=int, default=256, help="tiles for the model-only measurement")
    ap.add_argument("--torch", action="store_true", help="also Lite0 on eager PyTorch")
    ap.add_argument("--resnet", action="store_true", help="also resnet50_trunc (1024-d) on ONNX Runtime")
    args = ap.parse_args()
    slide = Path(args.slide or f"bench_out/synthetic_{args.size}.tif")
    if not slide.exists():
        from cadx.synth.cohort import snap_size, write_synthetic_slide
        from cadx.synth.layout import make_layout

        size, n = snap_size(args.size)
        slide.parent.mkdir(parents=True, exist_ok=True)
        write_synthetic_slide(slide, make_layout(size_wh=(size, size), seed=1, tumor=True), n_levels=n)
    cases = [("tf_efficientnet_lite0", 224, "onnx")]
    if args.torch:
        cases.append(("tf_efficientnet_lite0", 224, "torch"))
    if args.resnet:
        cases.append(("resnet50_trunc", 224, "onnx"))
    rows = []
    for name, size, backend in cases:
        r = run_fresh(run_case, name, size, backend, str(slide), args.mpp, args.model_tiles)
        rows.append((f"{name} {size}px {backend} ({r['dim']}-d)", f"{r['model_only']:.1f}", f"{r['stream']:.1f}",
                     f"{100 * r['stream'] / r['model_only']:.0f}%", f"{r['e2e']:.1f}",
                     f"{r['total_s']:.1f} s ({r['tiles']} tiles; tissue + grid {r['tiling_s']:.2f} s)",
                     f"{r['rss']:.0f}"))
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; slide {slide} "
          f"at {args.mpp} um/px\n")
    print("| encoder | model-only tiles/s | end-to-end streaming tiles/s (read + decode + encoder) "
          "| streaming / model-only | whole slide tiles/s (with tissue detection) | seconds per slide "
          "| peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
