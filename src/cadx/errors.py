"""Errors that cadx reports to its users.

Every error raised for bad *input* (a missing file, a file that is not a slide, hostile XML, ...)
derives from :class:`CadxError`. The command line prints these as one line and exits non-zero,
without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class CadxError(Exception):
    """Base class for user-facing errors: the message says what is wrong and how to fix it."""


class InputFileError(CadxError):
    """A file given by the user is missing, unreadable or of the wrong kind.

    Parameters
    ----------
    path : str or Path
        The offending file; it is named first in the message.
    problem : str
        What is wrong with it.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class SlideError(InputFileError):
    """A slide cannot be opened or read."""


class MissingMppError(SlideError):
    """The slide carries no resolution (microns per pixel) and none was given."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(
            path,
            "the file records no resolution (microns per pixel); pass it explicitly, "
            "e.g. `--mpp-override 0.25` on the command line or `open_slide(path, mpp=0.25)`",
        )


class AnnotationError(InputFileError):
    """An annotation file is not valid ASAP XML, is hostile, or does not fit its slide."""


class CheckpointError(InputFileError):
    """A model checkpoint is missing, corrupt, or does not match what it is used for."""


class OutputPathError(CadxError):
    """An output cannot be written where asked: its folder cannot be created or is a file, it is
    read-only, the disk is full, or the output would overwrite an input.

    Parameters
    ----------
    path : str or Path
        The output; it is named first in the message.
    problem : str
        What is wrong, with the operating system's reason.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(CadxError):
    """A configuration file or value is invalid; the message names the file and the key."""


class MissingExtraError(CadxError):
    """An optional dependency group is not installed."""


def require_extra(module: str, extra: str) -> object:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install 'cadx[extra]'``.

    Parameters
    ----------
    module : str
        Importable name, e.g. ``"pydicom"``.
    extra : str
        The cadx extra that installs it, e.g. ``"ct"``.

    Examples
    --------
    >>> require_extra("json", "core").__name__
    'json'
    >>> try:
    ...     require_extra("no_such_module_xyz", "ct")
    ... except MissingExtraError as exc:
    ...     print(exc)
    no_such_module_xyz is not installed: pip install 'cadx[ct]'
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"{module} is not installed: pip install 'cadx[{extra}]'") from None
