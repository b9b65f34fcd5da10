"""Run task demos into one folder and write ``index.html`` linking each task's report.

A failing task is recorded on the index with its error and the others still run; the index is
written after every task, so an interrupted ``cadx demo all`` still leaves a page to open.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cadx import __version__
from cadx.errors import CadxError
from cadx.io.atomic import atomic_path
from cadx.report.html import write_html
from cadx.tasks import TASKS

log = logging.getLogger(__name__)


def run_demos(out_dir: str | Path, task: str = "all", *, options: Mapping[str, dict[str, Any]] | None = None
              ) -> dict[str, Any]:
    """Run one task's demo (into ``out_dir``) or every task's (into ``out_dir/<task>``, plus an index).

    Parameters
    ----------
    out_dir : path
        Output folder.
    task : str
        A name from :data:`cadx.tasks.TASKS`, or ``"all"``.
    options : mapping, optional
        Per task, keyword arguments for its ``run_demo``.

    Returns
    -------
    dict
        ``{"tasks": [...], "failed": [names], "index": path or None}``.
    """
    out = Path(out_dir)
    options = options or {}
    if task != "all":
        if task not in TASKS:
            raise CadxError(f"unknown task {task!r}; choose from {', '.join(['all', *TASKS])}")
        summary = _module(task).run_demo(out, **options.get(task, {}))
        return {"tasks": [summary], "failed": [], "index": None}

    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for name, (title, _) in TASKS.items():
        t = time.perf_counter()
        row: dict[str, Any] = {"name": name, "title": title, "headline": {}, "report": None, "error": None}
        try:
            summary = _module(name).run_demo(out / name, **options.get(name, {}))
            row["headline"] = dict(summary.get("headline", {}))
            if summary.get("report"):
                row["report"] = Path(os.path.relpath(summary["report"], out)).as_posix()
        except CadxError as exc:  # a user-facing failure of one task: record it, run the others
            row["error"] = str(exc)
            failed.append(name)
            log.error("demo %s failed: %s", name, exc)
        row["seconds"] = time.perf_counter() - t
        rows.append(row)
        _write_index(out, rows, time.perf_counter() - t0)
    print(f"\ncadx demo all: {len(rows) - len(failed)} of {len(rows)} tasks done in "
          f"{(time.perf_counter() - t0) / 60:.1f} min; open {out / 'index.html'}")
    return {"tasks": rows, "failed": failed, "index": str(out / "index.html")}


def _module(name: str) -> Any:
    return importlib.import_module(TASKS[name][1])


def _write_index(out: Path, rows: list[dict[str, Any]], seconds: float) -> None:
    machine = ", ".join(x for x in (platform.machine(), f"{os.cpu_count()} CPUs", platform.processor()) if x)
    facts = {"cadx": __version__, "machine": machine,
             "command": "cadx demo all"}
    write_html(out / "index.html", "index.html.j2", title="cadx demo: every task on synthetic data", tasks=rows,
               facts=facts, seconds=seconds)
    with atomic_path(out / "index.json") as tmp:
        tmp.write_text(json.dumps({"tasks": rows, "seconds": seconds}, indent=2, default=str))
