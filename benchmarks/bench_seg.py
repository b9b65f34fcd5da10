"""Whole-slide segmentation benchmark: seconds per slide, peak memory, end-to-end vs model-only tiles/s.

Prints a table. Targets (issue #11): peak memory of segmenting a 100k x 100k px slide <= 2 GB;
end-to-end tiles/s >= 90% of model-only (reading, blending and writing hidden behind compute).

    python benchmarks/bench_seg.py                     # 20k px generated slide, U-Net lite0 (ONNX)
    python benchmarks/bench_seg.py --size 100000       # the issue's 100k x 100k memory run
    python benchmarks/bench_seg.py --fake              # no model: a numpy segmenter (pipeline cost only)

The U-Net is built with random weights (speed does not depend on them) through
``create_model("unet-tf_efficientnet_lite0", kind="segmenter")``. Each measurement runs in a fresh
process (its own peak RSS). "stream" tiles/s leaves out tissue detection and the pyramid write;
"whole slide" counts everything.
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
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mb, run_fresh  # noqa: E402


class FakeSegmenter:
    """Probability = the red channel / 255: a segmenter's output shape at almost no cost."""

    config = SimpleNamespace(architecture="fake", to_dict=lambda: {"architecture": "fake"})

    def predict(self, x):
        import numpy as np

        return (x[..., 0].astype(np.float32) * (1 / 255.0))[:, None]


def _predictor(size: int, fake: bool, workdir: str):
    if fake:
        return FakeSegmenter()
    from cadx.inference.predictor import OnnxPredictor, export_onnx
    from cadx.models.factory import create_model

    model = create_model("unet-tf_efficientnet_lite0", kind="segmenter", pretrained=False, num_classes=1,
                         activation="sigmoid", input_size=size)
    return OnnxPredictor(export_onnx(model, Path(workdir) / f"unet_{size}.onnx"))


def run_case(slide: str, size: int, fake: bool, out_downsample: int, n_model: int, batch_size: int,
             q: mp.Queue) -> None:
    import numpy as np

    from cadx.inference.segment import segment_slide
    from cadx.io.slide import open_slide

    with tempfile.TemporaryDirectory() as tmp:
        pred = _predictor(size, fake, tmp)
        tiles = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
        pred.predict(tiles[:8])  # warm-up
        t0 = time.perf_counter()
        done = 0
        while done < n_model:
            pred.predict(tiles)
            done += len(tiles)
        model_only = done / (time.perf_counter() - t0)
        base = peak_rss_mb()
        with open_slide(slide) as s:
            r = segment_slide(s, pred, Path(tmp) / "mask.tif", mpp=0.5, tile_size_px=size,
                              out_downsample=out_downsample, batch_size=batch_size)
            dims = s.dimensions
        mask_mb = (Path(tmp) / "mask.tif").stat().st_size / 1e6
    q.put({"model_only": model_only, **r.seconds, "rss": peak_rss_mb(), "base_rss": base, "dims": dims,
           "mask_wh": r.size_wh, "levels": r.n_levels, "mask_mb": mask_mb})


def make_slide(path: Path, size: int) -> None:
    from cadx.synth.cohort import snap_size, write_synthetic_slide
    from cadx.synth.layout import make_layout

    side, n = snap_size(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_synthetic_slide(path, make_layout(size_wh=(side, side), seed=1, tumor=True), n_levels=n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=20000, help="side of the generated slide (level 0, 0.243 um/px)")
    ap.add_argument("--slide", help="use this slide instead (default: bench_out/synthetic_<size>.tif, made once)")
    ap.add_argument("--tile", type=int, default=256, help="tile size in px at 0.5 um/px")
    ap.add_argument("--out-downsample", type=int, default=4)
    ap.add_argument("--model-tiles", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16, help="tiles per model call")
    ap.add_argument("--fake", action="store_true", help="a numpy segmenter instead of the U-Net")
    args = ap.parse_args()
    slide = Path(args.slide or f"bench_out/synthetic_{args.size}.tif")
    if not slide.exists():
        t = time.perf_counter()
        make_slide(slide, args.size)
        print(f"generated {slide} in {time.perf_counter() - t:.0f} s")
    r = run_fresh(run_case, str(slide), args.tile, args.fake, args.out_downsample, args.model_tiles, args.batch_size)
    model = ("fake (numpy)" if args.fake else f"U-Net lite0 {args.tile}px ONNX") + f", batch {args.batch_size}"
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; slide {slide} "
          f"{r['dims'][0]}x{r['dims'][1]} px; mask {r['mask_wh'][0]}x{r['mask_wh'][1]} px, {r['levels']} levels, "
          f"{r['mask_mb']:.1f} MB\n")
    print("| model | tiles | model-only tiles/s | stream tiles/s | stream / model-only | whole slide tiles/s "
          "| seconds per slide (tissue + grid, pyramid write) | RSS after model-only (MB) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {model} | {r['tiles']} | {r['model_only']:.1f} | {r['stream_tiles_per_s']:.1f} | "
          f"{100 * r['stream_tiles_per_s'] / r['model_only']:.0f}% | {r['tiles_per_s']:.1f} | "
          f"{r['total']:.1f} ({r['tiling']:.1f}, {r['write']:.1f}) | {r['base_rss']:.0f} | {r['rss']:.0f} |")
    if args.size >= 100000 or r["dims"][0] >= 100000:
        print(f"\npeak RSS {r['rss']:.0f} MB: target <= 2048 MB {'met' if r['rss'] <= 2048 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
