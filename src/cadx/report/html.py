"""HTML reports from Jinja2 templates (autoescaped), images embedded so a report is one file.

Each task has one template in ``templates/`` extending ``base.html.j2``; the demo index links every
task's report. Nothing is computed here: callers pass the numbers, and the templates print only them.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cadx.io.atomic import atomic_path

_TEMPLATES = Path(__file__).parent / "templates"


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["png"] = embed_png
    env.filters["num"] = format_number
    return env


def format_number(value: Any, digits: int = 3) -> str:
    """A table cell: floats with ``digits`` decimals, everything else as ``str``.

    Examples
    --------
    >>> format_number(0.98765), format_number(3), format_number("tumor"), format_number(float("nan"))
    ('0.988', '3', 'tumor', 'n/a')
    """
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.{digits}f}"
    return str(value)


def embed_png(path: str | Path, width: int | None = None) -> Any:
    """An ``<img>`` tag with the PNG file inlined as a data URI (safe markup)."""
    import markupsafe

    path = Path(path)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    size = f' width="{int(width)}"' if width else ""
    return markupsafe.Markup(f'<img src="data:image/png;base64,{data}"{size} alt="{html.escape(path.name)}">')


def render_html(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context`` (every value autoescaped).

    Examples
    --------
    >>> page = render_html("index.html.j2", title="<demo>", tasks=[], facts={}, seconds=1.0)
    >>> "&lt;demo&gt;" in page and "<demo>" not in page
    True
    """
    return _environment().get_template(template).render(**context)


def write_html(path: str | Path, template: str, **context: Any) -> Path:
    """Render ``template`` and write it to ``path`` atomically; returns ``path``."""
    page = render_html(template, **context)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(path)


def require_keys(items: Sequence[Mapping[str, Any]], keys: set[str], what: str) -> list[dict[str, Any]]:
    """Copies of ``items`` as dicts; a ``ValueError`` (a caller's bug) names an item lacking one of ``keys``.

    Examples
    --------
    >>> require_keys([{"a": 1, "b": 2}], {"a"}, "rows")
    [{'a': 1, 'b': 2}]
    >>> require_keys([{"b": 2}], {"a"}, "rows")
    Traceback (most recent call last):
    ...
    ValueError: rows[0] lacks a
    """
    out = []
    for i, item in enumerate(items):
        missing = keys - set(item)
        if missing:
            raise ValueError(f"{what}[{i}] lacks {', '.join(sorted(missing))}")
        out.append(dict(item))
    return out
