"""Head CT reading benchmark: slices/s of cadx's DICOM reader (+ windows) vs pydicom's own decode.

Writes ``--files`` RSNA-like slices (512x512 12-bit unsigned, intercept -1024, multi-valued window
strings, ``ID_`` pseudo-UIDs) with pydicom into a temporary folder, then times, over the same files:

* pydicom: ``dcmread(path).pixel_array`` (the baseline, its UID warnings silenced the same way),
* ``read_ct_slice`` (header fields, HU float32, quirk checks),
* ``read_ct_slice`` + ``stack_windows`` + ``to_uint8`` (what the predictor is fed).

Target: ``read_ct_slice`` + windows >= 90 % of the baseline's slices/s. Prints a markdown table. Rounds
alternate between the cases; the best round of each counts.

    python benchmarks/bench_ct.py [--files 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def write_files(folder: Path, n: int) -> list[Path]:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    rng = np.random.default_rng(0)
    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(n):
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = f"ID_{i:09x}"
            ds.SOPClassUID = CTImageStorage
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID = "ID_st", "ID_se", "ID_pa"
            ds.Modality = "CT"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.Rows = ds.Columns = 512
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
            ds.WindowCenter, ds.WindowWidth = ["00036", "00036"], ["00080", "00080"]
            ds.PixelSpacing = [0.488, 0.488]
            ds.ImagePositionPatient = [-125.0, -115.0, 5.0 * i]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.InstanceNumber = i + 1
            ds.PixelData = rng.integers(0, 4096, (512, 512), dtype=np.uint16).tobytes()
            path = folder / f"ID_{i:09x}.dcm"
            pydicom.dcmwrite(path, ds, enforce_file_format=True)
            paths.append(path)
    return paths


def baseline(paths: list[Path]) -> None:
    import pydicom

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR UI")
        for p in paths:
            pydicom.dcmread(p).pixel_array  # noqa: B018


def cadx_read(paths: list[Path]) -> None:
    from cadx.io.dicom import read_ct_slice

    for p in paths:
        read_ct_slice(p)


def cadx_read_windows(paths: list[Path]) -> None:
    from cadx.io.dicom import read_ct_slice
    from cadx.preprocessing.ct_window import stack_windows, to_uint8

    for p in paths:
        to_uint8(stack_windows(read_ct_slice(p).hu))


def cpu_flags() -> str:
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return "unknown"
    flags = info.read_text().split()
    return ", ".join(f for f in ("sse4_2", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("pydicom").setLevel(logging.ERROR)  # the same quiet for every case
    cases = {"pydicom dcmread().pixel_array": baseline, "cadx read_ct_slice": cadx_read,
             "cadx read_ct_slice + 3 windows + uint8": cadx_read_windows}
    best = dict.fromkeys(cases, float("inf"))
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_files(Path(tmp), args.files)
        for fn in cases.values():  # warm-up: imports, page cache
            fn(paths[:10])
        for _ in range(args.rounds):
            for name, fn in cases.items():
                t0 = time.perf_counter()
                fn(paths)
                best[name] = min(best[name], time.perf_counter() - t0)
    base = args.files / best["pydicom dcmread().pixel_array"]
    print(f"\n{args.files} slices 512x512 uint16 (uncompressed), best of {args.rounds} rounds, one process\n")
    print("| case | slices/s | vs pydicom |")
    print("|---|---:|---:|")
    for name, seconds in best.items():
        rate = args.files / seconds
        print(f"| {name} | {rate:,.0f} | {100 * rate / base:.0f} % |")
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs (flags: {cpu_flags()}), "
          f"Python {sys.version.split()[0]}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
