"""The cohort loop: skipping, failures collected per item, bugs propagate, backends agree."""

from __future__ import annotations

import os

import pytest

from cadx.errors import CadxError, InputFileError
from cadx.parallel.jobs import JobEvent, map_jobs


def square_or_fail(x: int) -> tuple[int, int]:
    """Module level, so the process backend can pickle it."""
    if x % 3 == 0:
        raise InputFileError(f"slide_{x}.tif", "not a slide")
    return x * x, os.getpid()


def buggy(x: int) -> int:
    if x == 2:
        raise ZeroDivisionError("a bug, not a user error")
    return x


def test_skip_done_failures_collected_and_the_rest_go_on():
    events: list[JobEvent] = []
    r = map_jobs(square_or_fail, [1, 2, 3, 4, 5, 6], skip_done=lambda x: x == 4, progress=events.append)
    assert [(i, res[0]) for i, res in r.done] == [(1, 1), (2, 4), (5, 25)]
    assert r.failures == [(3, "slide_3.tif: not a slide"), (6, "slide_6.tif: not a slide")]
    assert r.skipped == [4]
    assert [(e.item, e.status) for e in events] == [(4, "skipped"), (1, "done"), (2, "done"), (3, "failed"),
                                                    (5, "done"), (6, "failed")]
    assert [e.finished for e in events] == [1, 2, 3, 4, 5, 6] and {e.total for e in events} == {6}
    assert events[3].message == "slide_3.tif: not a slide"


def test_a_bug_stops_the_run_with_its_own_exception():
    seen = []
    with pytest.raises(ZeroDivisionError, match="a bug"):
        map_jobs(buggy, [1, 2, 3], progress=lambda e: seen.append(e.item))
    assert seen == [1]  # item 3 never ran


def test_process_backend_gives_the_serial_results():
    items = list(range(1, 8))
    serial = map_jobs(square_or_fail, items)
    events: list[JobEvent] = []
    par = map_jobs(square_or_fail, items, backend="process", workers=2, progress=events.append)
    assert [(i, res[0]) for i, res in par.done] == [(i, res[0]) for i, res in serial.done]
    assert par.failures == serial.failures and par.skipped == serial.skipped == []
    assert os.getpid() not in {pid for _, (_, pid) in par.done}  # it really ran elsewhere, every item
    assert sorted(e.item for e in events) == items


def test_process_backend_propagates_a_bug():
    with pytest.raises(ZeroDivisionError):
        map_jobs(buggy, [1, 2, 3], backend="process", workers=2)


def test_unknown_backend_is_a_programming_error():
    with pytest.raises(ValueError, match="backend"):
        map_jobs(buggy, [1], backend="ray")
    assert not issubclass(ValueError, CadxError)
