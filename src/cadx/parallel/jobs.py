"""The cohort loop: run one function over many items, skip what is done, collect user errors.

Every per-slide stage (tiling, prediction, later features and attention maps) is ``fn(item)``
over a list of slides. :func:`map_jobs` owns the loop once: items already done are skipped, a
:class:`~cadx.errors.CadxError` raised for one item is recorded and the others go on, and any other
exception is a bug that stops the run with its traceback. Backends: ``"serial"`` (in this process)
and ``"process"`` (a :class:`concurrent.futures.ProcessPoolExecutor` with the ``spawn`` start
method); Ray can become a third backend without changing callers.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from cadx.errors import CadxError

log = logging.getLogger(__name__)

#: Backends :func:`map_jobs` accepts.
BACKENDS = ("serial", "process")


@dataclass(frozen=True)
class JobEvent:
    """One finished item, as reported to a ``progress`` callback.

    Attributes
    ----------
    item : object
        The item.
    status : str
        ``"done"``, ``"failed"`` (a user error, see ``message``) or ``"skipped"``.
    finished : int
        Items finished so far, this one included (skipped ones count).
    total : int
        Number of items.
    message : str
        The error message of a failed item, else ``""``.
    """

    item: Any
    status: str
    finished: int
    total: int
    message: str = ""


@dataclass
class JobReport:
    """What :func:`map_jobs` did, in input order.

    Attributes
    ----------
    done : list of (item, result)
        Items that ran, with what ``fn`` returned.
    failures : list of (item, str)
        Items whose ``fn`` raised a :class:`~cadx.errors.CadxError`, with its message.
    skipped : list
        Items ``skip_done`` said were already done.
    """

    done: list[tuple[Any, Any]] = field(default_factory=list)
    failures: list[tuple[Any, str]] = field(default_factory=list)
    skipped: list[Any] = field(default_factory=list)

    @property
    def results(self) -> list[Any]:
        """The results of the items that ran, in input order."""
        return [r for _, r in self.done]


def map_jobs(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    backend: str = "serial",
    skip_done: Callable[[Any], bool] | None = None,
    progress: Callable[[JobEvent], None] | None = None,
    workers: int | None = None,
) -> JobReport:
    """Run ``fn(item)`` for each item; skip done items, collect user errors, keep going.

    Parameters
    ----------
    fn : callable
        ``fn(item) -> result``. For the ``"process"`` backend it must be picklable (a module-level
        function, or a :func:`functools.partial` of one with picklable arguments) and so must
        its items and results.
    items : iterable
        Work items (slide paths, typically).
    backend : {"serial", "process"}
        ``"serial"`` runs in this process, in order. ``"process"`` runs in a pool of ``workers``
        processes started with ``spawn`` (safe next to threads, same on every platform).
    skip_done : callable, optional
        ``skip_done(item) -> bool``, evaluated in this process before any work; True skips the
        item (e.g. its output file exists).
    progress : callable, optional
        Called in this process with a :class:`JobEvent` after each item finishes.
    workers : int, optional
        Process count for the ``"process"`` backend (default: the executor's, the CPU count).

    Returns
    -------
    JobReport
        ``done``, ``failures`` and ``skipped``, each in input order.

    Raises
    ------
    Exception
        Whatever ``fn`` raised that is not a :class:`~cadx.errors.CadxError`: a bug stops the run
        (pending process jobs are cancelled).

    Examples
    --------
    >>> from cadx.errors import CadxError
    >>> def invert(x):
    ...     if x == 0:
    ...         raise CadxError("cannot invert 0")
    ...     return 1 / x
    >>> r = map_jobs(invert, [1, 0, 4, 2], skip_done=lambda x: x == 2)
    >>> r.done, r.failures, r.skipped
    ([(1, 1.0), (4, 0.25)], [(0, 'cannot invert 0')], [2])
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    items = list(items)
    total = len(items)
    finished = 0
    outcomes: dict[int, tuple[str, Any]] = {}

    def record(index: int, status: str, value: Any) -> None:
        nonlocal finished
        finished += 1
        outcomes[index] = (status, value)
        if status == "failed":
            log.warning("skipped %s: %s", items[index], value)
        if progress is not None:
            progress(JobEvent(items[index], status, finished, total, value if status == "failed" else ""))

    todo = []
    for i, item in enumerate(items):
        if skip_done is not None and skip_done(item):
            record(i, "skipped", None)
        else:
            todo.append(i)

    if backend == "serial":
        for i in todo:
            record(i, *_run_one(fn, items[i]))
    elif todo:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(_run_one, fn, items[i]): i for i in todo}
            pending = set(futures)
            while pending:
                finished_now, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in finished_now:
                    if fut.exception() is not None:
                        for other in pending:
                            other.cancel()
                        raise fut.exception()
                    record(futures[fut], *fut.result())

    report = JobReport()
    for i, item in enumerate(items):
        status, value = outcomes[i]
        if status == "done":
            report.done.append((item, value))
        elif status == "failed":
            report.failures.append((item, value))
        else:
            report.skipped.append(item)
    return report


def _run_one(fn: Callable[[Any], Any], item: Any) -> tuple[str, Any]:
    """Run one item; a user error becomes ``("failed", message)`` (module level: picklable).

    The message travels instead of the exception: CadxError subclasses with extra constructor
    arguments do not survive pickling between processes.
    """
    try:
        return "done", fn(item)
    except CadxError as exc:
        return "failed", str(exc)
