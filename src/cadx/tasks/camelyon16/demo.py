"""The CAMELYON16 demo (``cadx demo camelyon16``; part of ``cadx demo all`` = ``make demo``).

CAMELYON16 end to end on a generated cohort: synthesise training and test slides (two staining
centres), tile them, fine-tune the offline ImageNet EfficientNet-Lite0, predict every test slide
with ONNX Runtime, score with the challenge's own metrics, and write an HTML report.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cadx import __version__
from cadx.inference.predictor import load_predictor
from cadx.io.annotations import read_asap_xml
from cadx.io.atomic import atomic_path
from cadx.io.h5 import read_score_grid_h5 as read_heatmap_h5
from cadx.io.slide import open_slide
from cadx.report.html import write_html
from cadx.synth.cohort import generate_cohort
from cadx.tasks.camelyon16.evaluate import evaluate_camelyon
from cadx.tasks.camelyon16.layout import Camelyon16Layout
from cadx.tasks.camelyon16.predict import predict_slides
from cadx.tasks.camelyon16.slide_forest import fit_slide_forest, label_from_name, read_feature_table, save_slide_forest
from cadx.tasks.camelyon16.train import TrainConfig, train_tile_classifier
from cadx.viz.overlay import DEFAULT_CMAP
from cadx.wsi.preview import write_overlay_png, write_tiling_preview
from cadx.wsi.tiling import find_slides, tile_slide

#: The demo's quality bar on its own cohort (issue #3).
TARGET_SLIDE_AUC = 0.95
TARGET_FROC = 0.70
#: Written last into a finished demo cohort: the parameters it was made with.
DEMO_PARAMS = "demo_params.json"


def ensure_demo_cohort(out_dir: str | Path, *, seed: int = 2026, size_px: int = 8192, n_train: int = 6,
                       n_test: int = 16, tumor_contrast: float = 0.2, max_lesion_um: float | None = 500.0,
                       stale: Sequence[str | Path] = ()) -> Path:
    """The demo cohort in ``out_dir/cohort``: reused if made with the same parameters, else generated.

    The parameters are recorded in ``cohort/demo_params.json`` (written last, atomically); a cohort
    that lacks it or records other parameters is removed, with the ``stale`` paths (outputs made
    from it), and generated again. Both the CAMELYON16 demo and the MIL demo call this.

    Parameters
    ----------
    out_dir : path
        The demo's folder; the cohort goes to ``out_dir/cohort``.
    seed, size_px, n_train, n_test, tumor_contrast, max_lesion_um
        See :func:`cadx.synth.cohort.generate_cohort` (``n_train`` tumour and as many normal
        training slides).
    stale : sequence of path
        Removed when the cohort is generated again.

    Returns
    -------
    Path
        The cohort's root (CAMELYON16 layout).

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> demo_cohort_params(out / "cohort") is None  # nothing made yet
    True
    >>> root = ensure_demo_cohort(out, seed=1, size_px=1024, n_train=1, n_test=1)
    >>> sorted(p.name for p in (root / "training").iterdir())
    ['lesion_annotations', 'normal', 'tumor']
    >>> made = (root / "cohort.csv").stat().st_mtime_ns
    >>> ensure_demo_cohort(out, seed=1, size_px=1024, n_train=1, n_test=1) == root  # the same: reused
    True
    >>> (root / "cohort.csv").stat().st_mtime_ns == made
    True
    """
    import shutil

    out = Path(out_dir)
    cohort = out / "cohort"
    params = cohort_params(seed=seed, size_px=size_px, n_train=n_train, n_test=n_test,
                           tumor_contrast=tumor_contrast, max_lesion_um=max_lesion_um)
    if demo_cohort_params(cohort) == params:  # reuse only an identical cohort
        return cohort
    if cohort.exists():
        shutil.rmtree(cohort)
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    generate_cohort(cohort, n_tumor=n_train, n_normal=n_train, n_test=n_test, size_px=size_px, seed=seed,
                    tumor_contrast=tumor_contrast, max_lesion_um=max_lesion_um)
    with atomic_path(cohort / DEMO_PARAMS) as tmp:
        tmp.write_text(json.dumps(params))
    return cohort


def cohort_params(*, seed: int, size_px: int, n_train: int, n_test: int, tumor_contrast: float,
                  max_lesion_um: float | None) -> dict[str, Any]:
    """The parameters that identify a demo cohort (recorded in it; a demo reuses only an equal one).

    Examples
    --------
    >>> sorted(cohort_params(seed=1, size_px=512, n_train=1, n_test=2, tumor_contrast=0.2, max_lesion_um=None))
    ['max_lesion_um', 'n_test', 'n_train', 'seed', 'size_px', 'tumor_contrast']
    """
    return {"seed": seed, "size_px": size_px, "n_train": n_train, "n_test": n_test,
            "tumor_contrast": tumor_contrast, "max_lesion_um": max_lesion_um}


def demo_cohort_params(cohort: str | Path) -> dict[str, Any] | None:
    """The parameters a finished demo cohort was made with (None: not a finished demo cohort)."""
    made = Path(cohort) / DEMO_PARAMS
    try:
        return json.loads(made.read_text())
    except (OSError, ValueError):
        return None


def find_or_make_cohort(out: Path, params: dict[str, Any]) -> tuple[Path, bool]:
    """The demo cohort with ``params``: the CAMELYON16 demo's when it matches, else made in ``out/cohort``.

    For the demos that reuse the CAMELYON16 demo's slides (MIL, segmentation): under ``cadx demo all``
    that is ``out/../camelyon16/cohort``.

    Returns
    -------
    cohort : Path
    reused : bool
        Whether an existing cohort was used.
    """
    for candidate in (out.parent / "camelyon16" / "cohort", out / "cohort"):
        if demo_cohort_params(candidate) == params:
            return candidate, True
    return ensure_demo_cohort(out, **params), False


def run_demo(out_dir: str | Path, *, seed: int = 2026, size_px: int = 8192, n_train: int = 6, n_test: int = 16,
             tumor_contrast: float = 0.2, max_lesion_um: float | None = 500.0, warmup_steps: int = 15,
             finetune_steps: int = 90) -> dict[str, Any]:
    """Run the whole CAMELYON-style pipeline and return the metrics (also in ``out_dir``)."""
    out = Path(out_dir)
    t_start = time.perf_counter()
    times: dict[str, float] = {}
    print(f"cadx demo (seed {seed}): {n_train} tumour + {n_train} normal training slides, {n_test} test slides, "
          f"{size_px} px at 0.243 um/px, tumour contrast {tumor_contrast}, lesions <= {max_lesion_um} um")

    t = time.perf_counter()
    print("[1/4] generating the cohort (CAMELYON16 layout, two staining centres)")
    cohort = ensure_demo_cohort(out, seed=seed, size_px=size_px, n_train=n_train, n_test=n_test,
                                tumor_contrast=tumor_contrast, max_lesion_um=max_lesion_um,
                                stale=(out / "train",))
    times["synthesise"] = time.perf_counter() - t

    t = time.perf_counter()
    cfg = TrainConfig(data_dir=str(cohort), out_dir=str(out / "train"), seed=seed, warmup_steps=warmup_steps,
                      finetune_steps=finetune_steps, eval_every=15, patience=3)
    print("[2/4] tiling the training slides and fine-tuning tf_efficientnet_lite0 (ImageNet weights, offline)")
    ckpt = train_tile_classifier(cfg)
    times["tile_and_train"] = time.perf_counter() - t

    t = time.perf_counter()
    print("[3/4] predicting training slides (for the slide-level random forest) and test slides (ONNX Runtime)")
    predictor, meta = load_predictor(ckpt, backend="onnx")
    layout = Camelyon16Layout(cohort)
    train_slides = sorted(layout.training_slides())
    predict_slides(train_slides, predictor, out / "predictions_train", tile=meta["tile"])
    names, feats = read_feature_table(out / "predictions_train")
    forest = save_slide_forest(out / "train" / "slide_forest.json",
                               fit_slide_forest(feats, [label_from_name(n) for n in names], seed=seed))
    test_slides = layout.test_slides()
    pred_dir = out / "predictions"
    report = predict_slides(test_slides, predictor, pred_dir, tile=meta["tile"], slide_classifier=forest)
    times["predict"] = time.perf_counter() - t

    t = time.perf_counter()
    print("[4/4] scoring with the CAMELYON16 metrics")
    metrics = evaluate_camelyon(pred_dir, layout.testing, out_dir=out, score_column="rf_score")
    max_metrics = evaluate_camelyon(pred_dir, layout.testing, out_dir=out / "max_score", score_column="score")
    metrics["slide_auc_max_probability"] = max_metrics["slide_auc"]
    overlays = {}
    for slide_path in test_slides:
        xml = layout.testing_annotations / f"{slide_path.stem}.xml"
        outlines = [a.coords_xy for a in read_asap_xml(xml)] if xml.exists() else []
        with open_slide(slide_path) as slide:
            hm = read_heatmap_h5(pred_dir / f"{slide.name}.h5")
            caption = f"{slide.name} ({'tumour' if outlines else 'normal'}, max tile p {report.scores[slide.name]:.2f})"
            overlays[caption] = write_overlay_png(out / "overlays" / f"{slide.name}.png", slide, hm, max_size_px=600,
                                                  outlines=outlines)
    first = find_slides([layout.training_tumor])[0]
    with open_slide(first) as slide:
        tiling = tile_slide(slide, target_mpp=cfg.mpp, tile_size_px=cfg.tile_size, min_tissue=cfg.min_tissue)
        grid_png = write_tiling_preview(out / "tiling_preview.png", slide, tiling, max_size_px=600)
    times["evaluate"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t_start

    n_tiles = sum(s["tiles"] for s in report.seconds.values())
    tiles_per_s = n_tiles / max(sum(s["total"] for s in report.seconds.values()), 1e-9)
    facts = {
        "command": f"cadx demo camelyon16 --seed {seed} --size {size_px}", "cadx": __version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "model": meta["model"]["architecture"],
        "weights": meta["model"]["weights"], "tile": json.dumps(meta["tile"]),
        "training": json.dumps({k: v for k, v in asdict(cfg).items()
                                if k in ("warmup_steps", "finetune_steps", "batch_size", "lr", "lr_head",
                                         "trainable_blocks")}),
        "best validation": json.dumps({k: meta["metrics"].get(k)
                                       for k in ("val_auc", "val_sensitivity", "val_specificity", "step")}),
        "inference": f"{tiles_per_s:.0f} tiles/s end to end (ONNX Runtime)",
        "timings (s)": json.dumps({k: round(v, 1) for k, v in times.items()}),
    }
    write_html(out / "report.html", "camelyon16.html.j2",
               title="cadx: CAMELYON16-style metastasis detection (synthetic cohort)",
               legend=(f"Heatmaps colour the tile classifier's tumour probability with the {DEFAULT_CMAP} colour map "
                       "(dark purple 0, yellow 1; uncoloured where no tissue tile was predicted); red lines are "
                       "the ground-truth lesion outlines."),
               score_name="random forest on heatmap features", metrics=metrics, per_slide=metrics["per_slide"],
               overlays=overlays, plots={"Slide-level ROC (test slides)": out / "roc.png",
                      "Lesion FROC (official CAMELYON16 rules)": out / "froc.png",
                      f"Tissue tiles of {first.stem} ({cfg.tile_size} px at {cfg.mpp} um/px)": grid_png},
               facts=facts)
    summary = {k: v for k, v in metrics.items() if k != "per_slide"}
    summary.update(seconds=times, seed=seed, checkpoint=str(ckpt), report=str(out / "report.html"),
                   headline={"slide AUC": metrics["slide_auc"], "FROC": metrics["froc"],
                             "tile AUC": metrics.get("tile_auc", float("nan"))})
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    ok = metrics["slide_auc"] >= TARGET_SLIDE_AUC and metrics["froc"] >= TARGET_FROC
    ci = metrics["slide_auc_ci95"]
    print(f"\n  slide AUC  {metrics['slide_auc']:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f})"
          f"   target >= {TARGET_SLIDE_AUC}  [random forest on heatmap features; max probability: "
          f"{metrics['slide_auc_max_probability']:.3f}]")
    print(f"  FROC       {metrics['froc']:.3f}   target >= {TARGET_FROC}   "
          f"({', '.join(f'{k} FP: {v:.2f}' for k, v in metrics['froc_sensitivities'].items())})")
    if "tile_auc" in metrics:
        print(f"  tile AUC   {metrics['tile_auc']:.3f}, sensitivity {metrics['tile_sensitivity']:.2f}, "
              f"specificity {metrics['tile_specificity']:.2f}")
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in times.items() if k != "total")
    print(f"  time       {times['total'] / 60:.1f} min ({stages})")
    print(f"  quality bar {'met' if ok else 'NOT met'}; report: {out / 'report.html'}")
    return summary
