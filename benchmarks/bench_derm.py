"""Dermoscopy benchmark: `cadx predict derm` end to end vs model-only, training images/s, CAM seconds.

Prints a table. Target: end-to-end prediction (JPEG decode + border crop + Shades of Gray + resize +
model, ONNX Runtime) >= 90 % of model-only throughput at the same batch size. Each measurement runs
in a fresh process (its own peak RSS).

    python benchmarks/bench_derm.py [--images 128] [--size 224]
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

CLASSES = ("MEL", "NV", "BCC")


def _checkpoint(folder: Path, size: int) -> Path:
    from cadx.models.checkpoint import save_checkpoint
    from cadx.models.factory import create_model
    from cadx.preprocessing.images import ImagePreprocess

    model = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=3, input_size=size,
                         class_names=CLASSES)
    return save_checkpoint(folder / "derm.pt", model, extra={"preprocess": ImagePreprocess(size_px=size).to_dict(),
                                                             "calibration": {"temperature": 1.0}})


def predict_case(data: str, size: int, batch: int, q: mp.Queue) -> None:
    import numpy as np

    from cadx.inference.predictor import load_predictor
    from cadx.io.images import find_images
    from cadx.tasks.isic2019.predict import predict_images

    with tempfile.TemporaryDirectory() as tmp:
        predictor, meta = load_predictor(_checkpoint(Path(tmp), size), backend="onnx")
        paths = find_images([Path(data) / "ISIC_2019_Training_Input"])
        x = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        predictor.predict(x)  # warm-up
        t0, done = time.perf_counter(), 0
        while done < len(paths):
            predictor.predict(x)
            done += batch
        model_only = done / (time.perf_counter() - t0)
        predict_images(paths[:batch], predictor, meta, Path(tmp) / "warm", batch_size=batch, show_progress=False)
        t0 = time.perf_counter()
        predict_images(paths, predictor, meta, Path(tmp) / "pred", batch_size=batch, show_progress=False)
        e2e = len(paths) / (time.perf_counter() - t0)
    q.put({"model_only": model_only, "e2e": e2e, "rss": peak_rss_mb()})


def train_case(data: str, size: int, steps: int, q: mp.Queue) -> None:
    import json

    from cadx.tasks.isic2019.train import DermTrainConfig, train_derm

    with tempfile.TemporaryDirectory() as tmp:
        cfg = DermTrainConfig(data_dir=data, out_dir=tmp, image_size=size, warmup_steps=0, finetune_steps=steps,
                              trainable_blocks=1, eval_every=steps, batch_size=32, num_workers=0)
        t0 = time.perf_counter()
        train_derm(cfg, show_progress=False)
        seconds = time.perf_counter() - t0
        history = json.loads((Path(tmp) / "history.json").read_text())
    q.put({"images_per_s": history[-1].get("samples_per_s", float("nan")), "seconds": seconds, "rss": peak_rss_mb()})


def cam_case(data: str, size: int, method: str, n: int, q: mp.Queue) -> None:
    import numpy as np
    import torch

    from cadx.explain.cam import class_activation_maps
    from cadx.io.images import find_images, read_rgb
    from cadx.models.checkpoint import load_checkpoint
    from cadx.preprocessing.augment import to_model_input
    from cadx.preprocessing.images import ImagePreprocess

    with tempfile.TemporaryDirectory() as tmp:
        model, _ = load_checkpoint(_checkpoint(Path(tmp), size))
    pre = ImagePreprocess(size_px=size)
    paths = find_images([Path(data) / "ISIC_2019_Training_Input"])[:n]
    x = torch.from_numpy(to_model_input(np.stack([pre(read_rgb(p)) for p in paths]), model.cadx_config.mean,
                                        model.cadx_config.std))
    class_activation_maps(model, x[:1], method=method)  # warm-up (hooks, first backward)
    t0 = time.perf_counter()
    for i in range(len(x)):
        class_activation_maps(model, x[i:i + 1], method=method)
    q.put({"s_per_image": (time.perf_counter() - t0) / len(x), "rss": peak_rss_mb()})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=128, help="generated images to predict")
    ap.add_argument("--size", type=int, default=224, help="model input side, px")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--scorecam-images", type=int, default=1, help="Score-CAM is slow: images to time it on")
    ap.add_argument("--out", default="bench_out")
    args = ap.parse_args()

    from cadx.synth.derm import generate_derm

    data = Path(args.out) / f"derm_{args.images}"
    if not (data / "ISIC_2019_Training_GroundTruth.csv").exists():
        generate_derm(data, n=args.images, seed=0)
    flags = ""
    if Path("/proc/cpuinfo").exists():
        cpu_flags = Path("/proc/cpuinfo").read_text().split()
        flags = ", ".join(f for f in ("avx512_vnni", "avx512_bf16", "amx_tile") if f in cpu_flags) or "no VNNI/bf16/AMX"
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs ({flags}), Python {sys.version.split()[0]}; "
          f"{args.images} generated images, tf_efficientnet_lite0 at {args.size} px, batch {args.batch}\n")
    p = run_fresh(predict_case, str(data), args.size, args.batch)
    print("| measurement | result | peak RSS (MB) |")
    print("|---|---|---|")
    print(f"| model only, ONNX Runtime | {p['model_only']:.1f} images/s | |")
    print(f"| `cadx predict derm` end to end (decode + crop + Shades of Gray + resize + model) | "
          f"{p['e2e']:.1f} images/s ({100 * p['e2e'] / p['model_only']:.0f} % of model-only; target >= 90 %) | "
          f"{p['rss']:.0f} |")
    t = run_fresh(train_case, str(data), args.size, args.train_steps)
    print(f"| training, last stage + head, batch 32 | {t['images_per_s']:.1f} images/s | {t['rss']:.0f} |")
    for method in ("gradcam", "gradcam++", "eigencam", "scorecam"):
        n = args.scorecam_images if method == "scorecam" else 8
        c = run_fresh(cam_case, str(data), args.size, method, n)
        print(f"| {method}, PyTorch eager | {c['s_per_image']:.2f} s per image ({n} images) | {c['rss']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
