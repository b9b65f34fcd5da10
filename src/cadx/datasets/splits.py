"""Train/validation splits that keep every group (a lesion, a patient, a slide) on one side.

Images of one lesion look alike (the same lesion photographed twice, a close-up and an overview):
an image split would put near-copies on both sides and overstate validation scores. The split is
therefore by group, stratified by class so that each side keeps the class proportions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)


def grouped_stratified_split(
    labels: Sequence[int] | np.ndarray,
    groups: Sequence[str] | np.ndarray,
    *,
    val_fraction: float,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split items into train and validation by group, stratified by class.

    Each group goes wholly to one side, and is stratified by its most frequent label (ties: the
    smallest). Per class, groups are shuffled (seeded) and added to validation while they fit under
    ``round(val_fraction * n_c)`` images (``n_c``: the class's images), then the smallest remaining
    group is added if that brings the count closer to the target. With groups of one or two images
    the validation count of each class is within one image of ``val_fraction * n_c``. A class with
    two or more groups keeps at least one group on each side; a class with one group stays in
    training.

    Parameters
    ----------
    labels : sequence of int, length N
        Class index per item.
    groups : sequence of str, length N
        Group per item (e.g. ``lesion_id``); items with equal values are kept together.
    val_fraction : float
        Target fraction of each class's items in validation, in (0, 1).
    seed : int
        The same seed, labels and groups give the same split.

    Returns
    -------
    train, val : ndarray of int64
        Sorted item indices; disjoint, together all of ``range(N)``.

    Raises
    ------
    ValueError
        ``labels`` and ``groups`` differ in length, or ``val_fraction`` is outside (0, 1).

    Examples
    --------
    >>> labels = [0, 0, 0, 0, 1, 1, 1, 1]
    >>> groups = ["a", "a", "b", "c", "d", "e", "f", "g"]
    >>> train, val = grouped_stratified_split(labels, groups, val_fraction=0.25, seed=0)
    >>> len(val), sorted({groups[i] for i in val} & {groups[i] for i in train})
    (2, [])
    """
    y = np.asarray(labels, np.int64)
    g = np.asarray([str(v) for v in groups])
    if len(y) != len(g):
        raise ValueError(f"labels ({len(y)}) and groups ({len(g)}) differ in length")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    names, inverse = np.unique(g, return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(names))
    group_label = np.array([_majority(y[inverse == i]) for i in range(len(names))], np.int64)
    rng = np.random.default_rng(seed)
    in_val = np.zeros(len(names), bool)
    for c in np.unique(group_label):
        members = np.flatnonzero(group_label == c)
        if len(members) < 2:
            log.warning("class %d has a single group (%s): it stays in training", c, names[members[0]])
            continue
        members = members[rng.permutation(len(members))]
        target = val_fraction * sizes[members].sum()
        chosen = _fill(members, sizes, target)
        in_val[chosen] = True
    is_val = in_val[inverse]
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _fill(members: np.ndarray, sizes: np.ndarray, target: float) -> np.ndarray:
    """Groups (in the given order) whose total size is closest to ``target``; never all, never none."""
    goal = max(1, round(target))
    chosen, total = [], 0
    for m in members[:-1]:  # the last group is never taken first: one group always stays in training
        if total + sizes[m] <= goal:
            chosen.append(m)
            total += sizes[m]
    taken = set(chosen)
    rest = [m for m in members if m not in taken]
    if len(rest) > 1:
        smallest = min(rest, key=lambda m: sizes[m])
        if abs(total + sizes[smallest] - target) < abs(total - target) or not chosen:
            chosen.append(smallest)
    return np.asarray(chosen, np.int64)


def _majority(values: np.ndarray) -> int:
    counts = np.bincount(values)
    return int(np.argmax(counts))
