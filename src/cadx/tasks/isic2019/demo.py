"""The dermoscopy demo (``cadx demo derm``; part of ``cadx demo all``).

On generated ISIC 2019-layout photographs: train a classifier for MEL / NV / BCC on one set of
lesions, predict a second set of lesions never seen in training (ONNX Runtime), score it with the
ISIC 2019 metric (balanced multi-class accuracy), check calibration before and after temperature
scaling, explain a gallery of correct and wrong cases with Grad-CAM and test the explanations'
faithfulness by deletion, and write an HTML report.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from cadx import __version__
from cadx.errors import CadxError
from cadx.io.atomic import atomic_path

log = logging.getLogger(__name__)

#: The demo's quality bar on its own generated set.
TARGET_BALANCED_ACCURACY = 0.85
#: CAM methods run by the demo; Score-CAM needs one forward pass per feature channel (1,280 for
#: EfficientNet-Lite0) per image, too slow for a CPU demo: run it with ``cadx explain --method scorecam``.
DEMO_CAM_METHODS = ("gradcam", "gradcam++", "eigencam")


def run_demo(out_dir: str | Path, *, seed: int = 2026, n_train: int = 360, n_test: int = 150,
             image_size: int = 128, warmup_steps: int = 40, finetune_steps: int = 60,
             classes: str = "MEL,NV,BCC", explain_images: int = 16, gallery_size: int = 4) -> dict[str, Any]:
    """Run the dermoscopy pipeline on generated data; returns the summary (also ``summary.json``).

    Parameters
    ----------
    out_dir : path
        Output folder: ``data_train/``, ``data_test/`` (ISIC layout), ``train/``, ``predictions/``,
        ``gallery/``, ``metrics.json``, ``report.html``, ``summary.json``.
    seed : int
        Seeds the generator (the test set uses ``seed + 1``: other lesions), the split and training.
    n_train, n_test : int
        Images generated for training (with validation) and for the held-out test.
    image_size : int
        Side of the square the model sees.
    warmup_steps, finetune_steps : int
        Head-only warm-up steps, then fine-tuning steps of the last stage.
    classes : str
        Class codes.
    explain_images : int
        Test images whose CAMs are checked for faithfulness (per method).
    gallery_size : int
        Correct and wrong cases shown each (fewer when there are fewer).
    """
    from cadx.inference.predictor import load_predictor
    from cadx.io.images import find_images
    from cadx.synth.derm import generate_derm
    from cadx.tasks.isic2019.evaluate import evaluate_derm
    from cadx.tasks.isic2019.layout import read_ground_truth, read_lesion_ids
    from cadx.tasks.isic2019.predict import checkpoint_temperature, predict_images
    from cadx.tasks.isic2019.report import write_derm_report
    from cadx.tasks.isic2019.train import DermTrainConfig, train_derm

    out = Path(out_dir)
    t_start = time.perf_counter()
    times: dict[str, float] = {}
    print(f"cadx demo derm (seed {seed}): {n_train} training and {n_test} held-out generated dermoscopy images, "
          f"classes {classes}, {image_size} px")

    t = time.perf_counter()
    print("[1/5] generating ISIC 2019-layout images (training lesions, and other lesions for the test)")
    class_list = tuple(c.strip() for c in classes.split(","))
    train_data, test_data = out / "data_train", out / "data_test"
    _generate_once(generate_derm, train_data, n=n_train, seed=seed, classes=class_list)
    _generate_once(generate_derm, test_data, n=n_test, seed=seed + 1, classes=class_list, first_id=n_train)
    meta_csv = "ISIC_2019_Training_Metadata.csv"
    shared = set(read_lesion_ids(train_data / meta_csv).values()) & set(read_lesion_ids(test_data / meta_csv).values())
    if shared:
        raise CadxError(f"{test_data}: {len(shared)} lesions also in the training set; the test would not be held out")
    times["generate"] = time.perf_counter() - t

    t = time.perf_counter()
    print("[2/5] training tf_efficientnet_lite0 (ImageNet weights, offline), split by lesion_id")
    cfg = DermTrainConfig(data_dir=str(train_data), out_dir=str(out / "train"), classes=classes,
                          image_size=image_size, warmup_steps=warmup_steps, finetune_steps=finetune_steps,
                          trainable_blocks=1, eval_every=20, patience=3, seed=seed, batch_size=32, num_workers=0)
    ckpt = train_derm(cfg)
    times["train"] = time.perf_counter() - t

    t = time.perf_counter()
    print("[3/5] predicting the held-out lesions (ONNX Runtime)")
    predictor, meta = load_predictor(ckpt, backend="onnx")
    test_paths = find_images([test_data / "ISIC_2019_Training_Input"])
    report = predict_images(test_paths, predictor, meta, out / "predictions")
    if report.failures:
        raise CadxError(f"{test_data}: {len(report.failures)} generated images could not be predicted")
    times["predict"] = time.perf_counter() - t

    t = time.perf_counter()
    print("[4/5] scoring: balanced accuracy, per-class metrics, ROC, calibration")
    metrics = evaluate_derm(report.csv_path, test_data, out_dir=out)
    names, columns, labels = read_ground_truth(test_data / "ISIC_2019_Training_GroundTruth.csv")
    truth = dict(zip(names, np.asarray(labels).tolist(), strict=True))
    class_names = list(report.class_names)
    y = np.array([class_names.index(columns[truth[n]]) for n in report.names])
    lesions = read_lesion_ids(test_data / meta_csv)
    metrics["lesions"] = len({lesions.get(n, n) for n in report.names})
    calibration, reliability_png = _calibration(report.probs, y, checkpoint_temperature(meta), out)
    times["evaluate"] = time.perf_counter() - t

    t = time.perf_counter()
    print(f"[5/5] Grad-CAM gallery and faithfulness ({', '.join(DEMO_CAM_METHODS)})")
    by_name = {p.stem: p for p in test_paths}
    gallery, faithfulness = _explain(ckpt, meta, predictor, report, [by_name[n] for n in report.names], y, out,
                                     seed=seed, n_images=explain_images, gallery_size=gallery_size)
    times["explain"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t_start

    facts = {
        "command": f"cadx demo derm --seed {seed}", "cadx": __version__,
        "machine": ", ".join(x for x in (platform.machine(), f"{os.cpu_count()} CPUs", platform.processor()) if x),
        "data": f"generated: {n_train} training images (seed {seed}), {n_test} held-out images of other lesions "
                f"(seed {seed + 1})",
        "model": f"{meta['model']['architecture']} ({meta['model']['weights']}), {image_size} px, "
                 f"{warmup_steps} warm-up + {finetune_steps} fine-tuning steps",
        "best validation": json.dumps({k: v for k, v in meta["metrics"].items() if isinstance(v, (int, float))}),
        "timings (s)": json.dumps({k: round(v, 1) for k, v in times.items()}),
    }
    page = write_derm_report(out / "report.html", metrics=metrics, calibration=calibration, gallery=gallery,
                             faithfulness=faithfulness,
                             plots={"confusion": out / "confusion.png", "roc": out / "roc.png",
                                    "reliability": reliability_png},
                             facts=facts, title=f"cadx: dermoscopy second opinion ({' / '.join(class_names)}), "
                                                "generated images")
    summary = {"balanced_accuracy": metrics["balanced_accuracy"], "accuracy": metrics["accuracy"],
               "mean_auc": metrics.get("mean_auc"), "calibration": calibration, "faithfulness": faithfulness,
               "seconds": times, "seed": seed, "checkpoint": str(ckpt), "report": str(page),
               "headline": {"balanced accuracy": metrics["balanced_accuracy"],
                            "ECE after calibration": calibration["ece_after"],
                            "Grad-CAM faithful": float(next((f["passed"] for f in faithfulness
                                                             if f["method"] == "gradcam"), False))}}
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=float))
    ok = metrics["balanced_accuracy"] >= TARGET_BALANCED_ACCURACY
    print(f"\n  balanced accuracy {metrics['balanced_accuracy']:.3f} on {metrics['images']} held-out images "
          f"({metrics['lesions']} lesions)   target >= {TARGET_BALANCED_ACCURACY}")
    print(f"  ECE {calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f} "
          f"(temperature {calibration['temperature']:.2f})")
    print("  faithfulness (confidence drop, top-20 % CAM vs random 20 %): "
          + ", ".join(f"{f['method']} {f['drop_top']:.3f} vs {f['drop_random']:.3f}" for f in faithfulness))
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in times.items() if k != "total")
    print(f"  time       {times['total'] / 60:.1f} min ({stages})")
    print(f"  quality bar {'met' if ok else 'NOT met'}; report: {page}")
    return summary


def _generate_once(generate: Any, folder: Path, **params: Any) -> None:
    """Generate into ``folder`` unless it already holds a set made with the same parameters."""
    import shutil

    stamp = folder / "demo_params.json"
    wanted = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}, sort_keys=True)
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if folder.exists():
        shutil.rmtree(folder)
    generate(folder, **params)
    with atomic_path(stamp) as tmp:
        tmp.write_text(wanted)


def _calibration(probs_after: np.ndarray, y: np.ndarray, temperature: float, out: Path
                 ) -> tuple[dict[str, Any], Path]:
    """ECE on the held-out images before and after the checkpoint's temperature; reliability diagram."""
    from cadx.metrics.calibration import reliability_bins
    from cadx.viz.plots import plot_reliability

    p = np.clip(np.asarray(probs_after, np.float64), 1e-12, 1.0)
    # softmax(z / T) = p  =>  softmax(z) is proportional to p ** T: the uncalibrated probabilities.
    before = p**temperature
    before /= before.sum(axis=1, keepdims=True)
    bins_before, bins_after = reliability_bins(before, y), reliability_bins(p, y)
    png = plot_reliability(out / "reliability.png", bins_before, bins_after)
    calibration = {"temperature": float(temperature), "ece_before": float(bins_before.ece),
                   "ece_after": float(bins_after.ece)}
    return calibration, png


