"""The demo, shrunk: every stage runs, every promised output exists, and the pages state the run's numbers."""

from __future__ import annotations

import json

import pytest


def test_demo_all_small(tmp_path):
    from cadx.tasks.demo import run_demos

    cohort = {"seed": 5, "size_px": 4096, "n_train": 2, "n_test": 4, "tumor_contrast": 0.6}
    options = {"camelyon16": {**cohort, "warmup_steps": 2, "finetune_steps": 2},
               "mil": {**cohort, "folds": 2, "epochs": 2, "top_k": 3},
               "seg": {**cohort, "mpp": 2.0, "tile_size": 64, "batch_size": 4, "warmup_steps": 1, "steps": 2,
                       "eval_every": 2, "val_tiles": 8},
               "derm": {"seed": 5, "n_train": 48, "n_test": 24, "image_size": 64, "warmup_steps": 3,
                        "finetune_steps": 3, "explain_images": 4, "gallery_size": 2},
               "ct": {"seed": 5, "n_train": 6, "n_test": 3, "slices_per_study": 6, "size_px": 64, "image_size": 64,
                      "bleed_fraction": 1.0, "warmup_steps": 2, "finetune_steps": 2, "sequence_steps": 4,
                      "gallery_slices": 1, "flag_threshold": 0.0}}
    result = run_demos(tmp_path, "all", options=options)
    assert result["failed"] == []
    task = tmp_path / "camelyon16"
    for name in ("report.html", "summary.json", "metrics.json", "roc.png", "froc.png", "per_slide.csv",
                 "tiling_preview.png", "train/model.pt", "train/slide_forest.json"):
        assert (task / name).exists(), name
    assert len(list((task / "overlays").glob("*.png"))) == 4

    summary = json.loads((task / "summary.json").read_text())
    metrics = json.loads((task / "metrics.json").read_text())
    assert summary["seed"] == 5 and summary["slide_auc"] == metrics["slide_auc"]
    assert metrics["slides"] == 4 and metrics["tumor_slides"] + metrics["normal_slides"] == 4
    sens = list(metrics["froc_sensitivities"].values())
    assert sens == sorted(sens) and metrics["froc"] == pytest.approx(sum(sens) / len(sens))

    page = (task / "report.html").read_text()
    assert f"{metrics['slide_auc']:.3f} (95% bootstrap CI" in page and f"FROC</th><td>{metrics['froc']:.3f}" in page
    assert page.count("data:image/png;base64,") == 3 + 4  # ROC, FROC, tiling preview + one overlay per test slide
    assert "viridis" in page and "second opinion" in page

    index = (tmp_path / "index.html").read_text()
    assert 'href="camelyon16/report.html"' in index and f"slide AUC {metrics['slide_auc']:.3f}" in index
    assert [t["error"] for t in json.loads((tmp_path / "index.json").read_text())["tasks"]] == [None] * 5

    derm = tmp_path / "derm"
    d_metrics = json.loads((derm / "metrics.json").read_text())
    d_summary = json.loads((derm / "summary.json").read_text())
    assert d_metrics["images"] == 24 and d_summary["balanced_accuracy"] == d_metrics["balanced_accuracy"]
    # every held-out image is of a lesion the training set never saw
    train_csv = (derm / "data_train" / "ISIC_2019_Training_Metadata.csv").read_text().splitlines()[1:]
    test_csv = (derm / "data_test" / "ISIC_2019_Training_Metadata.csv").read_text().splitlines()[1:]
    assert not {r.split(",")[3] for r in train_csv} & {r.split(",")[3] for r in test_csv}
    assert [f["method"] for f in d_summary["faithfulness"]] == ["gradcam", "gradcam++", "eigencam"]
    d_page = (derm / "report.html").read_text()
    assert f"{d_metrics['balanced_accuracy']:.3f}" in d_page and 'href="derm/report.html"' in index
    assert len(list((derm / "gallery").glob("*.png"))) >= 2

    _check_mil(tmp_path / "mil", index)
    _check_seg(tmp_path / "seg", index)
    _check_ct(tmp_path / "ct", index)


def _check_mil(task, index):
    summary = json.loads((task / "summary.json").read_text())
    assert summary["cohort_reused"] and summary["cohort"] == str(task.parent / "camelyon16" / "cohort")
    assert not (task / "cohort").exists()  # the CAMELYON16 demo's slides, not a second cohort
    assert summary["slides"] == 8 and len(summary["per_fold"]) == 2
    folds = summary["per_fold"]
    assert summary["fold_mean"]["slide_auc"] == pytest.approx(sum(f["slide_auc"] for f in folds) / 2)
    for folder, pattern in (("predictions", "*.h5"), ("predictions", "*_top3.png"), ("features/h5_files", "*.h5")):
        assert len(list((task / folder).glob(pattern))) == 8, pattern
    page = (task / "report.html").read_text()
    assert f"{summary['fold_mean']['slide_auc']:.3f} &plusmn;" in page and "true lesion outlines" in page
    assert ("Quality bar <b class=\"ok\">met" in page) == summary["quality_bar_met"]
    assert 'href="mil/report.html"' in index


