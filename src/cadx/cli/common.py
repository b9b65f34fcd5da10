"""What every command group shares: value types that reject nonsense, failure listings, JSON output."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (``inf``, ``nan``, ``0`` and ``-1`` are refused).

    Examples
    --------
    >>> positive_float("0.25")
    0.25
    >>> positive_float("inf")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a finite number > 0, got 'inf'
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1].

    Examples
    --------
    >>> fraction("0.5")
    0.5
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


#: argparse types for counts: ``positive_int`` (>= 1) and ``non_negative_int`` (>= 0).
positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def add_mpp_override(parser: argparse.ArgumentParser, *, legacy_mpp: bool = False) -> None:
    """``--mpp-override``: level-0 um/px for files that do not record it.

    ``legacy_mpp`` also accepts the older spelling ``--mpp`` (hidden from help) on commands where
    ``--mpp`` always meant this override, so existing scripts keep working.
    """
    flags = ["--mpp-override", "--mpp"] if legacy_mpp else ["--mpp-override"]
    parser.add_argument(*flags, dest="mpp_override", type=positive_float, metavar="UM_PER_PX",
                        help="level-0 um/px for files that do not record it")


def report_failures(failures: Sequence[tuple[Any, str]]) -> int:
    """List the inputs a batch command skipped on stderr; exit status 1 if any, else 0.

    Each line names the input once: a message that already starts with it (an
    :class:`~cadx.errors.InputFileError` about the input itself) is not prefixed again.

    Examples
    --------
    >>> import contextlib, io
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     report_failures([("a.jpg", "a.jpg: is empty"), ("b.tif", "b.xml: bad vertex")])
    1
    >>> print(err.getvalue(), end="")
    2 failed:
      a.jpg: is empty
      b.tif: b.xml: bad vertex
    """
    if not failures:
        return 0
    print(f"{len(failures)} failed:", file=sys.stderr)
    for item, why in failures:
        name = str(item)
        print(f"  {why}" if why.startswith(f"{name}: ") else f"  {name}: {why}", file=sys.stderr)
    return 1


def print_json(data: Any) -> None:
    """Machine-readable output for ``--json`` (paths as strings)."""
    print(json.dumps(data, indent=2, default=lambda o: str(o) if isinstance(o, Path) else repr(o)))