def _explain(ckpt: Path, meta: dict[str, Any], predictor: Any, report: Any, paths: list[Path], y: np.ndarray,
             out: Path, *,
             seed: int, n_images: int, gallery_size: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """CAMs for a seeded sample of held-out images: the faithfulness table and the gallery PNGs."""
    import torch

    from cadx.explain.cam import class_activation_maps, deletion_check
    from cadx.io.images import read_rgb, write_png
    from cadx.models.checkpoint import load_checkpoint
    from cadx.preprocessing.augment import to_model_input
    from cadx.tasks.isic2019.predict import checkpoint_preprocess
    from cadx.viz.overlay import overlay_map

    model, _ = load_checkpoint(ckpt)
    config = model.cadx_config
    preprocess = checkpoint_preprocess(meta, ckpt)
    pred = report.probs.argmax(axis=1)
    right, wrong = np.flatnonzero(pred == y), np.flatnonzero(pred != y)
    rng = np.random.default_rng(seed)
    shown = [int(i) for i in rng.permutation(right)[:gallery_size]]
    shown += [int(i) for i in rng.permutation(wrong)[:gallery_size]]
    rest = [int(i) for i in rng.permutation(len(y)) if int(i) not in shown]
    chosen = (shown + rest)[: max(n_images, len(shown))]
    images = np.stack([preprocess(read_rgb(paths[i])) for i in chosen])
    x = torch.from_numpy(to_model_input(images, config.mean, config.std))
    targets = [int(pred[i]) for i in chosen]

    faithfulness, gradcam = [], None
    for method in DEMO_CAM_METHODS:
        cams = class_activation_maps(model, x, method=method, targets=targets)
        check = deletion_check(predictor.predict, images, cams, targets, fraction=0.2, seed=seed)
        faithfulness.append({"method": method, "drop_top": float(check["drop_top"]),
                             "drop_random": float(check["drop_random"]), "passed": bool(check["passed"])})
        if method == "gradcam":
            gradcam = cams

    names = list(report.class_names)
    gallery = []
    for k, i in enumerate(chosen[: len(shown)]):
        name = report.names[i]
        png = write_png(out / "gallery" / f"{name}.png", overlay_map(images[k], gradcam[k]))
        caption = (f"{name}: truth {names[y[i]]}, predicted {names[pred[i]]} "
                   f"(p = {report.probs[i, pred[i]]:.2f}); Grad-CAM of {names[pred[i]]}")
        gallery.append({"image_png": png, "caption": caption, "correct": bool(pred[i] == y[i])})
    return gallery, faithfulness

