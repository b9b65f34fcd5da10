"""The bounded look-ahead used by the TIFF writer and slide inference."""

from __future__ import annotations

import threading
import time

from cadx.parallel.prefetch import prefetch_map


def test_order_kept_and_look_ahead_bounded():
    started, lock, seen_max = [], threading.Lock(), [0]
    consumed = [0]

    def work(x: int) -> int:
        with lock:
            started.append(x)
            seen_max[0] = max(seen_max[0], len(started) - consumed[0])
        return x * 10

    out = []
    for item, result in prefetch_map(work, range(20), workers=2, ahead=3):
        if item == 0:  # hold the first result: the look-ahead must fill up meanwhile
            deadline = time.monotonic() + 10
            while len(started) < 3 + 1 and time.monotonic() < deadline:
                time.sleep(0.005)
        out.append((item, result))
        consumed[0] += 1
    assert out == [(i, i * 10) for i in range(20)]
    # At most `ahead` in flight plus the one just handed over, and that many really ran ahead.
    assert seen_max[0] == 3 + 1
    assert list(prefetch_map(work, [], workers=2, ahead=3)) == []


def test_closing_early_cancels_what_has_not_started_and_waits_for_what_runs():
    import contextlib
    import threading
    import time

    started, finished = [], []
    lock = threading.Lock()

    def slow(x):
        with lock:
            started.append(x)
        time.sleep(0.05)
        with lock:
            finished.append(x)
        return x

    with contextlib.closing(prefetch_map(slow, range(100), workers=2, ahead=4)) as results:
        for item, _ in results:
            if item == 1:
                break
    # after close(): nothing still running, and only the look-ahead window was ever started
    assert sorted(started) == sorted(finished)
    assert len(started) <= 2 + 4 + 2
