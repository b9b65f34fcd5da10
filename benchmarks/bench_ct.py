"""Head CT reading benchmark: slices/s of cadx's DICOM reader (+ windows) vs pydicom's own decode.

Writes ``--files`` RSNA-like slices (512x512 12-bit unsigned, intercept -1024, multi-valued window
strings, ``ID_`` pseudo-UIDs) with pydicom into a temporary folder, then times, over the same files:

* pydicom: ``dcmread(path).pixel_array`` (the baseline, its UID warnings silenced the same way),
* ``read_ct_slice`` (header fields, HU float32, quirk checks),
* ``read_ct_slice`` + ``stack_windows`` + ``to_uint8`` (what the predictor is fed).

* ``read_ct_slice`` + ``ct_input`` (head crop, windows, resize to the model's side, uint8),

on uncompressed files and on the same files RLE Lossless-compressed (``--no-rle`` skips them), and then
model-only vs end-to-end slices/s of ``predict_ct`` on one generated 40-slice study with an
untrained 6-output ``tf_efficientnet_lite0`` on ONNX Runtime (``--model-size``, default 256 px):
seconds per 40-slice study.

Target: ``read_ct_slice`` + windows >= 90 % of the baseline's slices/s. Prints markdown tables. Rounds
alternate between the cases; the best round of each counts.

    python benchmarks/bench_ct.py [--files 200] [--rounds 5] [--model-size 256] [--no-rle]
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


def cadx_ct_input(paths: list[Path], size: int = 256) -> None:
    from cadx.datasets.ct_slices import ct_input
    from cadx.io.dicom import read_ct_slice
    from cadx.preprocessing.ct_window import DEFAULT_WINDOWS

    for p in paths:
        ct_input([read_ct_slice(p).hu], windows=DEFAULT_WINDOWS, image_size=size, crop="head")


def rle_copies(paths: list[Path], folder: Path) -> list[Path]:
    """The same slices with RLE Lossless pixel data (pydicom's own encoder)."""
    import pydicom
    from pydicom.uid import RLELossless

    folder.mkdir()
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in paths:
            ds = pydicom.dcmread(p)
            ds.compress(RLELossless)
            out.append(folder / p.name)
            ds.save_as(out[-1], enforce_file_format=True)
    return out


def time_cases(cases: dict, paths: list[Path], rounds: int) -> dict[str, float]:
    best = dict.fromkeys(cases, float("inf"))
    for fn in cases.values():  # warm-up: imports, page cache
        fn(paths[:10])
    for _ in range(rounds):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn(paths)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def print_table(title: str, best: dict[str, float], n: int) -> None:
    base = n / next(iter(best.values()))
    print(f"\n{title}\n")
    print("| case | slices/s | vs pydicom |")
    print("|---|---:|---:|")
    for name, seconds in best.items():
        rate = n / seconds
        print(f"| {name} | {rate:,.0f} | {100 * rate / base:.0f} % |")


def study_benchmark(folder: Path, size: int, rounds: int) -> None:
    """Model-only vs end-to-end ``predict_ct`` on one generated 40-slice study of 512 px slices."""
    from cadx.datasets.ct_slices import ct_input
    from cadx.inference.predictor import OnnxPredictor, export_onnx
    from cadx.io.dicom import read_ct_slice
    from cadx.models.factory import create_model
    from cadx.preprocessing.ct_window import DEFAULT_WINDOWS
    from cadx.synth.ct import generate_ct
    from cadx.tasks.rsna_ich.layout import SUBTYPES
    from cadx.tasks.rsna_ich.predict import predict_ct

    records = generate_ct(folder / "study", studies=1, slices_per_study=40, size_px=512, seed=1)
    paths = [r.path for r in records]
    model = create_model("tf_efficientnet_lite0", num_classes=6, in_chans=3, input_size=size, class_names=SUBTYPES,
                         activation="sigmoid")
    predictor = OnnxPredictor(export_onnx(model, folder / "ct.onnx", input_size=size))
    spec = {"windows": [list(w) for w in DEFAULT_WINDOWS], "context_slices": 0, "image_size": size, "crop": "head"}
    x = np.stack([ct_input([read_ct_slice(p).hu], windows=DEFAULT_WINDOWS, image_size=size, crop="head")
                  for p in paths])
    best_model, best_e2e = float("inf"), float("inf")
    predictor.predict(x[:32])
    for k in range(rounds):
        t0 = time.perf_counter()
        for i in range(0, len(x), 32):
            predictor.predict(x[i:i + 32])
        best_model = min(best_model, time.perf_counter() - t0)
        t0 = time.perf_counter()
        predict_ct(paths, predictor, {"ct_input": spec}, folder / f"pred{k}")
        best_e2e = min(best_e2e, time.perf_counter() - t0)
    n = len(paths)
    print(f"\nOne generated 40-slice study (512 px slices), untrained tf_efficientnet_lite0 at {size} px, "
          f"ONNX Runtime, batch 32, best of {rounds}\n")
    print("| measurement | slices/s | seconds per 40-slice study |")
    print("|---|---:|---:|")
    print(f"| model only (inputs prepared) | {n / best_model:,.1f} | {best_model:.2f} |")
    print(f"| `predict_ct` end to end (read, HU, crop, windows, resize, model, CSVs) | {n / best_e2e:,.1f} | "
          f"{best_e2e:.2f} ({100 * best_model / best_e2e:.0f} % of model-only) |")


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
    parser.add_argument("--model-size", type=int, default=256, help="model input side, px")
    parser.add_argument("--no-rle", action="store_true", help="skip the RLE-compressed files")
    args = parser.parse_args()
    logging.getLogger("pydicom").setLevel(logging.ERROR)  # the same quiet for every case
    cases = {"pydicom dcmread().pixel_array": baseline, "cadx read_ct_slice": cadx_read,
             "cadx read_ct_slice + 3 windows + uint8": cadx_read_windows,
             f"cadx read_ct_slice + ct_input (head crop, 3 windows, {args.model_size} px, uint8)":
                 lambda paths: cadx_ct_input(paths, args.model_size)}
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_files(Path(tmp), args.files)
        print_table(f"{args.files} slices 512x512 uint16, uncompressed, best of {args.rounds} rounds, one process",
                    time_cases(cases, paths, args.rounds), args.files)
        if not args.no_rle:
            rle = rle_copies(paths, Path(tmp) / "rle")
            print_table(f"The same {args.files} slices, RLE Lossless", time_cases(cases, rle, args.rounds), args.files)
        study_benchmark(Path(tmp), args.model_size, args.rounds)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs (flags: {cpu_flags()}), "
          f"Python {sys.version.split()[0]}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
