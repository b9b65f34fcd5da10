"""The segmentation demo (``cadx demo seg``; part of ``cadx demo all``): tumour pixels from the lesion polygons.

On the CAMELYON16 demo's own cohort (reused when ``cadx demo camelyon16`` made it with the same
parameters: ``<out>/../camelyon16/cohort`` under ``cadx demo all``, or ``<out>/cohort``): a U-Net
on the offline ImageNet EfficientNet-Lite0 encoder trained on tile/mask pairs rasterised from the
training slides' ASAP polygons (:func:`~cadx.tasks.camelyon16.seg.train_seg`), every test slide
segmented with ONNX Runtime by overlapping, blended tiles
(:func:`~cadx.tasks.camelyon16.seg_predict.predict_seg`), and the probability masks scored against
the test slides' annotations (:func:`~cadx.tasks.camelyon16.seg_evaluate.evaluate_seg`), with the
original project's figure: the H&E with the true outline beside the predicted mask.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cadx import __version__
from cadx.inference.predictor import load_predictor
from cadx.io.atomic import atomic_path
from cadx.report.html import write_html
from cadx.tasks.camelyon16.demo import cohort_params, find_or_make_cohort
from cadx.tasks.camelyon16.layout import Camelyon16Layout
from cadx.tasks.camelyon16.seg import SegTrainConfig, train_seg
from cadx.tasks.camelyon16.seg_evaluate import evaluate_seg
from cadx.tasks.camelyon16.seg_predict import predict_seg

#: The quality bar of issue #11, on the demo cohort's test slides.
TARGET_DICE = 0.80
#: Per-slide columns shown in the report (all of them are in ``seg_per_slide.csv``).
SLIDE_COLUMNS = ("slide", "label", "dice", "iou", "pixel_auc", "sensitivity", "specificity", "lesions",
                 "lesions_detected", "false_positives")


def run_demo(out_dir: str | Path, *, seed: int = 2026, size_px: int = 8192, n_train: int = 6, n_test: int = 16,
             tumor_contrast: float = 0.2, max_lesion_um: float | None = 500.0, mpp: float = 1.0,
             tile_size: int = 128, batch_size: int = 8, warmup_steps: int = 10, steps: int = 40,
             lr_head: float = 2e-3, lr: float = 5e-4, eval_every: int = 10, patience: int = 4,
             val_tiles: int = 48, num_workers: int = 0, threshold: float = 0.5) -> dict[str, Any]:
    """Train a U-Net on the training slides, segment the test slides, score and report.

    Parameters
    ----------
    out_dir : path
    seed : int
        Cohort, split and training seed.
    size_px, n_train, n_test, tumor_contrast, max_lesion_um
        The cohort (:func:`~cadx.tasks.camelyon16.demo.ensure_demo_cohort`; the CAMELYON16 demo's
        defaults, so ``cadx demo all`` makes it once).
    mpp, tile_size : float, int
        Tile resolution (um/px) and side (px, a multiple of 32), for training and prediction.
    batch_size, warmup_steps, steps, lr_head, lr, eval_every, patience, val_tiles, num_workers
        Training (:class:`~cadx.tasks.camelyon16.seg.SegTrainConfig`: a decoder-only warm-up,
        then the whole network; early stopping on validation Dice).
    threshold : float
        Probability above which a pixel is tumour (polygons and metrics).

    Returns
    -------
    dict
        What ``summary.json`` holds: the pooled metrics, ``quality_bar_met``, ``seconds``,
        ``headline``...
    """
    out = Path(out_dir)
    t_start = time.perf_counter()
    times: dict[str, float] = {}
    params = cohort_params(seed=seed, size_px=size_px, n_train=n_train, n_test=n_test,
                           tumor_contrast=tumor_contrast, max_lesion_um=max_lesion_um)
    print(f"cadx demo seg (seed {seed}): U-Net on tf_efficientnet_lite0 trained on the lesion polygons of the "
          f"CAMELYON16 demo cohort ({2 * n_train} training slides), scored on its {n_test} test slides")

    t = time.perf_counter()
    cohort, reused = find_or_make_cohort(out, params)
    print(f"[1/4] cohort: {cohort} ({'reused' if reused else 'generated'})")
    layout = Camelyon16Layout(cohort)
    times["cohort"] = time.perf_counter() - t

    t = time.perf_counter()
    print(f"[2/4] tile/mask pairs ({tile_size} px at {mpp} um/px) from the training slides' polygons; training the "
          "U-Net (ImageNet encoder, offline; Dice + BCE)")
    cfg = SegTrainConfig(data_dir=str(cohort), out_dir=str(out / "train"), mpp=mpp, tile_size=tile_size,
                         batch_size=batch_size, warmup_steps=warmup_steps, steps=steps, lr_head=lr_head, lr=lr,
                         eval_every=eval_every, patience=patience, val_tiles=val_tiles, seed=seed,
                         num_workers=num_workers, threshold=threshold)
    ckpt = train_seg(cfg)
    times["train"] = time.perf_counter() - t

    t = time.perf_counter()
    print("[3/4] segmenting the test slides (overlapping tiles, blended; ONNX Runtime)")
    predictor, meta = load_predictor(ckpt, backend="onnx")
    pred_dir = out / "predictions"
    report = predict_seg(layout.test_slides(), predictor, pred_dir, tile=meta["tile"], threshold=threshold,
                         annotations=layout.testing_annotations, model_id=meta["checkpoint_sha256"])
    for path, why in report.failures:
        print(f"  left out {path.name}: {why}")
    times["predict"] = time.perf_counter() - t

    t = time.perf_counter()
    print("[4/4] scoring the masks against the test slides' annotations (Dice, IoU, pixel AUC, lesion FROC)")
    metrics = evaluate_seg(pred_dir, layout.testing, out_dir=out, threshold=threshold)
    rows = metrics["per_slide"]
    figures = [{"slide": r["slide"], "png": pred_dir / f"{r['slide']}.png", "caption": _caption(r)}
               for r in _shown_slides(rows)]
    times["evaluate"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t_start

    dice = metrics["dice"]
    ok = dice is not None and dice >= TARGET_DICE
    n_tiles = sum(s["tiles"] for s in report.seconds.values())
    seg_seconds = sum(s["total"] for s in report.seconds.values())
    facts = {
        "command": f"cadx demo seg --seed {seed}", "cadx": __version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "cohort": f"{cohort} ({json.dumps(params)})",
        "model": f"{meta['model']['architecture']} (encoder weights: {meta['model']['weights']})",
        "tile": json.dumps(meta["tile"]),
        "training": json.dumps({k: v for k, v in asdict(cfg).items()
                                if k in ("batch_size", "warmup_steps", "steps", "lr_head", "lr", "eval_every",
                                         "patience", "val_tiles")}),
        "best validation": json.dumps({k: meta["metrics"].get(k) for k in ("val_dice", "val_iou", "step")}),
        "inference": (f"{n_tiles} tiles in {seg_seconds:.1f} s, {n_tiles / max(seg_seconds, 1e-9):.0f} tiles/s end "
                      "to end (ONNX Runtime)"),
        "timings (s)": json.dumps({k: round(v, 1) for k, v in times.items()}),
    }
    write_html(out / "report.html", "seg.html.j2",
               title="cadx: pixel-level metastasis segmentation (synthetic CAMELYON16 cohort)",
               legend=("Each figure: left, the slide with the true lesion outlines (red); right, the predicted "
                       "tumour probability (black 0, white 1) with the same outlines."),
               metrics=metrics, target=TARGET_DICE, quality_met=ok, figures=figures,
               columns=SLIDE_COLUMNS, per_slide=rows, facts=facts)
    summary = {k: v for k, v in metrics.items() if k != "per_slide"}
    summary.update(quality_bar_met=ok, seconds=times, seed=seed, cohort=str(cohort), cohort_reused=reused,
                   checkpoint=str(ckpt), report=str(out / "report.html"),
                   headline={"pooled Dice": _nan(dice), "IoU": _nan(metrics["iou"]),
                             "pixel AUC": _nan(metrics["pixel_auc"])})
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str))

    print()
    print(f"  pooled Dice {_fmt(dice)}   target >= {TARGET_DICE}   (IoU {_fmt(metrics['iou'])}, pixel AUC "
          f"{_fmt(metrics['pixel_auc'])}, sensitivity {_fmt(metrics['sensitivity'], 2)}, specificity "
          f"{_fmt(metrics['specificity'], 3)}; {metrics['slides']} test slides at level {metrics['level']})")
    print(f"  lesion FROC {_fmt(metrics['froc'])} ({metrics['lesions']} lesions)")
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in times.items() if k != "total")
    print(f"  time       {times['total'] / 60:.1f} min ({stages})")
    print(f"  quality bar {'met' if ok else 'NOT met'}; report: {out / 'report.html'}")
    return summary


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _shown_slides(rows: list[dict[str, Any]], *, n_tumour: int = 8, n_normal: int = 2) -> list[dict[str, Any]]:
    """Tumour slides (most tumour pixels first), then the normal slides with the most false-positive pixels."""
    tumour = sorted((r for r in rows if r["label"] == "Tumor"), key=lambda r: -(r["tp"] + r["fn"]))[:n_tumour]
    normal = sorted((r for r in rows if r["label"] == "Normal"), key=lambda r: -r["fp"])[:n_normal]
    return tumour + normal


def _caption(row: dict[str, Any]) -> str:
    if row["label"] == "Tumor":
        return (f"{row['slide']} (tumour): Dice {_fmt(row['dice'])}, {row['lesions_detected']} of {row['lesions']} "
                f"lesions found, {row['false_positives']} false-positive detections")
    return f"{row['slide']} (normal): {row['fp']} false-positive pixels at the evaluation level"
