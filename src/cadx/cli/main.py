"""The ``cadx`` command line: the parser and the error rule; each command group lives in its own module.

User errors (:class:`~cadx.errors.CadxError`) print one line, ``cadx: error: <file>: <problem>``,
and exit with status 2; a batch command that skipped bad items exits with 1; anything else is a
bug and keeps its traceback. SIGTERM unwinds like Ctrl-C, so temporary ``*.part`` files are removed.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from collections.abc import Sequence

from cadx import __version__, errors
from cadx.cli import annotations, demo, evaluate, explain, features, predict, slide, slide_classifier, synth, train
from cadx.errors import CadxError
from cadx.io.atomic import exit_on_sigterm

log = logging.getLogger("cadx")

#: Command groups, in the order ``cadx --help`` lists them.
GROUPS = (slide, synth, annotations, features, train, predict, explain, slide_classifier, evaluate, demo)


def build_parser() -> argparse.ArgumentParser:
    """The full ``cadx`` argument parser."""
    p = argparse.ArgumentParser(
        prog="cadx",
        description="Computer-aided detection on medical images: a second opinion with its evidence.",
    )
    p.add_argument("--version", action="version", version=f"cadx {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_parser(sub)
    return p


_WORKER = re.compile(r"^Caught (\w+) in DataLoader worker process \d+\.")


def worker_error_line(exc: BaseException) -> str | None:
    """The one-line message of a cadx error raised in a PyTorch DataLoader worker, else None.

    PyTorch re-raises a worker's exception in the main process with the worker's traceback in its
    message (as a ``RuntimeError`` when the original class cannot be rebuilt from one string); the
    last line of that traceback is the original ``cadx.errors.<Class>: <message>``.

    Examples
    --------
    >>> msg = ("Caught InputFileError in DataLoader worker process 0.\\nOriginal Traceback (most recent call last):"
    ...        "\\n  File ...\\ncadx.errors.InputFileError: /data/ID_1.dcm: corrupt pixel data\\n")
    >>> worker_error_line(RuntimeError(msg))
    '/data/ID_1.dcm: corrupt pixel data'
    >>> worker_error_line(RuntimeError("Caught ValueError in DataLoader worker process 0.\\n...")) is None
    True
    """
    msg = str(exc)
    m = _WORKER.match(msg)
    cls = getattr(errors, m.group(1), None) if m else None
    if not (isinstance(cls, type) and issubclass(cls, errors.CadxError)):
        return None
    last = [line for line in msg.splitlines() if line.strip()][-1]
    prefix = f"cadx.errors.{m.group(1)}: "
    return last[len(prefix):] if last.startswith(prefix) else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cadx`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = exit_on_sigterm() if in_main_thread else None  # temporary files are removed on kill
    try:
        return int(args.func(args))
    except CadxError as exc:
        print(f"cadx: error: {worker_error_line(exc) or exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a cadx error inside a DataLoader worker (num_workers > 0)
        line = worker_error_line(exc)
        if line is None:
            raise
        print(f"cadx: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cadx: interrupted", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
