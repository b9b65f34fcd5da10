"""Tiny hostile inputs, built byte by byte (no randomness): files that claim far more than they hold.

Used by tests/test_bad_input.py and tests/test_bad_input_ml.py (through the command line) and
tests/test_io_limits.py.
"""

from __future__ import annotations

import math
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

_SHORT, _LONG, _RATIONAL = 3, 4, 5


def tiled_tiff(
    path: Path,
    width: int,
    height: int,
    *,
    tile_px: int = 1024,
    px_per_cm: int | None = 40_000,
    corrupt: bool = False,
) -> Path:
    """A single-level tiled RGB TIFF whose tiles all point at one deflate-compressed black tile.

    60,000 x 60,000 px with 1024-px tiles is a 31 KB file that OpenSlide opens as ``generic-tiff``
    (no pyramid). ``px_per_cm`` sets the resolution tag (40,000 px/cm = 0.25 um/px; 4e9 px/cm =
    2.5e-6 um/px); None leaves it out. ``corrupt`` garbles the tile's deflate stream.
    """
    n_tiles = math.ceil(width / tile_px) * math.ceil(height / tile_px)
    tile = bytearray(zlib.compress(bytes(tile_px * tile_px * 3), 9))
    if corrupt:
        tile[:16] = b"\xff" * 16
    entries: list[tuple[int, int, int, bytes]] = []

    def entry(tag: int, kind: int, values: list) -> None:
        if kind == _RATIONAL:
            data = b"".join(struct.pack("<II", *v) for v in values)
        else:
            data = struct.pack("<" + ("H" if kind == _SHORT else "I") * len(values), *values)
        entries.append((tag, kind, len(values), data))

    entry(256, _LONG, [width])
    entry(257, _LONG, [height])
    entry(258, _SHORT, [8, 8, 8])
    entry(259, _SHORT, [8])  # deflate
    entry(262, _SHORT, [2])  # RGB
    entry(277, _SHORT, [3])
    entry(284, _SHORT, [1])
    entry(322, _LONG, [tile_px])
    entry(323, _LONG, [tile_px])
    if px_per_cm is not None:
        entry(282, _RATIONAL, [(px_per_cm, 1)])
        entry(283, _RATIONAL, [(px_per_cm, 1)])
        entry(296, _SHORT, [3])  # centimetre
    ifd_offset = 8
    n_entries = len(entries) + 2  # plus TileOffsets and TileByteCounts
    blob_offset = ifd_offset + 2 + 12 * n_entries + 4
    blob = bytearray(tile)
    entry(324, _LONG, [blob_offset] * n_tiles)
    entry(325, _LONG, [len(tile)] * n_tiles)
    ifd = bytearray(struct.pack("<H", n_entries))
    for tag, kind, count, data in sorted(entries):
        if len(data) <= 4:
            ifd += struct.pack("<HHI", tag, kind, count) + data.ljust(4, b"\0")
        else:
            if len(blob) % 2:
                blob += b"\0"
            ifd += struct.pack("<HHII", tag, kind, count, blob_offset + len(blob))
            blob += data
    ifd += struct.pack("<I", 0)
    Path(path).write_bytes(b"II" + struct.pack("<HI", 42, ifd_offset) + ifd + blob)
    return Path(path)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` RGB pixels but whose data is 64 zero bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64)))
                           + chunk(b"IEND", b""))
    return Path(path)


def asap_xml(path: Path, coordinates: list[dict[str, str]], *, group: str = "_0") -> Path:
    """One ASAP polygon whose ``Coordinate`` elements carry exactly the given attributes."""
    coords = "".join("<Coordinate " + " ".join(f'{k}="{v}"' for k, v in c.items()) + "/>" for c in coordinates)
    Path(path).write_text(
        '<?xml version="1.0"?><ASAP_Annotations><Annotations>'
        f'<Annotation Name="lesion" Type="Polygon" PartOfGroup="{group}"><Coordinates>{coords}</Coordinates>'
        "</Annotation></Annotations></ASAP_Annotations>"
    )
    return Path(path)


def square(x0: float, y0: float, side: float) -> list[dict[str, str]]:
    """The four corners of a square as ASAP ``Coordinate`` attributes."""
    xy = [(x0, y0), (x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side)]
    return [{"Order": str(i), "X": str(x), "Y": str(y)} for i, (x, y) in enumerate(xy)]


#: Address-space cap of the subprocesses that run memory-bomb cases: a regression fails fast.
MEMORY_CAP_BYTES = 3 << 30

_CHILD = """
import resource, sys
cap = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from cadx.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


#: The cap for commands that import torch, which alone maps about 3.7 GB of address space.
TORCH_MEMORY_CAP_BYTES = 6 << 30


def run_cli_capped(args: list[str], *, cwd: Path, env: dict[str, str] | None = None,
                   timeout_s: float = 120, cap_bytes: int = MEMORY_CAP_BYTES) -> subprocess.CompletedProcess:
    """``cadx ARGS`` via ``cadx.cli.main.main`` in a child with ``cap_bytes`` of address space.

    A timeout (a blocking read of a named pipe, say) fails the test instead of hanging it. Commands
    that load a model need :data:`TORCH_MEMORY_CAP_BYTES`.
    """
    child_env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                 "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = cap_bytes if hard == resource.RLIM_INFINITY else min(cap_bytes, hard)
    return subprocess.run([sys.executable, "-c", _CHILD, str(cap), *args], cwd=cwd, env=child_env,
                          capture_output=True, text=True, timeout=timeout_s)
