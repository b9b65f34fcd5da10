"""The dermoscopy report prints exactly the numbers it is given, escaped, with every image inlined."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest
from PIL import Image

from cadx.tasks.isic2019.report import write_derm_report


def _png(path, value):
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(path)
    return path


def _inputs(tmp_path):
    plots = {k: _png(tmp_path / f"{k}.png", i * 40) for i, k in enumerate(("confusion", "roc", "reliability"))}
    metrics = {
        "balanced_accuracy": 0.86666, "accuracy": 0.875, "mean_auc": 0.95432, "images": 48, "lesions": 41,
        "class_counts": {"MEL": 16, "NV": 20, "BCC": 12},
        "excluded": {"images": 2, "by_class": {"AK": 2}},
        "per_class": [
            {"class": "MEL", "images": 16, "predicted": 15, "sensitivity": 0.8125, "specificity": 0.90625,
             "precision": 0.86667, "f1": 0.83871, "auc": 0.93164},
            {"class": "NV", "images": 20, "predicted": 22, "sensitivity": 0.95, "specificity": 0.82143,
             "precision": 0.86364, "f1": 0.90476, "auc": 0.97321},
            {"class": "BCC", "images": 12, "predicted": 11, "sensitivity": 0.83333, "specificity": 0.97222,
             "precision": 0.90909, "f1": 0.86957, "auc": None},
        ],
    }
    calibration = {"temperature": 1.73214, "ece_before": 0.11734, "ece_after": 0.04121, "fit_images": 37}
    gallery = [
        {"image_png": _png(tmp_path / "g1.png", 200), "caption": "MEL <b>sure</b> & right", "correct": True},
        {"image_png": _png(tmp_path / "g2.png", 210), "caption": "NV called MEL", "correct": False},
        {"image_png": _png(tmp_path / "g3.png", 220), "caption": "BCC", "correct": True},
    ]
    faithfulness = [
        {"method": "gradcam", "drop_top": 0.31234, "drop_random": 0.05678, "passed": True},
        {"method": "<i>eigencam</i>", "drop_top": 0.02001, "drop_random": 0.04444, "passed": False},
    ]
    facts = {"model": "mobilenet <script>alert(1)</script>", "seed": "seven"}
    return dict(metrics=metrics, calibration=calibration, gallery=gallery, faithfulness=faithfulness,
                plots=plots, facts=facts)


def _visible_numbers(page: str) -> list[str]:
    body = page.split("<body>", 1)[1]
    body = re.sub(r'src="data:image/png;base64,[^"]*"', "", body)
    body = re.sub(r'width="\d+"', "", body)
    body = re.sub(r"<h1>.*?</h1>", "", body)  # the title
    return re.findall(r"\d+(?:\.\d+)?", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def test_page_shows_exactly_the_numbers_given(tmp_path):
    args = _inputs(tmp_path)
    page = write_derm_report(tmp_path / "r.html", **args).read_text()
    assert ("Balanced accuracy <b>0.867</b> on 48 held-out images of 41 lesions (MEL 16, NV 20, BCC 12);\n"
            "accuracy 0.875, mean one-vs-rest AUC 0.954.") in page
    assert "<tr><td>MEL</td><td>16</td><td>15</td><td>0.812</td><td>0.906</td><td>0.867</td><td>0.839</td>" \
           "<td>0.932</td></tr>" in page
    assert "<td>0.909</td><td>0.870</td><td>n/a</td></tr>" in page  # BCC AUC None -> n/a
    assert "<th>temperature</th><td>1.732</td>" in page and "(37 images)" in page
    assert "before</th><td>0.117</td>" in page and "after</th><td>0.041</td>" in page
    assert "<td>gradcam</td><td>0.312</td><td>0.057</td><td><span class=\"ok\">passed</span>" in page
    assert "<td>0.020</td><td>0.044</td><td><span class=\"bad\">failed</span>" in page
    assert "Left out: 2 images" in page and "(AK 2)" in page
    expected = {"0.867", "48", "41", "16", "20", "12", "0.875", "0.954", "2",  # headline, excluded
                "15", "0.812", "0.906", "0.839", "0.932", "22", "0.950", "0.821", "0.864", "0.905", "0.973",
                "11", "0.833", "0.972", "0.909", "0.870",  # per class
                "1.732", "0.117", "0.041", "37", "0.312", "0.057", "0.020", "0.044", "1"}  # 1: alert(1) in facts
    assert set(_visible_numbers(page)) == expected
    assert page.count("data:image/png;base64,") == 6  # 3 plots + 3 gallery images
    correct, wrong = page.split("<h3>Correct</h3>")[1].split("<h3>Wrong</h3>")
    assert correct.count("class=\"ok\"") == 2 and wrong.split("<h2>")[0].count("class=\"bad\"") == 1


def test_text_is_escaped_and_optional_parts_drop_out(tmp_path):
    args = _inputs(tmp_path)
    page = write_derm_report(tmp_path / "r.html", **args).read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "MEL &lt;b&gt;sure&lt;/b&gt; &amp; right" in page and "&lt;i&gt;eigencam&lt;/i&gt;" in page
    assert "synthetic" in page
    args["metrics"] = {k: v for k, v in args["metrics"].items() if k not in ("lesions", "excluded")}
    args["plots"] = {k: v for k, v in args["plots"].items() if k != "reliability"}
    args["gallery"] = [g for g in args["gallery"] if g["correct"]]
    page = write_derm_report(tmp_path / "r2.html", **args, synthetic=False).read_text()
    assert "48 held-out images (MEL 16, NV 20, BCC 12);" in page
    assert "Left out" not in page and "Reliability diagram" not in page and "synthetic" not in page
    assert page.count("data:image/png;base64,") == 4
    assert "<h3>Wrong</h3>\n<p>none</p>" in page


def test_missing_keys_are_a_callers_bug(tmp_path):
    args = _inputs(tmp_path)
    with pytest.raises(ValueError, match="faithfulness\\[0\\] lacks passed"):
        write_derm_report(tmp_path / "r.html", **{**args, "faithfulness": [{"method": "x", "drop_top": 1.0,
                                                                             "drop_random": 0.0}]})
    with pytest.raises(ValueError, match="plots lacks 'roc'"):
        write_derm_report(tmp_path / "r.html", **{**args, "plots": {"confusion": args["plots"]["confusion"]}})
    assert not (tmp_path / "r.html").exists()
