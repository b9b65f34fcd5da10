"""cadx evaluate ct: known weighted log loss from long-format files on both sides."""

import json
import math

import pytest

from cadx.cli.main import main
from cadx.errors import InputFileError
from cadx.tasks.rsna_ich.evaluate import evaluate_ct
from cadx.tasks.rsna_ich.layout import SUBTYPES


def _long(path, table):
    lines = ["ID,Label"]
    for name, values in table.items():
        lines += [f"{name}_{s},{v}" for s, v in zip(SUBTYPES, values, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


TRUTH = {"ID_a": [1, 0, 0, 0, 0, 1], "ID_b": [0, 0, 0, 0, 0, 0], "ID_c": [0, 0, 0, 0, 1, 1]}


def test_known_answer_and_outputs(tmp_path):
    truth = _long(tmp_path / "stage_2_train.csv", TRUTH)
    pred = {"ID_a": [0.9, .5, .5, .5, .5, 0.8], "ID_b": [0.2, .5, .5, .5, .5, 0.1], "ID_c": [0.1, .5, .5, .5, .5, 0.6]}
    sub = _long(tmp_path / "submission.csv", pred)
    m = evaluate_ct(sub, truth, out_dir=tmp_path / "ev")
    ll_epi = -(math.log(0.9) + math.log(0.8) + math.log(0.9)) / 3
    ll_any = -(math.log(0.8) + math.log(0.9) + math.log(0.6)) / 3
    assert m["weighted_log_loss"] == pytest.approx((ll_epi + 4 * math.log(2) + 2 * ll_any) / 7, abs=1e-9)
    rows = {r["label"]: r for r in m["per_label"]}
    assert rows["epidural"]["auc"] == 1.0 and rows["any"]["auc"] == 1.0
    assert rows["subdural"]["auc"] == 0.5 and rows["intraventricular"]["auc"] is None
    assert rows["any"]["positives"] == 2 and m["images"] == 3
    assert (tmp_path / "ev" / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["images"] == 3
    assert (tmp_path / "ev" / "per_label.csv").read_text().splitlines()[0] == "label,weight,positives,log_loss,auc"


def test_uniform_half_is_ln2_and_subset_counted(tmp_path):
    truth = _long(tmp_path / "t.csv", TRUTH)
    sub = _long(tmp_path / "s.csv", {"ID_c": [0.5] * 6, "ID_a": [0.5] * 6})
    m = evaluate_ct(sub, truth)
    assert m["weighted_log_loss"] == pytest.approx(math.log(2))
    assert m["truth_images_not_predicted"] == 1


def test_prediction_without_truth_named(tmp_path):
    truth = _long(tmp_path / "t.csv", TRUTH)
    sub = _long(tmp_path / "s.csv", {"ID_a": [0.5] * 6, "ID_zz": [0.5] * 6})
    with pytest.raises(InputFileError, match=r"t.csv: no rows for image ID_zz \(predictions s.csv row 8\)"):
        evaluate_ct(sub, truth)
    bad = _long(tmp_path / "b.csv", {"ID_a": [0.5, 0.5, 0.5, 0.5, 0.5, 1.5]})
    with pytest.raises(InputFileError, match="row 7, column Label: '1.5' is not a probability"):
        evaluate_ct(bad, truth)


def test_cli_json(tmp_path, capsys):
    _long(tmp_path / "stage_2_train.csv", TRUTH)
    _long(tmp_path / "p" / "submission.csv", {k: [0.5] * 6 for k in TRUTH}) if (tmp_path / "p").mkdir() is None else 0
    assert main(["evaluate", "ct", "--pred", str(tmp_path / "p"), "--truth", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["weighted_log_loss"] == pytest.approx(math.log(2))
    assert main(["evaluate", "ct", "--pred", str(tmp_path / "p"), "--truth", str(tmp_path / "stage_2_train.csv")]) == 0
    assert "weighted log loss 0.6931" in capsys.readouterr().out
