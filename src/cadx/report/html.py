"""A self-contained HTML report of a CAMELYON-style run (images embedded, no external files)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cadx.io.atomic import atomic_path


def _img(path: Path, width: int | None = None) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    w = f' width="{width}"' if width else ""
    return f'<img src="data:image/png;base64,{data}"{w} alt="{html.escape(Path(path).name)}">'


def write_report(path: str | Path, *, title: str, metrics: dict[str, Any], per_slide: Sequence[dict[str, Any]],
                 overlays: dict[str, Path], plots: dict[str, Path], facts: dict[str, Any]) -> Path:
    """Write the report: headline metrics, ROC and FROC, per-slide table, heatmaps beside truth."""
    esc = html.escape
    fr = metrics.get("froc_sensitivities", {})
    head = (
        f"<tr><th>slide AUC</th><td>{metrics['slide_auc']:.3f} (95% CI {metrics['slide_auc_ci95'][0]:.3f}-"
        f"{metrics['slide_auc_ci95'][1]:.3f})</td></tr>"
        f"<tr><th>slide sensitivity / specificity at {metrics['slide_threshold']}</th>"
        f"<td>{metrics['slide_sensitivity']:.2f} / {metrics['slide_specificity']:.2f}</td></tr>"
        f"<tr><th>lesion FROC</th><td>{metrics['froc']:.3f} "
        f"(sensitivity at {', '.join(f'{k} FP: {v:.2f}' for k, v in fr.items())})</td></tr>"
    )
    if "tile_auc" in metrics:
        head += (f"<tr><th>tile AUC / sensitivity / specificity</th><td>{metrics['tile_auc']:.3f} / "
                 f"{metrics['tile_sensitivity']:.2f} / {metrics['tile_specificity']:.2f} ({metrics['tiles']} tiles)</td></tr>")
    head += f"<tr><th>slides</th><td>{metrics['tumor_slides']} tumour, {metrics['normal_slides']} normal; {metrics['lesions']} scorable lesions</td></tr>"
    cols = list(per_slide[0]) if per_slide else []
    table = "<tr>" + "".join(f"<th>{esc(c)}</th>" for c in cols) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{esc(f'{r[c]:.3f}' if isinstance(r[c], float) else str(r[c]))}</td>" for c in cols) + "</tr>"
        for r in per_slide)
    cards = "".join(f'<figure>{_img(p, 300)}<figcaption>{esc(n)}</figcaption></figure>' for n, p in overlays.items())
    fact_rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in facts.items())
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1300px;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}}
figure{{display:inline-block;margin:6px;text-align:center}}figcaption{{font-size:13px}}
.note{{background:#fff7e0;border-left:4px solid #e0a800;padding:8px 12px}}</style></head><body>
<h1>{esc(title)}</h1>
<p class="note">A second opinion from a patch classifier, not a diagnosis. Heatmaps show where the model sees
tumour (red high, blue low, nothing outside tissue); black lines are the ground-truth lesion outlines.
These are <b>synthetic</b> slides with known ground truth: the figures check the pipeline, not accuracy on real slides.</p>
<h2>Results</h2><table>{head}</table>
{''.join(_img(p, 420) for p in plots.values())}
<h2>Per slide</h2><table>{table}</table>
<h2>Heatmaps with ground truth</h2>{cards}
<h2>How this was made</h2><table>{fact_rows}</table>
</body></html>"""
    with atomic_path(path) as tmp:
        tmp.write_text(page)
    return Path(path)
