"""The ``cadx`` command line: the parser and the error rule; each command group lives in its own module.

User errors (:class:`~cadx.errors.CadxError`) print one line, ``cadx: error: <file>: <problem>``,
and exit with status 2; a batch command that skipped bad items exits with 1; anything else is a
bug and keeps its traceback. SIGTERM unwinds like Ctrl-C, so temporary ``*.part`` files are removed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from cadx import __version__
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
        print(f"cadx: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cadx: interrupted", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
