"""Interrupted and repeated runs of ``slide tile`` and ``predict slides``.

A rerun into the same folder removes the ``.*.part`` files a killed run left, repeats nothing that
finished with the same settings (a counter on the expensive call, unchanged modification times),
redoes what was made with other settings, and redoes everything with ``--overwrite``.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from cadx.cli.main import main  # noqa: E402
from cadx.io.h5 import read_coords_h5, read_score_grid_attrs  # noqa: E402

from .hostile_inputs import SRC  # noqa: E402
from .ml_inputs import tiny_checkpoint  # noqa: E402

PRED_EXTS = (".h5", ".png", ".csv", ".xml", ".geojson")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")


@pytest.fixture()
def slides(cohort, tmp_path: Path) -> Path:
    """A folder with two of the cohort's 4096-px slides (links, not copies)."""
    root, found = cohort
    folder = tmp_path / "slides"
    folder.mkdir()
    for s in found:
        if s.name in ("tumor_001", "normal_001"):
            os.symlink(s.path, folder / s.path.name)
    return folder


def counting(monkeypatch: pytest.MonkeyPatch, target: str) -> list[str]:
    """Wrap the function at ``target`` (``module:name``) so each call appends its first argument's name."""
    import importlib

    module_name, name = target.split(":")
    module = importlib.import_module(module_name)
    original = getattr(module, name)
    calls: list[str] = []

    def wrapper(slide, *args, **kwargs):
        calls.append(slide.name)
        return original(slide, *args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir()) if p.is_file()}


def plant_part(folder: Path, target: str) -> Path:
    """A temporary file as ``atomic_path`` names it, as a SIGKILL would leave it, an hour old."""
    part = folder / f".{target}.k2j4x9q1.part"
    part.write_bytes(b"half-written")
    old = time.time() - 3600
    os.utime(part, (old, old))
    return part


