"""``cadx train mil``, ``cadx predict mil``, ``cadx evaluate mil``: thin edges, clean errors, JSON."""

from __future__ import annotations

import json

from cadx.cli.main import main

from .test_mil_evaluate import make_mil_predictions
from .test_mil_task import make_bags


def test_evaluate_mil_json_and_table(tmp_path, capsys):
    pred, truth = make_mil_predictions(tmp_path)
    assert main(["evaluate", "mil", "--pred", str(pred), "--truth", str(truth), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["slide_auc"] == 0.5 and m["froc"] == 1.0 and len(m["per_slide"]) == 3
    assert main(["evaluate", "mil", "--pred", str(pred), "--truth", str(truth), "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "slide AUC 0.500" in out and "attention 0.892" in out and (tmp_path / "e" / "roc.png").is_file()


def test_evaluate_mil_without_predictions_is_one_line(tmp_path, capsys):
    pred, truth = make_mil_predictions(tmp_path)
    (pred / "slide_scores.csv").unlink()
    assert main(["evaluate", "mil", "--pred", str(pred), "--truth", str(truth)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cadx: error:" in err and "cadx predict mil" in err


def test_train_and_predict_mil(tmp_path, capsys):
    feats, labels = make_bags(tmp_path)
    cfg = tmp_path / "mil.yaml"
    cfg.write_text(f"features_dir: {feats}\nlabels: {labels}\nout_dir: {tmp_path / 'run'}\nfolds: 2\n"
                   "epochs: 2\nlr: 1e-3\n")
    assert main(["train", "mil", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert f"final model: {tmp_path / 'run' / 'model.pt'}" in out
    assert main(["predict", "mil", "--model", str(tmp_path / "run" / "model.pt"), "--features", str(feats),
                 "--out", str(tmp_path / "pred"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["scores"]) == 8 and result["failures"] == [] and result["galleries"] == {}
    rows = (tmp_path / "pred" / "slide_scores.csv").read_text().splitlines()
    assert len(rows) == 9 and rows[1].endswith(",model.pt")


def test_train_mil_bad_config_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "mil.yaml"
    cfg.write_text(f"features_dir: {tmp_path}\nlabels: {tmp_path}\nout_dir: o\nmodel: transmil\n")
    assert main(["train", "mil", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "features_dir: " in err and "model: Input should be 'abmil' or 'maxmil'" in err
