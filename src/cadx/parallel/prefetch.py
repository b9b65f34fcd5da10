"""Ordered, bounded look-ahead over a thread pool: the reading/rendering side of a pipeline.

``ThreadPoolExecutor.map`` submits every item at once; this keeps at most ``ahead`` results in
flight, so memory stays bounded while work overlaps the consumer.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_END = object()  # private sentinel: items may legitimately be None


def prefetch_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int, ahead: int) -> Iterator[tuple[T, R]]:
    """Yield ``(item, fn(item))`` in input order, computing up to ``ahead`` items in advance.

    A consumer that may stop early (an error, an interrupt) must close the generator before it
    frees what ``fn`` uses, e.g. ``with contextlib.closing(prefetch_map(...)) as results:``:
    closing cancels the items not started and waits for those running, so no worker thread is
    still reading a slide when the slide is closed.

    Examples
    --------
    >>> [r for _, r in prefetch_map(lambda x: x * x, range(5), workers=2, ahead=2)]
    [0, 1, 4, 9, 16]
    """
    pool = cf.ThreadPoolExecutor(max_workers=max(1, workers))
    pending: deque[tuple[T, cf.Future[R]]] = deque()
    try:
        it = iter(items)
        for item in it:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= max(1, ahead):
                break
        while pending:
            item, fut = pending.popleft()
            result = fut.result()
            nxt = next(it, _END)
            if nxt is not _END:
                pending.append((nxt, pool.submit(fn, nxt)))
            yield item, result
    finally:  # also on close() or an error: drop what has not started, wait for what runs
        pool.shutdown(wait=True, cancel_futures=True)
