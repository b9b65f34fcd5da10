"""How far cadx goes when reading an input, and the checks every reader runs before opening a file.

A hostile or broken input (a 31 KB TIFF claiming 60,000 x 60,000 px without a pyramid, a resolution
tag of 2.5e-6 um/px, a named pipe, an annotation with millions of vertices) must end in one clear
:class:`~cadx.errors.InputFileError`, never in a multi-gigabyte allocation or a process that blocks.
The limits below are generous for real slides; each can be raised through an environment variable.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, fields
from pathlib import Path

from cadx.errors import ConfigError, InputFileError

#: Plausible level-0 resolutions in microns per pixel: finer than any optical scanner at 0.01,
#: a photograph of a whole glass slide at 100.
MPP_RANGE_UM = (0.01, 100.0)


@dataclass(frozen=True)
class InputLimits:
    """Sizes beyond which cadx refuses an input with a clear error instead of allocating.

    Attributes
    ----------
    max_side_px : int
        Largest plausible level-0 width or height of a slide, in pixels (real slides stay under
        about 250,000). Environment: ``CADX_MAX_SLIDE_SIDE_PX``.
    max_read_px : int
        Most pixels of one pyramid level decoded for a whole-slide overview (thumbnail, tissue
        mask), and the largest region one ``read_region`` returns. Overviews are read in strips, so
        memory stays bounded by the overview, but a slide without a small enough level would take
        minutes to decode: it is refused. The default, 2**28 (268 Mpx), is a 16,384 px square.
        Environment: ``CADX_MAX_READ_PX``.
    max_image_px : int
        Largest plain image (PNG, JPEG, BMP) decoded whole, in pixels; 2**27 (134 Mpx) by default,
        below Pillow's own decompression-bomb limit. Environment: ``CADX_MAX_IMAGE_PX``.
    max_annotation_vertices : int
        Most polygon vertices read from one annotation file (CAMELYON16's largest hold tens of
        thousands). Environment: ``CADX_MAX_ANNOTATION_VERTICES``.

    Examples
    --------
    >>> InputLimits().max_read_px == 2**28
    True
    >>> InputLimits(max_read_px=1000).max_read_px
    1000
    """

    max_side_px: int = 500_000
    max_read_px: int = 2**28
    max_image_px: int = 2**27
    max_annotation_vertices: int = 2_000_000


#: Environment variable for each field of :class:`InputLimits`.
LIMIT_ENV_VARS = {
    "max_side_px": "CADX_MAX_SLIDE_SIDE_PX",
    "max_read_px": "CADX_MAX_READ_PX",
    "max_image_px": "CADX_MAX_IMAGE_PX",
    "max_annotation_vertices": "CADX_MAX_ANNOTATION_VERTICES",
}


def input_limits() -> InputLimits:
    """The limits in force: :class:`InputLimits` defaults, overridden by the environment.

    Read at each call (cheap), so a test or a long-running server can change them.

    Raises
    ------
    ConfigError
        If a variable is set to something other than a positive integer.

    Examples
    --------
    >>> import os
    >>> os.environ["CADX_MAX_READ_PX"] = "5000"
    >>> input_limits().max_read_px
    5000
    >>> del os.environ["CADX_MAX_READ_PX"]
    """
    values = {}
    for f in fields(InputLimits):
        name = LIMIT_ENV_VARS[f.name]
        raw = os.environ.get(name)
        if raw is None or not raw.strip():
            continue
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value <= 0:
            raise ConfigError(f"environment variable {name}={raw!r}: expected a positive integer")
        values[f.name] = value
    return InputLimits(**values)


def require_regular_file(path: str | Path, error: type[InputFileError] = InputFileError) -> Path:
    """Return ``path`` if it names a regular file; raise ``error(path, problem)`` otherwise.

    Opening a named pipe, a device or a socket would block or read forever, so only regular
    files (or links to them) are opened.

    Examples
    --------
    >>> require_regular_file("/no/such/file")
    Traceback (most recent call last):
    ...
    cadx.errors.InputFileError: /no/such/file: no such file
    >>> require_regular_file("/")
    Traceback (most recent call last):
    ...
    cadx.errors.InputFileError: /: is a directory, not a file
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise error(path, "no such file") from None
    except NotADirectoryError:
        raise error(path, "no such file (a parent is not a directory)") from None
    except PermissionError:
        raise error(path, "permission denied") from None
    except OSError as exc:
        raise error(path, f"cannot access ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise error(path, "is a directory, not a file")
    if not stat.S_ISREG(mode):
        kind = "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise error(path, f"is {kind}, not a regular file; cadx reads only regular files")
    return path


def check_mpp(value: float, path: str | Path, *, source: str, error: type[InputFileError] = InputFileError) -> float:
    """Return ``value`` (microns per pixel) if it lies in :data:`MPP_RANGE_UM`; raise otherwise.

    Parameters
    ----------
    value : float
        Resolution in um/px.
    path : str or Path
        The file it belongs to (named in the message).
    source : str
        Where the value came from, for the message: ``"recorded in the file"`` or ``"given"``.

    Examples
    --------
    >>> check_mpp(0.25, "s.tif", source="given")
    0.25
    >>> check_mpp(2.5e-6, "s.tif", source="recorded in the file")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cadx.errors.InputFileError: s.tif: resolution 2.5e-06 um/px recorded in the file is outside the plausible range...
    """
    lo, hi = MPP_RANGE_UM
    v = float(value)
    if not (math.isfinite(v) and lo <= v <= hi):
        raise error(
            path,
            f"resolution {value:.4g} um/px {source} is outside the plausible range {lo:g}-{hi:g} um/px; "
            "pass the right one (`--mpp-override` on the command line)",
        )
    return v
