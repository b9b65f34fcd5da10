"""`cadx evaluate derm`: ISIC submission CSV against the ISIC 2019 ground truth; plots; bad CSVs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from cadx.cli.main import main
from cadx.errors import CadxError, InputFileError
from cadx.tasks.isic2019.evaluate import evaluate_derm

ISIC = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")

# (image, true class, predicted MEL, NV, BCC): MEL 3 of 4 right, NV 2 of 3, BCC 2 of 2; one AK image
CASES = [
    ("ISIC_0000001", "MEL", 0.7, 0.2, 0.1),
    ("ISIC_0000002", "MEL", 0.6, 0.3, 0.1),
    ("ISIC_0000003", "MEL", 0.5, 0.1, 0.4),
    ("ISIC_0000004", "MEL", 0.2, 0.7, 0.1),  # MEL called NV
    ("ISIC_0000005", "NV", 0.1, 0.8, 0.1),
    ("ISIC_0000006", "NV", 0.3, 0.6, 0.1),
    ("ISIC_0000007", "NV", 0.4, 0.25, 0.35),  # NV called MEL
    ("ISIC_0000008", "BCC", 0.1, 0.2, 0.7),
    ("ISIC_0000009", "BCC", 0.3, 0.1, 0.6),
    ("ISIC_0000010", "AK", 0.2, 0.2, 0.6),  # not a predicted class: reported and left out
]


def _write_truth(path, cases=CASES, *, extra=(("ISIC_0000099", "VASC"),), bom=False):
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["image", *ISIC])
        for name, cls, *_ in list(cases) + [(n, c) for n, c in extra]:
            w.writerow([name, *("1.0" if c == cls else "0.0" for c in ISIC)])
    return path


def _write_pred(path, cases=CASES, *, columns=("MEL", "NV", "BCC"), suffix="", bom=False):
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["image", *columns])
        for name, _, *p in cases:
            w.writerow([name + suffix, *p])
    return path


@pytest.fixture()
def files(tmp_path):
    truth = _write_truth(tmp_path / "ISIC_2019_Training_GroundTruth.csv", bom=True)
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    pred = _write_pred(pred_dir / "predictions.csv", suffix=".jpg", bom=True)
    return pred, truth


def test_known_answers_and_outputs(files, tmp_path):
    pred, truth = files
    m = evaluate_derm(pred.parent, truth, out_dir=tmp_path / "ev")
    assert m["images"] == 9 and m["classes"] == ["MEL", "NV", "BCC"]
    assert m["class_counts"] == {"MEL": 4, "NV": 3, "BCC": 2}
    assert m["confusion_matrix"] == [[3, 1, 0], [1, 2, 0], [0, 0, 2]]
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 2) / 3)
    assert m["accuracy"] == pytest.approx(7 / 9)
    assert m["excluded"] == {"images": 1, "by_class": {"AK": 1}}
    assert m["truth_images_not_predicted"] == 1  # the VASC row
    mel = m["per_class"][0]
    assert mel["class"] == "MEL" and mel["sensitivity"] == pytest.approx(0.75)
    assert mel["specificity"] == pytest.approx(4 / 5) and mel["precision"] == pytest.approx(3 / 4)
    # BCC one-vs-rest: BCC scores 0.7, 0.6 beat every other 0.1-0.4 -> 1.0
    assert m["per_class"][2]["auc"] == 1.0
    # MEL: positives .7 .6 .5 .2 vs negatives .1 .3 .4 .1 .3 -> 17 of 20 pairs
    assert mel["auc"] == pytest.approx(17 / 20)
    on_disk = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert on_disk == m
    rows = list(csv.DictReader((tmp_path / "ev" / "per_class.csv").read_text().splitlines()))
    assert [r["class"] for r in rows] == ["MEL", "NV", "BCC"] and rows[1]["sensitivity"] == str(2 / 3)
    for png in ("confusion.png", "roc.png"):
        assert (tmp_path / "ev" / png).read_bytes()[:4] == b"\x89PNG"


def test_class_subset_and_absent_class_is_null(files, tmp_path):
    pred, truth = files
    m = evaluate_derm(pred, truth, classes=["MEL", "NV"])  # default out: beside the predictions
    assert (pred.parent / "metrics.json").is_file()
    assert m["images"] == 7 and m["excluded"] == {"images": 3, "by_class": {"AK": 1, "BCC": 2}}
    assert m["confusion_matrix"] == [[3, 1], [1, 2]]
    # a predicted class with no true image: its rates are null, never 0
    cases = [c for c in CASES if c[1] in ("MEL", "NV")]
    _write_pred(tmp_path / "p.csv", cases)
    m = evaluate_derm(tmp_path / "p.csv", truth, out_dir=tmp_path / "o")
    bcc = m["per_class"][2]
    assert bcc["images"] == 0 and bcc["sensitivity"] is None and bcc["auc"] is None
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert "NaN" not in (tmp_path / "o" / "metrics.json").read_text()
    with pytest.raises(CadxError, match="no prediction column for SCC"):
        evaluate_derm(pred, truth, classes=["MEL", "SCC"])


@pytest.mark.parametrize("mutate, message", [
    (lambda rows: [["image", "MEL", "NEVUS", "BCC"], *rows[1:]], r"row 1, column NEVUS: not a class of the ground"),
    (lambda rows: rows + [["ISIC_0000404", "0.1", "0.8", "0.1"]], r"no row for image 'ISIC_0000404'.*row 12"),
    (lambda rows: [*rows[:3], [rows[3][0], "nan", "0.5", "0.5"], *rows[4:]], r"row 4, column MEL: 'nan' is not a"),
    (lambda rows: [*rows[:2], [rows[2][0], "0.5", "1.5", "0"], *rows[3:]], r"row 3, column NV: 1.5 is not a prob"),
    (lambda rows: [*rows[:2], [rows[2][0], "0.5", ""], *rows[3:]], r"row 3, column BCC: missing"),
    (lambda rows: rows + [rows[1]], r"row 12, column image: 'ISIC_0000001.jpg' already on row 2"),
    (lambda rows: rows + [["ISIC_0000001", *rows[1][1:]]], r"row 12, column image: 'ISIC_0000001' already on row 2"),
])
def test_bad_predictions_name_file_row_and_column(files, mutate, message):
    pred, truth = files
    rows = list(csv.reader(pred.read_text(encoding="utf-8-sig").splitlines()))
    with open(pred, "w", newline="") as fh:
        csv.writer(fh).writerows(mutate(rows))
    with pytest.raises(InputFileError, match=message) as err:
        evaluate_derm(pred, truth)
    assert err.value.path in (pred, truth)


def test_bad_ground_truth(tmp_path):
    pred = _write_pred(tmp_path / "p.csv")
    truth = _write_truth(tmp_path / "gt.csv")
    rows = list(csv.reader(truth.read_text().splitlines()))
    rows[3][2] = "1.0"  # a second class (NV) marked on ISIC_0000003
    with open(truth, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(InputFileError, match=r"gt.csv: row 4: 2 classes marked 1, expected exactly one"):
        evaluate_derm(pred, truth)
    with pytest.raises(InputFileError, match=r"no ground-truth file in this folder"):
        evaluate_derm(pred, tmp_path)
    with pytest.raises(InputFileError, match="no such predictions file"):
        evaluate_derm(tmp_path / "missing.csv", truth)


def test_cli_text_json_and_user_error(files, tmp_path, capsys):
    pred, truth = files
    assert main(["evaluate", "derm", "--pred", str(pred), "--truth", str(truth), "--out", str(tmp_path / "c")]) == 0
    text = capsys.readouterr().out
    assert "images 9 (MEL 4, NV 3, BCC 2)  balanced accuracy 0.806  accuracy 0.778" in text
    assert "left out 1 images whose true class is not predicted (AK 1)" in text
    assert main(["evaluate", "derm", "--pred", str(pred), "--truth", str(truth), "--out", str(tmp_path / "c"),
                 "--classes", "MEL,NV", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["confusion_matrix"] == [[3, 1], [1, 2]]
    bad = _write_pred(tmp_path / "bad.csv", columns=("MEL", "NEVUS", "BCC"))
    assert main(["evaluate", "derm", "--pred", str(bad), "--truth", str(truth), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"cadx: error: {bad}: row 1, column NEVUS: not a class of the ground truth ({', '.join(ISIC)})"]


def test_plots_write_pngs_without_switching_the_backend(tmp_path):
    import matplotlib

    from cadx.metrics.calibration import reliability_bins
    from cadx.viz.plots import plot_confusion, plot_reliability, plot_roc_ovr

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        cm = plot_confusion(tmp_path / "cm.png", [[3, 1, 0], [1, 2, 0], [0, 0, 2]], ["MEL", "NV", "BCC"])
        y = [0, 0, 1, 2, 1]
        proba = np.array([[.7, .2, .1], [.4, .5, .1], [.2, .7, .1], [.1, .2, .7], [.3, .3, .4]])
        roc = plot_roc_ovr(tmp_path / "roc.png", y, proba, ["MEL", "NV", "BCC", "AK"][:3])
        b = reliability_bins(proba, y, n_bins=5)
        rel = plot_reliability(tmp_path / "rel.png", b, b)
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    assert Image.open(roc).size == (462, 462) and Image.open(rel).size == (506, 572)
    w, h = Image.open(cm).size
    assert w > h > 300
    assert not list(tmp_path.glob(".*.part"))
    with pytest.raises(ValueError, match="3 class names"):
        plot_confusion(tmp_path / "x.png", [[1, 0], [0, 1]], ["A", "B", "C"])
    with pytest.raises(ValueError, match="4 classes"):
        plot_roc_ovr(tmp_path / "x.png", y, proba, ["A", "B", "C", "D"])
