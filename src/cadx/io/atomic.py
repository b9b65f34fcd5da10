"""Write files atomically: to a temporary sibling first, then rename over the target.

A crash or an error half-way leaves the previous file (or no file), never a truncated one. The
temporary file (``.<name>.<random>.part`` beside the target) is removed on any exception,
including the :class:`SystemExit` that :func:`exit_on_sigterm` turns a SIGTERM into: the ``cadx``
command line installs that handler at start-up, so ``kill <pid>`` leaves no ``.part`` file behind.
Only SIGKILL or a power cut can; :func:`remove_stale_parts` cleans those up.

Problems with the output location (a folder that cannot be created or is a file, a read-only
folder, a full disk, an output that is an input) raise :class:`~cadx.errors.OutputPathError`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cadx.errors import OutputPathError

log = logging.getLogger(__name__)

#: Suffix of the temporary files :func:`atomic_path` writes (prefix: a dot and the target's name).
PART_SUFFIX = ".part"

#: ``errno`` values of a write that describe the output's file system (full, over quota, too large,
#: read-only), not a bug: reported as OutputPathError.
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    Parameters
    ----------
    path : str or Path
        Final destination. Its parent directory is created if needed.

    Yields
    ------
    Path
        Where to write. On an exception (or a SIGTERM turned into :class:`SystemExit` by
        :func:`exit_on_sigterm`) the temporary file is removed and ``path`` is untouched.

    Raises
    ------
    OutputPathError
        The folder cannot be created (permission, or a parent is a file), ``path`` is a folder, the
        folder is read-only, or writing fails for lack of space (the block's own ``OSError`` with
        ``ENOSPC``, ``EDQUOT``, ``EFBIG`` or ``EROFS`` is converted; other errors pass unchanged).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("done")
    >>> out.read_text()
    'done'
    >>> with atomic_path(out.parent / "a.txt" / "b.txt") as tmp:  # doctest: +ELLIPSIS
    ...     pass
    Traceback (most recent call last):
    ...
    cadx.errors.OutputPathError: .../a.txt/b.txt: cannot create the folder .../a.txt: .../a.txt is a file...
    """
    path = Path(path)
    _prepare_folder(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PART_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise OutputPathError(path, f"cannot write in the folder {path.parent}: {_reason(exc)}") from None
    tmp = Path(tmp_name)
    try:
        os.close(fd)
        try:
            yield tmp
        except OSError as exc:
            if exc.errno in _OUTPUT_ERRNOS:
                raise OutputPathError(path, f"cannot write: {_reason(exc)}") from exc
            raise
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputPathError(path, f"cannot replace it: {_reason(exc)}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def ensure_not_input(output: str | Path, *inputs: str | Path | None) -> Path:
    """Return ``output`` unless it is one of ``inputs`` (same path once resolved, or same file).

    Call it before any work, so that ``cadx ... IN --out IN`` fails at once instead of replacing
    its own input. ``None`` inputs (optional arguments not given) are skipped.

    Raises
    ------
    OutputPathError
        If ``output`` resolves to an input, or is a hard link or symbolic link to it.

    Examples
    --------
    >>> ensure_not_input("out/mask.png", "slide.tif", None)
    PosixPath('out/mask.png')
    >>> ensure_not_input("./slide.tif", "slide.tif")
    Traceback (most recent call last):
    ...
    cadx.errors.OutputPathError: slide.tif: is also an input (slide.tif); choose another output path
    """
    out = Path(output)
    for item in inputs:
        if item is None:
            continue
        inp = Path(item)
        same = out.resolve() == inp.resolve()
        if not same:
            with contextlib.suppress(OSError):
                same = os.path.samefile(out, inp)
        if same:
            raise OutputPathError(out, f"is also an input ({inp}); choose another output path")
    return out


def remove_stale_parts(folder: str | Path, *, min_age_s: float = 0.0, recursive: bool = False) -> list[Path]:
    """Delete the ``.<name>.*.part`` temporaries a killed run (SIGKILL, power cut) left in ``folder``.

    Call it at the start of a run on a folder that run owns: a temporary of a run still writing
    there would be removed too (``min_age_s`` spares files modified in the last seconds).

    Parameters
    ----------
    folder : str or Path
        Where to look; nothing happens if it does not exist.
    min_age_s : float
        Keep temporaries modified less than this many seconds ago.
    recursive : bool
        Also look in sub-folders.

    Returns
    -------
    list of Path
        The files removed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / ".mask.png.k2j4x9q1.part").write_bytes(b"half")
    >>> _ = (d / "mask.png").write_bytes(b"whole")
    >>> [p.name for p in remove_stale_parts(d)], sorted(p.name for p in d.iterdir())
    (['.mask.png.k2j4x9q1.part'], ['mask.png'])
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".*{PART_SUFFIX}"
    now = time.time()
    removed = []
    for p in sorted(folder.rglob(pattern) if recursive else folder.glob(pattern)):
        try:
            if not p.is_file() or p.is_symlink() or now - p.stat().st_mtime < min_age_s:
                continue
            p.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise OutputPathError(p, f"cannot remove a stale temporary file: {_reason(exc)}") from None
        removed.append(p)
        log.info("removed stale temporary %s", p)
    return removed


def prepare_output_folder(folder: str | Path) -> Path:
    """Create the output folder ``folder`` (and its parents) or say in one line why it cannot be.

    Call it before a batch's first item, so that a folder that is a file fails the whole command
    once instead of each item in turn.

    Raises
    ------
    OutputPathError
        ``folder`` (or one of its parents) is a file, or it cannot be created (permission).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> prepare_output_folder(d / "out").is_dir()
    True
    >>> _ = (d / "afile").write_text("x")
    >>> prepare_output_folder(d / "afile")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cadx.errors.OutputPathError: .../afile: is a file, not a folder
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(folder, "is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise OutputPathError(folder, f"cannot create the folder: {blocker} is a file") from None
    except OSError as exc:
        raise OutputPathError(folder, f"cannot create the folder: {_reason(exc)}") from None
    return folder


def exit_on_sigterm() -> Any:
    """Turn SIGTERM into ``SystemExit(143)`` so ``finally`` blocks run (call from the main thread).

    Returns the previous handler, for ``signal.signal(signal.SIGTERM, previous)`` afterwards.

    Python's default for SIGTERM ends the process at once, skipping :func:`atomic_path`'s
    clean-up; with this handler, ``kill <pid>`` (a scheduler's time limit, ``docker stop``)
    unwinds like Ctrl-C does. The ``cadx`` command line installs it at start-up; library users
    who want the same call it once in their own entry point.
    """

    def _raise_exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, _raise_exit)


def _prepare_folder(path: Path) -> None:
    """Create ``path``'s folder, or raise :class:`OutputPathError` saying why it cannot be done."""
    if path.is_dir():
        raise OutputPathError(path, "is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), path.parent)
        raise OutputPathError(path, f"cannot create the folder {path.parent}: {blocker} is a file") from None
    except OSError as exc:
        raise OutputPathError(path, f"cannot create the folder {path.parent}: {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    """The operating system's reason, lower-case (``no space left on device``)."""
    return exc.strerror.lower() if exc.strerror else str(exc)