def run(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# ----------------------------------------------------------------------------------------------
# slide tile


TILE_ARGS = ("--target-mpp", "2", "--tile-size", "64")


def test_tile_rerun_skips_finished_slides_and_removes_stale_parts(slides, tmp_path, capsys, monkeypatch):
    out = tmp_path / "tiles"
    assert run(capsys, "slide", "tile", slides, "--out", out, *TILE_ARGS)[0] == 0
    before = mtimes(out)
    assert sorted(before) == ["normal_001.h5", "tumor_001.h5"]
    part = plant_part(out, "tumor_001.h5")
    calls = counting(monkeypatch, "cadx.wsi.tiling:tile_slide")
    rc, stdout, err = run(capsys, "slide", "tile", slides, "--out", out, *TILE_ARGS)
    assert rc == 0, err
    assert calls == [] and mtimes(out) == before and not part.exists()
    assert "tiled 0 of 2 slides" in stdout and "2 skipped" in stdout


def test_tile_rerun_with_other_settings_tiles_again(slides, tmp_path, capsys, monkeypatch):
    out = tmp_path / "tiles"
    assert run(capsys, "slide", "tile", slides, "--out", out, *TILE_ARGS)[0] == 0
    calls = counting(monkeypatch, "cadx.wsi.tiling:tile_slide")
    assert run(capsys, "slide", "tile", slides, "--out", out, *TILE_ARGS, "--min-tissue", "0.2")[0] == 0
    assert sorted(calls) == ["normal_001", "tumor_001"]
    assert read_coords_h5(out / "tumor_001.h5").attrs["min_tissue"] == pytest.approx(0.2)
    calls.clear()
    assert run(capsys, "slide", "tile", slides, "--out", out, *TILE_ARGS, "--min-tissue", "0.2", "--preview")[0] == 0
    assert sorted(calls) == ["normal_001", "tumor_001"]  # a preview was asked for and none was there
    assert (out / "tumor_001.png").exists()
    calls.clear()
    rc, stdout, _ = run(capsys, "slide", "tile", slides, "--out", out, *TILE_ARGS, "--min-tissue", "0.2", "--preview",
                        "--overwrite")
    assert rc == 0 and sorted(calls) == ["normal_001", "tumor_001"] and "skipped" not in stdout


def test_tile_rerun_after_the_annotations_changed(cohort, tmp_path, capsys, monkeypatch):
    root, _ = cohort
    anns = tmp_path / "anns"
    shutil.copytree(root / "training/lesion_annotations", anns)
    tumor = root / "training/tumor"
    out = tmp_path / "tiles"
    assert run(capsys, "slide", "tile", tumor, "--annotations", anns, "--out", out, *TILE_ARGS)[0] == 0
    assert "tumor_fraction" in read_coords_h5(out / "tumor_001.h5").arrays
    calls = counting(monkeypatch, "cadx.wsi.tiling:tile_slide")
    with open(anns / "tumor_002.xml", "a") as fh:
        fh.write("\n<!-- edited -->\n")
    assert run(capsys, "slide", "tile", tumor, "--annotations", anns, "--out", out, *TILE_ARGS)[0] == 0
    assert calls == ["tumor_002"]
    calls.clear()
    assert run(capsys, "slide", "tile", tumor, "--out", out, *TILE_ARGS)[0] == 0  # no annotations: no fractions
    assert sorted(calls) == ["tumor_001", "tumor_002"]
    assert "tumor_fraction" not in read_coords_h5(out / "tumor_001.h5").arrays


def test_tile_output_folder_is_a_file(slides, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    rc, _, err = run(capsys, "slide", "tile", slides, "--out", tmp_path / "afile", *TILE_ARGS)
    assert rc == 2 and err.strip() == f"cadx: error: {tmp_path / 'afile'}: is a file, not a folder"


def test_tile_preview_never_replaces_an_input_slide(work_png: Path, capsys):
    before = (work_png / "slide.png").read_bytes()
    rc, _, err = run(capsys, "slide", "tile", "slide.png", "--out", ".", "--mpp-override", "2", "--preview",
                     *TILE_ARGS)
    assert rc == 1 and any("slide.png" in ln and "is also an input" in ln for ln in err.splitlines()), err
    assert (work_png / "slide.png").read_bytes() == before


@pytest.fixture()
def work_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (512, 512), (200, 100, 150)).save(tmp_path / "slide.png")
    return tmp_path


# ----------------------------------------------------------------------------------------------
# predict slides


def predict(capsys, slides: Path, out: Path, checkpoint: Path, *extra: object) -> tuple[int, str, str]:
    return run(capsys, "predict", "slides", slides, "--model", checkpoint, "--out", out, "--backend", "torch", *extra)


def scores_csv(out: Path) -> list[dict[str, str]]:
    with open(out / "slide_scores.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_rerun_skips_finished_slides_and_keeps_scores_complete(slides, checkpoint, tmp_path, capsys,
                                                                       monkeypatch):
    out = tmp_path / "pred"
    assert predict(capsys, slides, out, checkpoint)[0] == 0
    before, rows = mtimes(out), scores_csv(out)
    assert [r["slide"] for r in rows] == ["normal_001", "tumor_001"]
    part = plant_part(out, "tumor_001.h5")
    calls = counting(monkeypatch, "cadx.tasks.camelyon16.predict:predict_slide")
    rc, stdout, err = predict(capsys, slides, out, checkpoint)
    assert rc == 0, err
    assert calls == [] and not part.exists()
    after = mtimes(out)
    for name in ("normal_001", "tumor_001"):
        for ext in PRED_EXTS:
            assert after[name + ext] == before[name + ext], name + ext
    assert scores_csv(out) == rows  # every slide, recomputed from the grids read back
    assert "predicted 0 of 2 slides, 2 skipped" in stdout


def test_predict_rerun_after_a_kill_finishes_the_rest(slides, checkpoint, tmp_path, capsys, monkeypatch):
    """A run killed after tumor_001's overlay, before its grid: the grid is what says a slide is finished."""
    out = tmp_path / "pred"
    assert predict(capsys, slides, out, checkpoint)[0] == 0
    rows = scores_csv(out)
    (out / "tumor_001.h5").unlink()
    (out / "slide_scores.csv").unlink()
    finished = (out / "normal_001.h5").stat().st_mtime_ns
    calls = counting(monkeypatch, "cadx.tasks.camelyon16.predict:predict_slide")
    assert predict(capsys, slides, out, checkpoint)[0] == 0
    assert calls == ["tumor_001"] and (out / "normal_001.h5").stat().st_mtime_ns == finished
    assert scores_csv(out) == rows


def test_predict_rerun_completes_stale_overlays_and_detections_from_the_grid(slides, checkpoint, tmp_path, capsys,
                                                                             monkeypatch):
    out = tmp_path / "pred"
    assert predict(capsys, slides, out, checkpoint)[0] == 0
    before = mtimes(out)
    # A later run (another model, say) was killed after rewriting tumor_001's overlay: it is newer than the grid.
    later = (out / "tumor_001.h5").stat().st_mtime_ns + 10**9
    os.utime(out / "tumor_001.png", ns=(later, later))
    (out / "normal_001.geojson").unlink()
    calls = counting(monkeypatch, "cadx.tasks.camelyon16.predict:predict_slide")
    assert predict(capsys, slides, out, checkpoint)[0] == 0
    after = mtimes(out)
    assert calls == []
    assert after["tumor_001.png"] != later and after["tumor_001.h5"] > before["tumor_001.h5"]  # redone, re-committed
    assert after["tumor_001.csv"] == before["tumor_001.csv"]
    assert (out / "normal_001.geojson").exists() and after["normal_001.png"] == before["normal_001.png"]
    for name in ("normal_001", "tumor_001"):
        grid_time = after[f"{name}.h5"]
        assert all(after[name + ext] <= grid_time for ext in PRED_EXTS)


def test_predict_rerun_with_other_settings(slides, checkpoint, tmp_path, capsys, monkeypatch):
    (slides / "normal_001.tif").unlink()  # one slide is enough here
    out = tmp_path / "pred"
    assert predict(capsys, slides, out, checkpoint)[0] == 0
    calls = counting(monkeypatch, "cadx.tasks.camelyon16.predict:predict_slide")

    # Other detection settings: detections redone from the grid, the model does not run.
    csv_before = (out / "tumor_001.csv").stat().st_mtime_ns
    assert predict(capsys, slides, out, checkpoint, "--nms-threshold", "0.9")[0] == 0
    assert calls == [] and (out / "tumor_001.csv").stat().st_mtime_ns != csv_before
    assert read_score_grid_attrs(out / "tumor_001.h5")["nms_threshold"] == pytest.approx(0.9)

    # Another stride, TTA, or checkpoint: predicted again.
    for extra in (["--stride", "48"], ["--tta"]):
        calls.clear()
        assert predict(capsys, slides, out, checkpoint, "--nms-threshold", "0.9", *extra)[0] == 0
        assert calls == ["tumor_001"], extra
    calls.clear()
    other = tiny_checkpoint(tmp_path / "other.pt", seed=1)
    assert predict(capsys, slides, out, other, "--nms-threshold", "0.9")[0] == 0
    assert calls == ["tumor_001"]
    from cadx.io.digest import file_sha256

    assert read_score_grid_attrs(out / "tumor_001.h5")["model_checkpoint_sha256"] == file_sha256(other)
    calls.clear()
    rc, stdout, _ = predict(capsys, slides, out, other, "--nms-threshold", "0.9", "--overwrite")
    assert rc == 0 and calls == ["tumor_001"] and "skipped" not in stdout
    assert [r["slide"] for r in scores_csv(out)] == ["tumor_001"]


def test_predict_sigterm_then_rerun(slides, checkpoint, tmp_path, cohort, capsys, monkeypatch):
    """A real ``kill`` during ``cadx predict slides``: no ``.part`` left; the rerun only does what was left."""
    root, found = cohort
    for s in found:  # five slides, so that the run is still going when the first grid appears
        if not (slides / s.path.name).exists():
            os.symlink(s.path, slides / s.path.name)
    out = tmp_path / "pred"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cadx", "predict", "slides", str(slides), "--model",
                             str(checkpoint), "--out", str(out), "--backend", "torch", "--tta"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*.h5")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr.read()
    assert not list(out.glob(".*.part"))
    finished = {p.stem: p.stat().st_mtime_ns for p in out.glob("*.h5")}
    assert 1 <= len(finished) < 5
    calls = counting(monkeypatch, "cadx.tasks.camelyon16.predict:predict_slide")
    assert predict(capsys, slides, out, checkpoint, "--tta")[0] == 0
    assert sorted(calls) == sorted({s.name for s in found} - set(finished))
    assert all((out / f"{name}.h5").stat().st_mtime_ns == t for name, t in finished.items())
    assert sorted(r["slide"] for r in scores_csv(out)) == sorted(s.name for s in found)
