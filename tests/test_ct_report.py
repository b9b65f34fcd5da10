"""The head-CT report prints exactly the numbers it is given, escaped, with every image inlined."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest
from PIL import Image

from cadx.tasks.rsna_ich.report import write_ct_report

LABELS = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any")


def _png(path, value):
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(path)
    return path


def _inputs(tmp_path):
    slice_rows = [{"label": lab, "log_loss": 0.1 + 0.01 * i + 0.00011, "auc": 0.9 + 0.01 * i + 0.00012}
                  for i, lab in enumerate(LABELS)]
    slice_rows[0]["auc"] = None  # no positive epidural slice: AUC undefined
    seq_rows = [{"label": lab, "log_loss": 0.05 + 0.01 * i + 0.00021, "auc": 0.93 + 0.01 * i + 0.00022}
                for i, lab in enumerate(reversed(LABELS))]  # matched by label, not position
    return dict(
        metrics_slice={"weighted_log_loss": 0.15432, "per_label": slice_rows, "slices": 360, "studies": 12},
        metrics_sequence={"weighted_log_loss": 0.09876, "per_label": seq_rows},
        plots={"roc": _png(tmp_path / "roc.png", 10), "roc_sequence": _png(tmp_path / "roc_seq.png", 20)},
        gallery=[{"image_png": _png(tmp_path / "g1.png", 200), "caption": "subdural <b>0.91</b> & left"},
                 {"image_png": _png(tmp_path / "g2.png", 210), "caption": "epidural"}],
        facts={"model": "tf_efficientnet_lite0 <script>alert(7)</script>", "seed": "seven"},
    )


def _visible_numbers(page: str) -> list[str]:
    body = page.split("<body>", 1)[1]
    body = re.sub(r'src="data:image/png;base64,[^"]*"', "", body)
    body = re.sub(r'width="\d+"', "", body)
    body = re.sub(r"<h1>.*?</h1>", "", body)  # the title
    return re.findall(r"\d+(?:\.\d+)?", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def test_page_shows_exactly_the_numbers_given(tmp_path):
    args = _inputs(tmp_path)
    page = write_ct_report(tmp_path / "r.html", **args).read_text()
    assert "<tr><td>per slice</td><td><b>0.1543</b></td></tr>" in page
    assert "<tr><td>with the study sequence model</td><td><b>0.0988</b></td></tr>" in page
    assert "on 360 slices of 12 studies" in page
    # epidural: slice 0.1001 / n/a, sequence (last of the reversed list) 0.1002 / 0.980
    assert "<tr><td>epidural</td><td>0.1001</td><td>n/a</td><td>0.1002</td><td>0.980</td></tr>" in page
    assert "<tr><td>any</td><td>0.1501</td><td>0.950</td><td>0.0502</td><td>0.930</td></tr>" in page
    given = {"0.1543", "0.0988", "360", "12"}
    for i in range(6):
        given |= {f"{0.1 + 0.01 * i + 0.00011:.4f}", f"{0.05 + 0.01 * i + 0.00021:.4f}",
                  f"{0.93 + 0.01 * i + 0.00022:.3f}"}
        if i:
            given.add(f"{0.9 + 0.01 * i + 0.00012:.3f}")
    static = {"2", "1", "40", "80"}  # weight 2 for any, 1 per subtype, 1D convolution, brain window 40/80
    assert set(_visible_numbers(page)) == given | static | {"0.91", "0", "7"}  # caption, facts (lite0, alert(7))
    assert page.count("data:image/png;base64,") == 4  # 2 ROC + 2 gallery
    assert "synthetic" in page and "second opinion" in page


def test_text_is_escaped_and_sequence_part_drops_out(tmp_path):
    args = _inputs(tmp_path)
    page = write_ct_report(tmp_path / "r.html", **args).read_text()
    assert "<script>alert(7)</script>" not in page and "&lt;script&gt;alert(7)&lt;/script&gt;" in page
    assert "subdural &lt;b&gt;0.91&lt;/b&gt; &amp; left" in page
    args.update(metrics_sequence=None, plots={"roc": args["plots"]["roc"]}, gallery=[])
    page = write_ct_report(tmp_path / "r2.html", **args, synthetic=False).read_text()
    assert "sequence" not in page and "synthetic" not in page
    assert "<tr><td>any</td><td>0.1501</td><td>0.950</td></tr>" in page
    assert page.count("data:image/png;base64,") == 1


def test_missing_keys_are_a_callers_bug(tmp_path):
    args = _inputs(tmp_path)
    with pytest.raises(ValueError, match="plots lacks 'roc'"):
        write_ct_report(tmp_path / "r.html", **{**args, "plots": {}})
    with pytest.raises(ValueError, match=r"metrics_slice.per_label\[0\] lacks auc"):
        write_ct_report(tmp_path / "r.html", **{**args, "metrics_slice": {"weighted_log_loss": 0.1,
                                                                         "per_label": [{"label": "any",
                                                                                        "log_loss": 0.1}]}})
    seq = {"weighted_log_loss": 0.1, "per_label": args["metrics_sequence"]["per_label"][1:]}
    with pytest.raises(ValueError, match="no row for label 'any'"):
        write_ct_report(tmp_path / "r.html", **{**args, "metrics_sequence": seq})
    with pytest.raises(ValueError, match=r"gallery\[0\] lacks caption"):
        write_ct_report(tmp_path / "r.html", **{**args, "gallery": [{"image_png": args["plots"]["roc"]}]})
    assert not (tmp_path / "r.html").exists()