def _check_seg(task, index):
    summary = json.loads((task / "summary.json").read_text())
    metrics = json.loads((task / "seg_metrics.json").read_text())
    assert summary["cohort_reused"] and not (task / "cohort").exists()  # the CAMELYON16 demo's slides
    assert summary["slides"] == metrics["slides"] == 4 and summary["dice"] == metrics["dice"]
    for suffix in ("_mask.tif", ".xml", ".geojson", ".png", "_seg.json"):
        assert len(list((task / "predictions").glob(f"test_*{suffix}"))) == 4, suffix
    assert (task / "train" / "model.pt").exists() and (task / "seg_per_slide.csv").exists()
    dice = metrics["dice"]  # None: no tumour in truth or prediction
    assert summary["headline"]["pooled Dice"] == pytest.approx(float("nan") if dice is None else dice, nan_ok=True)
    page = (task / "report.html").read_text()
    met = dice is not None and dice >= 0.80
    assert ("Quality bar <b class=\"ok\">met" in page) == summary["quality_bar_met"] == met
    shown = metrics["tumor_slides"] + min(2, metrics["slides"] - metrics["tumor_slides"])
    assert page.count("data:image/png;base64,") == shown  # one side-by-side figure per shown slide
    assert "true lesion outlines" in page and 'href="seg/report.html"' in index


def _check_ct(task, index):
    import pydicom

    from cadx.tasks.rsna_ich.layout import read_long_csv, read_rsna_data

    train, test = read_rsna_data(task / "data_train"), read_rsna_data(task / "data_test")
    assert not set(train.patients) & set(test.patients)  # held-out studies are of other patients
    held_out = set(test.image_ids)
    assert len(held_out) == 3 * 6
    for csv in (task / "predictions" / "submission.csv", task / "predictions_sequence" / "submission.csv"):
        rows = csv.read_text().splitlines()
        assert rows[0] == "ID,Label" and len(rows) == 1 + 6 * len(held_out)
        assert set(read_long_csv(csv, what="predictions", binary=False).image_ids) == held_out
    metrics = json.loads((task / "metrics.json").read_text())
    seq = json.loads((task / "predictions_sequence" / "metrics.json").read_text())
    summary = json.loads((task / "summary.json").read_text())
    assert metrics["images"] == seq["images"] == 18
    assert summary["headline"] == {"weighted log loss": metrics["weighted_log_loss"],
                                   "with sequence model": seq["weighted_log_loss"],
                                   "any AUC": next(r["auc"] for r in metrics["per_label"] if r["label"] == "any")}
    page = (task / "report.html").read_text()
    assert f"{metrics['weighted_log_loss']:.4f}" in page and f"{seq['weighted_log_loss']:.4f}" in page
    assert list((task / "gallery").glob("*.png")) and 'href="ct/report.html"' in index

    dicom = summary["dicom_results"]  # flag_threshold 0: the tiny model's top study is always exported
    study = dicom["study"]
    assert study in set(test.studies) and (task / "dicom_results" / study).is_dir()
    assert len(dicom["secondary_capture"]) >= 1
    from cadx.io.dicom import quiet_uids

    for path in [*dicom["secondary_capture"], dicom["sr"]]:
        with quiet_uids():  # RSNA ids stand in the UID tags; pydicom warns when it parses them
            ds = pydicom.dcmread(path)
            ds.StudyInstanceUID  # noqa: B018 - parsed on first access
        assert ds.StudyInstanceUID == study and ds.PatientID == test.patients[test.studies.index(study)]
        assert ds.SOPClassUID in ("1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.88.33")  # SC, Comprehensive SR
    assert not list((task / "data_test").rglob("sc_*.dcm")) and not list((task / "data_test").rglob("*sr*.dcm"))


def test_cli_demo_seg_shares_the_cohort_options(monkeypatch, tmp_path):
    import cadx.tasks.demo as demo
    from cadx.cli.main import main

    seen = {}

    def fake_run_demos(out, task, *, options):
        seen.update(task=task, options=options)
        return {"failed": []}

    monkeypatch.setattr(demo, "run_demos", fake_run_demos)
    assert main(["demo", "seg", "--out", str(tmp_path), "--size", "4096", "--seg-steps", "7"]) == 0
    camelyon = seen["options"]["camelyon16"]
    assert seen["task"] == "seg" and camelyon["size_px"] == 4096
    assert seen["options"]["seg"] == {**camelyon, "steps": 7}  # the same cohort as the CAMELYON16 demo
    assert main(["demo", "seg", "--out", str(tmp_path)]) == 0
    assert seen["options"]["seg"] == seen["options"]["camelyon16"]  # the demo's own step count
