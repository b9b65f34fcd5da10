"""The attention-MIL demo (``cadx demo mil``; part of ``cadx demo all``): tumour regions from slide labels alone.

On the CAMELYON16 demo's own cohort (reused when ``cadx demo camelyon16`` made it with the same
parameters: ``<out>/../camelyon16/cohort`` under ``cadx demo all``, or ``<out>/cohort``): frozen
ImageNet EfficientNet-Lite0 features of every tissue tile of every slide (training and test),
k-fold cross-validation of gated-attention MIL over all slides with their slide labels only,
each slide predicted by the fold model that never saw it, and the attention maps scored against
the lesion annotations no model saw.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from cadx import __version__
from cadx.inference.features import ENCODER_CACHE_DIR, H5_DIR, extract_features, load_encoder
from cadx.io.annotations import read_asap_xml
from cadx.io.atomic import atomic_path
from cadx.io.h5 import read_score_grid_h5
from cadx.io.images import write_png
from cadx.io.slide import open_slide
from cadx.models.factory import DEFAULT_ENCODER, create_model
from cadx.report.html import write_html
from cadx.tasks.camelyon16.demo import cohort_params, find_or_make_cohort
from cadx.tasks.camelyon16.layout import Camelyon16Layout, slide_truth
from cadx.tasks.camelyon16.mil_evaluate import evaluate_mil
from cadx.tasks.camelyon16.mil_predict import ATTENTION_CHANNEL, predict_mil
from cadx.training.mil import MilFitSettings, cross_validate
from cadx.viz.overlay import DEFAULT_CMAP, draw_outlines, thumbnail_scale
from cadx.wsi.preview import write_overlay_png

#: The quality bar of issue #10, on the demo cohort, as means over the folds.
TARGET_SLIDE_AUC = 0.90
TARGET_ATTENTION_TILE_AUC = 0.85
#: Per-fold metrics reported as mean +- sd.
FOLD_METRICS = ("slide_auc", "attention_tile_auc", "instance_tile_auc", "froc")


def run_demo(out_dir: str | Path, *, seed: int = 2026, folds: int = 4, size_px: int = 8192, n_train: int = 6,
             n_test: int = 16, tumor_contrast: float = 0.2, max_lesion_um: float | None = 500.0,
             mpp: float = 0.5, tile_size: int = 128, batch_size: int = 32, epochs: int = 40, patience: int = 8,
             lr: float = 2e-4, top_k: int = 8) -> dict[str, Any]:
    """Features, k-fold attention MIL on slide labels, out-of-fold predictions, metrics and a report.

    Parameters
    ----------
    out_dir : path
    seed : int
        Cohort, split and training seed.
    folds : int
        Cross-validation folds over all slides (training and test alike).
    size_px, n_train, n_test, tumor_contrast, max_lesion_um
        The cohort (:func:`~cadx.tasks.camelyon16.demo.ensure_demo_cohort`; the CAMELYON16 demo's
        defaults, so ``cadx demo all`` makes it once).
    mpp, tile_size, batch_size
        Feature tiles (um/px, px) and encoder batch.
    epochs, patience, lr
        MIL training (:class:`~cadx.training.mil.MilFitSettings`; early stopping on validation loss).
    top_k : int
        Tiles in each slide's gallery.

    Returns
    -------
    dict
        What ``summary.json`` holds.
    """
    out = Path(out_dir)
    t_start = time.perf_counter()
    times: dict[str, float] = {}
    params = cohort_params(seed=seed, size_px=size_px, n_train=n_train, n_test=n_test,
                           tumor_contrast=tumor_contrast, max_lesion_um=max_lesion_um)
    print(f"cadx demo mil (seed {seed}): gated-attention MIL from slide labels only, {folds}-fold cross-validation "
          f"over all {2 * n_train + n_test} slides of the CAMELYON16 demo cohort")

    t = time.perf_counter()
    cohort, reused = find_or_make_cohort(out, params)
    print(f"[1/5] cohort: {cohort} ({'reused' if reused else 'generated'})")
    layout = Camelyon16Layout(cohort)
    slides = layout.training_slides() + layout.test_slides()
    truth = slide_truth(cohort)
    times["cohort"] = time.perf_counter() - t

    t = time.perf_counter()
    print(f"[2/5] {DEFAULT_ENCODER} features (ImageNet weights, frozen, ONNX Runtime) of every tissue tile: "
          f"{tile_size} px at {mpp} um/px")
    features_dir = out / "features"
    from tqdm.auto import tqdm

    predictor, encoder_id = load_encoder(DEFAULT_ENCODER, input_size=tile_size,
                                         cache_dir=features_dir / ENCODER_CACHE_DIR)
    with tqdm(desc="features", unit="tile") as bar:
        jobs = extract_features(slides, predictor, features_dir, mpp=mpp, tile_size_px=tile_size,
                                batch_size=batch_size, encoder_id=encoder_id, write_pt=False, progress=bar.update)
    for path, why in jobs.failures:
        print(f"  left out {path.name}: {why}")
    names = sorted(p.stem for p in (features_dir / H5_DIR).glob("*.h5") if p.stem.lower() in truth)
    paths = [features_dir / H5_DIR / f"{n}.h5" for n in names]
    labels = [truth[n.lower()][0] for n in names]
    n_tiles = sum(d["tiles"] for _, d in jobs.done)
    times["features"] = time.perf_counter() - t

    t = time.perf_counter()
    print(f"[3/5] {folds}-fold cross-validation of gated-attention MIL on {len(paths)} slides "
          f"({sum(labels)} tumour; slide labels only)")
    settings = MilFitSettings(epochs=epochs, lr=lr, patience=patience, seed=seed)
    cv = cross_validate(paths, labels, folds=folds, seed=seed, settings=settings, out_dir=out / "cv",
                        build_model=lambda d: create_model("abmil", kind="mil", in_chans=d, num_classes=2))
    times["cross_validation"] = time.perf_counter() - t

    t = time.perf_counter()
    print("[4/5] predicting every slide with the fold model that never saw it")
    pred_dir = out / "predictions"
    outlines = _true_outlines(truth, names)
    fold_slides: dict[int, list[str]] = {}
    for name, o in cv.oof.items():
        fold_slides.setdefault(int(o["fold"]), []).append(name)
    galleries: dict[str, Path] = {}
    for fold in sorted(fold_slides):
        ckpt = cv.per_fold[fold]["checkpoint"]
        report = predict_mil(ckpt, features_dir, pred_dir, slides_dir=cohort, slides=fold_slides[fold], top_k=top_k)
        galleries.update(report.galleries)
    times["predict"] = time.perf_counter() - t

    t = time.perf_counter()
    print("[5/5] scoring the attention maps against the lesion annotations (never seen in training)")
    metrics = evaluate_mil(pred_dir, cohort, out_dir=out, exclude=())
    per_fold = []
    for fold in sorted(fold_slides):
        m = evaluate_mil(pred_dir, cohort, out_dir=out / "folds" / f"fold_{fold}", exclude=(),
                         slides=fold_slides[fold])
        per_fold.append({"fold": fold, "slides": m["slides"], "tumor_slides": m["tumor_slides"],
                         **{k: m[k] for k in FOLD_METRICS}, "best_epoch": cv.per_fold[fold]["best_epoch"]})
    mean = {k: float(np.nanmean([f[k] for f in per_fold])) for k in FOLD_METRICS}
    sd = {k: float(np.nanstd([f[k] for f in per_fold], ddof=1)) if len(per_fold) > 1 else float("nan")
          for k in FOLD_METRICS}
    figures = [{"slide": n, "caption": _caption(n, metrics["per_slide"]), "gallery_png": galleries.get(n),
                **_figure_pngs(out / "figures", _slide_path(slides, n), pred_dir / f"{n}.h5", outlines.get(n, []))}
               for n in _shown_slides(metrics["per_slide"])]
    times["evaluate"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t_start

    ok = mean["slide_auc"] >= TARGET_SLIDE_AUC and mean["attention_tile_auc"] >= TARGET_ATTENTION_TILE_AUC
    facts = {
        "command": f"cadx demo mil --seed {seed}", "cadx": __version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "cohort": f"{cohort} ({json.dumps(params)})",
        "encoder": f"{DEFAULT_ENCODER} (ImageNet, frozen), {tile_size} px at {mpp} um/px, "
                   f"{n_tiles} tiles extracted in this run",
        "MIL": json.dumps({"model": "abmil", "folds": folds, "epochs": epochs, "patience": patience, "lr": lr,
                           "instance_weight": settings.instance_weight, "instance_k": settings.instance_k}),
        "attention map": "min-max of log attention per slide (1 = most attended tile of the slide)",
        "timings (s)": json.dumps({k: round(v, 1) for k, v in times.items()}),
    }
    write_html(out / "report.html", "mil.html.j2",
               title="cadx: attention MIL from slide labels only (synthetic CAMELYON16 cohort)",
               legend=(f"Attention maps colour each tile by how much the model attended to it ({DEFAULT_CMAP}: dark "
                       "purple = least attended tile of the slide, yellow = most); red lines are the true lesion "
                       "outlines, which no model saw."),
               metrics=metrics, per_fold=per_fold, mean=mean, sd=sd, folds=folds,
               targets={"slide_auc": TARGET_SLIDE_AUC, "attention_tile_auc": TARGET_ATTENTION_TILE_AUC},
               quality_met=ok, per_slide=metrics["per_slide"], figures=figures, top_k=top_k,
               plots={"Slide-level ROC (out-of-fold, all slides)": out / "roc.png",
                      "Lesion FROC from the attention maps (official CAMELYON16 rules)": out / "froc.png"},
               facts=facts)
    summary = {k: v for k, v in metrics.items() if k != "per_slide"}
    summary.update(per_fold=per_fold, fold_mean=mean, fold_sd=sd, quality_bar_met=ok, seconds=times, seed=seed,
                   cohort=str(cohort), cohort_reused=reused, report=str(out / "report.html"),
                   headline={"slide AUC": mean["slide_auc"], "attention tile AUC": mean["attention_tile_auc"]})
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str))

    def line(key: str, label: str, target: float | None) -> str:
        bar = f"   target >= {target}" if target is not None else ""
        return f"  {label:<22} {mean[key]:.3f} +- {sd[key]:.3f} (mean +- sd over {len(per_fold)} folds){bar}"

    print()
    print(line("slide_auc", "slide AUC", TARGET_SLIDE_AUC))
    print(line("attention_tile_auc", "attention tile AUC", TARGET_ATTENTION_TILE_AUC))
    print(line("instance_tile_auc", "instance tile AUC", None))
    print(line("froc", "FROC (attention map)", None))
    ci = metrics["slide_auc_ci95"]
    print(f"  pooled out-of-fold     slide AUC {metrics['slide_auc']:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}), "
          f"attention tile AUC {metrics['attention_tile_auc']:.3f}, FROC {metrics['froc']:.3f}")
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in times.items() if k != "total")
    print(f"  time       {times['total'] / 60:.1f} min ({stages})")
    print(f"  quality bar {'met' if ok else 'NOT met'}; report: {out / 'report.html'}")
    return summary


def _true_outlines(truth: dict[str, tuple[int, Path]], names: list[str]) -> dict[str, list[np.ndarray]]:
    out = {}
    for name in names:
        xml = truth[name.lower()][1] / "lesion_annotations" / f"{name}.xml"
        out[name] = [a.coords_xy for a in read_asap_xml(xml)] if xml.exists() else []
    return out


def _slide_path(slides: list[Path], name: str) -> Path:
    return next(p for p in slides if p.stem.lower() == name.lower())


def _figure_pngs(folder: Path, slide_path: Path, grid_h5: Path, outlines: list[np.ndarray], *,
                 max_size_px: int = 400) -> dict[str, Path]:
    """The slide with its true lesion outlines (red), and its attention map with the same outlines."""
    with open_slide(slide_path) as slide:
        thumb = slide.get_thumbnail((max_size_px, max_size_px))
        scale = thumbnail_scale(thumb.shape[:2], slide.dimensions)
        truth = write_png(folder / f"{slide.name}_truth.png",
                          draw_outlines(thumb, outlines, scale=scale) if outlines else thumb)
        attention = write_overlay_png(folder / f"{slide.name}_attention.png", slide, read_score_grid_h5(grid_h5),
                                      channel=ATTENTION_CHANNEL, max_size_px=max_size_px, outlines=outlines)
    return {"truth_png": truth, "attention_png": attention}


def _shown_slides(per_slide: list[dict[str, Any]], *, n_tumour: int = 8, n_normal: int = 2) -> list[str]:
    """Tumour slides (most tumour tiles first), then the normal slides the model found most suspicious."""
    tumour = sorted((r for r in per_slide if r["label"] == "Tumor"), key=lambda r: -r["tumor_tiles"])[:n_tumour]
    normal = sorted((r for r in per_slide if r["label"] == "Normal"), key=lambda r: -r["score"])[:n_normal]
    return [r["slide"] for r in tumour + normal]


def _caption(name: str, per_slide: list[dict[str, Any]]) -> str:
    r = next(r for r in per_slide if r["slide"] == name)
    auc = r["attention_auc"]
    att = f", attention tile AUC {auc:.2f}" if auc == auc else ""
    return f"{name} ({r['label'].lower()}, slide probability {r['score']:.2f}{att})"
