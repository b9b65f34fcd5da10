"""Overlapping patch outputs blended into one map, whole or streamed in horizontal bands.

A patch's output is weighted by a smooth window (1 in the middle, a raised-cosine ramp over the
overlap) and the map is ``sum(weight * value) / sum(weight)``. The ramps of two neighbours that
overlap by the window's overlap add up to exactly 1, so there is no seam at tile borders, and a
map cut into overlapping patches and blended back is reproduced exactly.

With a ``sink``, :class:`Stitcher` holds only the rows that a later patch can still touch: rows
above the top of the newest patch are final and handed to the sink, so a map of a 100k x 100k px
slide is never held whole (patches must come in non-decreasing row order, as tiles of a
row-major grid do).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

#: ``sink(row0, rows)``: final rows ``row0 .. row0 + len(rows) - 1`` of the map, float32 (n, W).
SinkFn = Callable[[int, np.ndarray], None]

#: At most this many uncovered rows are handed to a sink in one block.
_GAP_BLOCK_ROWS = 256


def blend_window(size_px: int, overlap_px: int) -> np.ndarray:
    """Separable weights for a square patch: 1 inside, a raised-cosine ramp over ``overlap_px`` at each edge.

    The ramp is ``sin(pi / 2 * (i + 0.5) / overlap_px) ** 2`` for ``i = 0 .. overlap_px - 1``:
    never 0 (a patch alone still counts at its border) and, mirrored, it adds up to 1 with the ramp
    of a neighbour that overlaps by ``overlap_px``.

    Parameters
    ----------
    size_px : int
        Patch side.
    overlap_px : int
        Overlap between neighbouring patches, ``0 <= overlap_px <= size_px // 2`` (0: all ones).

    Returns
    -------
    ndarray of float32, shape (size_px, size_px)

    Examples
    --------
    >>> w = blend_window(8, 2)
    >>> [round(float(v), 3) for v in w[4]]
    [0.146, 0.854, 1.0, 1.0, 1.0, 1.0, 0.854, 0.146]
    >>> round(float(w[4, 6] + w[4, 0]), 6), round(float(w[4, 7] + w[4, 1]), 6)  # neighbours 6 px apart
    (1.0, 1.0)
    """
    if size_px < 1 or not 0 <= overlap_px <= size_px // 2:
        raise ValueError(f"need size >= 1 and 0 <= overlap <= size // 2, got size {size_px}, overlap {overlap_px}")
    w = np.ones(size_px, np.float64)
    if overlap_px:
        ramp = np.sin(np.pi / 2 * (np.arange(overlap_px) + 0.5) / overlap_px) ** 2
        w[:overlap_px] = ramp
        w[size_px - overlap_px:] = ramp[::-1]
    return np.outer(w, w).astype(np.float32)


class Stitcher:
    """Accumulate weighted patches into a ``(H, W)`` map; whole (:meth:`result`) or streamed to a sink.

    Parameters
    ----------
    shape_hw : (int, int)
        Map shape. Patches may reach past its edges: what lies outside is dropped.
    fill : float
        Value where no patch landed (NaN by default).
    sink : callable, optional
        ``sink(row0, rows)`` receives final rows in order, as soon as a patch starting lower
        arrives, and the rest at :meth:`close`. Patches must then come in non-decreasing order
        of their top row; memory holds only the rows from the current patch row to the lowest
        patch bottom.

    Examples
    --------
    Two 4-px patches overlapping by 2 px, blended with :func:`blend_window`:

    >>> st = Stitcher((4, 6))
    >>> w = blend_window(4, 2)
    >>> st.add(np.full((4, 4), 1.0), (0, 0), w)
    >>> st.add(np.full((4, 4), 3.0), (0, 2), w)
    >>> [round(float(v), 3) for v in st.result()[0]]
    [1.0, 1.0, 1.293, 2.707, 3.0, 3.0]

    Streaming: rows above a new patch's top are final and go to the sink.

    >>> bands = []
    >>> st = Stitcher((6, 2), fill=0.0, sink=lambda r0, rows: bands.append((r0, rows.tolist())))
    >>> st.add(np.ones((2, 2)), (0, 0))
    >>> st.add(np.full((2, 2), 2.0), (3, 0))
    >>> st.close()
    >>> bands
    [(0, [[1.0, 1.0], [1.0, 1.0]]), (2, [[0.0, 0.0]]), (3, [[2.0, 2.0], [2.0, 2.0]]), (5, [[0.0, 0.0]])]
    """

    def __init__(self, shape_hw: Sequence[int], *, fill: float = np.nan, sink: SinkFn | None = None) -> None:
        h, w = (int(v) for v in shape_hw)
        if h < 0 or w < 0:
            raise ValueError(f"shape must be non-negative, got {shape_hw}")
        self.shape_hw = (h, w)
        self.fill = float(fill)
        self.sink = sink
        self._row0 = 0  # first row held (rows above went to the sink)
        rows = 0 if sink is not None else h
        self._sum = np.zeros((rows, w), np.float32)
        self._weight = np.zeros((rows, w), np.float32)
        self._closed = False

    @property
    def next_row(self) -> int:
        """First row not yet handed to the sink (0 without a sink)."""
        return self._row0

    def add(self, patch: np.ndarray, top_left_rc: Sequence[int], weights: np.ndarray | None = None) -> None:
        """Add ``weights * patch`` at ``top_left_rc`` (map rows/cols; may be negative or reach past the map).

        Parameters
        ----------
        patch : ndarray, shape (h, w)
        top_left_rc : (int, int)
        weights : ndarray, shape (h, w), optional
            Default: all ones (plain averaging). Use :func:`blend_window` for seamless blending.
        """
        if self._closed:
            raise ValueError("the stitcher is closed")
        patch = np.asarray(patch, np.float32)
        if patch.ndim != 2:
            raise ValueError(f"expected a 2-D patch, got shape {patch.shape}")
        wts = np.ones_like(patch) if weights is None else np.asarray(weights, np.float32)
        if wts.shape != patch.shape:
            raise ValueError(f"weights {wts.shape} and patch {patch.shape} differ in shape")
        r0, c0 = (int(v) for v in top_left_rc)
        h, w = self.shape_hw
        if self.sink is not None:
            if r0 < self._row0:
                raise ValueError(f"patch at row {r0} starts above row {self._row0}, already handed to the sink: "
                                 "add patches in non-decreasing row order")
            self._emit_until(min(r0, h))
        # Clip to the map.
        pr0, pc0 = max(0, -r0), max(0, -c0)
        pr1, pc1 = min(patch.shape[0], h - r0), min(patch.shape[1], w - c0)
        if pr1 <= pr0 or pc1 <= pc0:
            return
        top, bottom = r0 + pr0 - self._row0, r0 + pr1 - self._row0
        if bottom > self._sum.shape[0]:
            self._grow(bottom)
        cols = slice(c0 + pc0, c0 + pc1)
        sub_w = wts[pr0:pr1, pc0:pc1]
        self._sum[top:bottom, cols] += sub_w * patch[pr0:pr1, pc0:pc1]
        self._weight[top:bottom, cols] += sub_w

    def result(self) -> np.ndarray:
        """The blended map, float32 ``shape_hw``: weighted mean where covered, ``fill`` elsewhere."""
        if self.sink is not None:
            raise ValueError("a stitcher with a sink hands its rows to the sink: call close()")
        return self._finish(self._sum, self._weight)

    def close(self) -> None:
        """Hand every remaining row to the sink (streaming mode)."""
        if self.sink is None:
            raise ValueError("close() is for a stitcher with a sink; use result()")
        if not self._closed:
            self._emit_until(self.shape_hw[0])
            self._closed = True

    def _finish(self, total: np.ndarray, weight: np.ndarray) -> np.ndarray:
        out = np.full(total.shape, self.fill, np.float32)
        np.divide(total, weight, out=out, where=weight > 0)
        return out

    def _grow(self, rows: int) -> None:
        extra = rows - self._sum.shape[0]
        pad = np.zeros((extra, self.shape_hw[1]), np.float32)
        self._sum = np.concatenate([self._sum, pad])
        self._weight = np.concatenate([self._weight, pad])

    def _emit_until(self, row: int) -> None:
        """Hand rows ``[next_row, row)`` to the sink."""
        assert self.sink is not None
        if row <= self._row0:
            return
        held = min(row - self._row0, self._sum.shape[0])
        if held:
            self.sink(self._row0, self._finish(self._sum[:held], self._weight[:held]))
            self._sum, self._weight = self._sum[held:].copy(), self._weight[held:].copy()
            self._row0 += held
        while self._row0 < row:  # rows no patch touched
            n = min(_GAP_BLOCK_ROWS, row - self._row0)
            self.sink(self._row0, np.full((n, self.shape_hw[1]), self.fill, np.float32))
            self._row0 += n
