"""HTML reports: autoescaped templates that print only the numbers they are given."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cadx.report.html import render_html, write_html


def _metrics() -> dict:
    return {"slide_auc": 0.8125, "slide_auc_ci95": [0.5, 1.0], "slide_threshold": 0.5, "slide_sensitivity": 0.75,
            "slide_specificity": 0.5, "froc": 0.4321, "froc_sensitivities": {"0.25": 0.1, "8": 0.9},
            "tumor_slides": 4, "normal_slides": 4, "lesions": 7}


def test_camelyon_report_shows_given_numbers_and_escapes(tmp_path):
    png = tmp_path / "p.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png)
    per_slide = [{"slide": "<script>alert(1)</script>", "label": "Tumor", "score": 0.91234}]
    out = write_html(tmp_path / "r.html", "camelyon16.html.j2", title="t", legend="L", score_name="max",
                     metrics=_metrics(), per_slide=per_slide, overlays={"a & b": png}, plots={"roc": png},
                     facts={"seed": 1})
    page = out.read_text()
    assert "0.812 (95% bootstrap CI 0.500-1.000)" in page
    assert "FROC</th><td>0.432" in page
    assert "0.912" in page and "tile AUC" not in page  # no tile metrics given -> no tile row
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "a &amp; b" in page and page.count("data:image/png;base64,") == 2


def test_index_lists_tasks_with_links_and_failures():
    tasks = [{"title": "CAMELYON16", "headline": {"slide AUC": 0.9}, "seconds": 120.0,
              "report": "camelyon16/report.html", "error": None},
             {"title": "ISIC", "headline": {}, "seconds": 6.0, "report": None, "error": "boom"}]
    page = render_html("index.html.j2", title="cadx demo", tasks=tasks, facts={}, seconds=126.0)
    assert 'href="camelyon16/report.html"' in page and "slide AUC 0.900" in page
    assert "failed: boom" in page and "2.0 min" in page and "Total 2.1 min" in page
