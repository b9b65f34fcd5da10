"""Bad input through the ML commands: ``train``, ``predict slides``, ``slide-classifier fit``,
``evaluate camelyon`` and ``demo``.

The rule (cadx.cli.main), as in tests/test_bad_input.py: a user error prints one line
``cadx: error: <file>: <problem>`` (naming the row, column or key where there is one) and exits
with 2, no traceback; a batch command reports its bad items, finishes the others and exits with 1;
argparse refuses bad option values with exit 2, naming the option. Pickle files planted where cadx
reads a model carry a payload that would create a marker file: they are refused and the marker
never appears. The case that could allocate gigabytes (a 31 KB TIFF claiming 60,000 x 60,000 px
among the slides to predict) runs in a child process with a capped address space.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from cadx.cli.main import main  # noqa: E402
from cadx.inference.detections import FEATURE_NAMES  # noqa: E402

from .hostile_inputs import TORCH_MEMORY_CAP_BYTES, run_cli_capped, tiled_tiff  # noqa: E402
from .ml_inputs import TILE_PX, planted_pickle, planted_torch_pickle, tiny_checkpoint  # noqa: E402
from .test_bad_input import assert_user_error, cli  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained-format 64-px checkpoint, built once for this module (absolute path)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current directory for a test (short names in messages), with a file where a folder belongs."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path


@pytest.fixture()
def test_slide(cohort) -> Path:
    _, slides = cohort
    return next(s.path for s in slides if s.name == "test_001")


# ----------------------------------------------------------------------------------------------
# train --config


def write_config(path: Path, data_dir: str | Path, out_dir: str = "run", **extra: object) -> Path:
    lines = [f"data_dir: {data_dir}", f"out_dir: {out_dir}", "pretrained: false", "mpp: 2.0", f"tile_size: {TILE_PX}",
             "warmup_steps: 1", "finetune_steps: 1", "batch_size: 4", "num_workers: 0", "device: cpu"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_config_missing(work: Path, capsys: pytest.CaptureFixture):
    assert_user_error(*cli(capsys, "train", "--config", "absent.yaml"), "absent.yaml", "no such config file")


def test_train_config_yaml_syntax_error(work: Path, capsys: pytest.CaptureFixture):
    (work / "c.yaml").write_text("data_dir: x\nout_dir: [unclosed\nlr: 1\n")
    assert_user_error(*cli(capsys, "train", "--config", "c.yaml"), "c.yaml",
                      r"YAML syntax error at line \d+, column \d+")


def test_train_config_top_level_list(work: Path, capsys: pytest.CaptureFixture):
    (work / "c.yaml").write_text("- data_dir: x\n- out_dir: y\n")
    assert_user_error(*cli(capsys, "train", "--config", "c.yaml"), "c.yaml",
                      "the top level must be a mapping of keys to values, not a list")


def test_train_config_unknown_key(cohort, work: Path, capsys: pytest.CaptureFixture):
    write_config(work / "c.yaml", cohort[0], learning_rate=0.1)
    assert_user_error(*cli(capsys, "train", "--config", "c.yaml"), "c.yaml",
                      r"^learning_rate: unknown key \(known keys: data_dir, out_dir, ")


def test_train_config_text_where_a_number_belongs(cohort, work: Path, capsys: pytest.CaptureFixture):
    write_config(work / "c.yaml", cohort[0])
    (work / "c.yaml").write_text((work / "c.yaml").read_text().replace(f"tile_size: {TILE_PX}", "tile_size: big"))
    assert_user_error(*cli(capsys, "train", "--config", "c.yaml"), "c.yaml",
                      r"^tile_size: Input should be a valid integer.*\(got 'big'\)$")


def test_train_config_data_dir_missing(work: Path, capsys: pytest.CaptureFixture):
    write_config(work / "c.yaml", "nowhere")
    assert_user_error(*cli(capsys, "train", "--config", "c.yaml"), "c.yaml", "^data_dir: no such folder: nowhere$")
    (work / "flat").mkdir()
    write_config(work / "c.yaml", "flat")
    assert_user_error(*cli(capsys, "train", "--config", "c.yaml"), "c.yaml",
                      r"^data_dir: flat has no training/tumor .*\(CAMELYON16 layout\)")


def test_train_out_dir_is_a_file(cohort, work: Path, capsys: pytest.CaptureFixture):
    write_config(work / "c.yaml", cohort[0], out_dir="afile")
    assert_user_error(*cli(capsys, "train", "--config", "c.yaml"), "afile", "is a file, not a folder")


def test_train_refuses_a_planted_pickle_resume_file_before_any_work(cohort, work: Path,
                                                                    capsys: pytest.CaptureFixture):
    (work / "run").mkdir()
    marker = work / "payload-ran"
    planted_torch_pickle(work / "run/last.pt", marker)
    write_config(work / "c.yaml", cohort[0])
    assert_user_error(*cli(capsys, "train", "--config", "c.yaml"), "run/last.pt",
                      r"not a readable resume file \(refused: it holds Python objects .* could run code")
    assert not marker.exists()
    assert sorted(p.name for p in (work / "run").iterdir()) == ["last.pt"]  # refused before the tiling


def test_train_refuses_an_incomplete_resume_file(cohort, work: Path, capsys: pytest.CaptureFixture):
    import torch

    (work / "run").mkdir()
    torch.save({"format": "cadx-fit-state", "step": 3}, work / "run/last.pt")
    write_config(work / "c.yaml", cohort[0])
    assert_user_error(*cli(capsys, "train", "--config", "c.yaml"), "run/last.pt",
                      r"incomplete cadx resume file .*delete it to start afresh")


# ----------------------------------------------------------------------------------------------
# predict slides


def test_predict_checkpoint_missing(work: Path, test_slide: Path, capsys: pytest.CaptureFixture):
    assert_user_error(*cli(capsys, "predict", "slides", test_slide, "--model", "absent.pt", "--out", "p"),
                      "absent.pt", "no such checkpoint file")
    assert not (work / "p").exists()


def test_predict_checkpoint_corrupt(work: Path, test_slide: Path, checkpoint: Path, capsys: pytest.CaptureFixture):
    (work / "cut.pt").write_bytes(checkpoint.read_bytes()[:5000])  # a download cut short
    assert_user_error(*cli(capsys, "predict", "slides", test_slide, "--model", "cut.pt", "--out", "p"),
                      "cut.pt", r"not a readable checkpoint \(\w+\)")


def test_predict_checkpoint_with_a_pickle_payload(work: Path, test_slide: Path, capsys: pytest.CaptureFixture):
    planted_torch_pickle(work / "evil.pt", work / "payload-ran")
    assert_user_error(*cli(capsys, "predict", "slides", test_slide, "--model", "evil.pt", "--out", "p"),
                      "evil.pt", "refused: it holds Python objects other than tensors and plain data")
    assert not (work / "payload-ran").exists()


def _foreign_onnx(path: Path, checkpoint: Path) -> Path:
    """A valid ONNX file with cadx metadata copied from ``checkpoint`` but another model inside (identity)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from cadx.models.checkpoint import read_checkpoint

    shape = ["batch", 3, TILE_PX, TILE_PX]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["logits"]), helper.make_node("Identity", ["input"], ["features"])],
        "foreign", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("logits", "features")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {"cadx_model": json.dumps(read_checkpoint(checkpoint)["model"]),
                       "cadx_checkpoint_sha256": "0" * 64}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def test_predict_a_foreign_onnx_beside_the_checkpoint_is_exported_again(work: Path, test_slide: Path,
                                                                        checkpoint: Path,
                                                                        capsys: pytest.CaptureFixture):
    pytest.importorskip("onnxruntime")
    from cadx.inference.predictor import META_CHECKPOINT_SHA256, OnnxPredictor
    from cadx.io.digest import file_sha256

    shutil.copy(checkpoint, work / "model.pt")
    _foreign_onnx(work / "model.onnx", work / "model.pt")
    assert OnnxPredictor(work / "model.onnx").metadata[META_CHECKPOINT_SHA256] == "0" * 64  # loadable, not ours
    rc, err = cli(capsys, "predict", "slides", test_slide, "--model", "model.pt", "--out", "p", "--backend", "onnx")
    assert rc == 0 and "Traceback" not in err, err
    assert OnnxPredictor(work / "model.onnx").metadata[META_CHECKPOINT_SHA256] == file_sha256(work / "model.pt")
    assert (work / "p/test_001.h5").exists()


@pytest.mark.parametrize("option", ["--stride", "--batch-size"])
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_predict_counts_must_be_positive_integers(test_slide: Path, capsys: pytest.CaptureFixture, option: str,
                                                  value: str):
    with pytest.raises(SystemExit) as exc:
        main(["predict", "slides", str(test_slide), "--model", "m.pt", "--out", "p", option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}:" in err and repr(value) in err and "Traceback" not in err


def test_predict_output_folder_is_a_file(work: Path, test_slide: Path, checkpoint: Path,
                                         capsys: pytest.CaptureFixture):
    assert_user_error(*cli(capsys, "predict", "slides", test_slide, "--model", checkpoint, "--out", "afile",
                           "--backend", "torch"), "afile", "is a file, not a folder")
    assert_user_error(*cli(capsys, "predict", "slides", test_slide, "--model", checkpoint, "--out", "afile/p",
                           "--backend", "torch"), "afile/p", "cannot create the folder: afile is a file")


def test_predict_batch_with_bad_slides_finishes_the_good_ones(cohort, work: Path, checkpoint: Path):
    """A folder with two good slides, a slide claiming 60,000 x 60,000 px and random bytes: exit 1, good ones done."""
    _, slides = cohort
    folder = work / "slides"
    folder.mkdir()
    good = sorted(s.name for s in slides if s.split == "testing")
    for s in slides:
        if s.split == "testing":
            os.symlink(s.path, folder / s.path.name)
    tiled_tiff(folder / "huge.tif", 60_000, 60_000)
    (folder / "junk.tif").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
    r = run_cli_capped(["predict", "slides", "slides", "--model", str(checkpoint), "--out", "p", "--backend", "torch"],
                       cwd=work, cap_bytes=TORCH_MEMORY_CAP_BYTES, timeout_s=300)
    assert "Traceback" not in r.stderr and "MemoryError" not in r.stderr, r.stderr
    assert r.returncode == 1, r.stderr
    assert "2 failed:" in r.stderr
    assert any("slides/huge.tif" in ln and "no pyramid" in ln for ln in r.stderr.splitlines()), r.stderr
    assert any("slides/junk.tif" in ln and "not a slide format" in ln for ln in r.stderr.splitlines()), r.stderr
    for name in good:
        for ext in (".h5", ".png", ".csv", ".xml", ".geojson"):
            assert (work / "p" / f"{name}{ext}").exists(), name + ext
    with open(work / "p/slide_scores.csv", newline="") as fh:
        assert [row["slide"] for row in csv.DictReader(fh)] == good
    assert f"predicted {len(good)} of 4 slides" in r.stdout


def test_predict_outputs_never_replace_an_input_slide(work: Path, checkpoint: Path, capsys: pytest.CaptureFixture):
    """``<slide>.png`` is the overlay's name: predicting ``slide.png`` into its own folder must not replace it."""
    from PIL import Image

    Image.new("RGB", (512, 512), (200, 100, 150)).save(work / "slide.png")
    before = (work / "slide.png").read_bytes()
    rc, err = cli(capsys, "predict", "slides", "slide.png", "--model", checkpoint, "--out", ".", "--backend", "torch",
                  "--mpp-override", "2")
    assert rc == 1 and "Traceback" not in err, err
    assert any("slide.png" in ln and "is also an input" in ln for ln in err.splitlines()), err
    assert (work / "slide.png").read_bytes() == before


@pytest.mark.parametrize("packing", ["pickle", "gzip"])
def test_predict_refuses_a_planted_pickle_slide_classifier(work: Path, test_slide: Path, checkpoint: Path,
                                                           capsys: pytest.CaptureFixture, packing: str):
    """cadx 0.1 saved forests with joblib (a pickle, maybe compressed): refused unread, the payload never runs."""
    planted_pickle(work / "forest.joblib", work / "payload-ran")
    if packing == "gzip":
        (work / "forest.joblib").write_bytes(gzip.compress((work / "forest.joblib").read_bytes()))
    assert_user_error(*cli(capsys, "predict", "slides", test_slide, "--model", checkpoint, "--out", "p",
                           "--backend", "torch", "--slide-classifier", "forest.joblib"), "forest.joblib",
                      r"a pickle/joblib file .*refused unread")
    assert not (work / "payload-ran").exists()
    assert not (work / "p").exists()


# ----------------------------------------------------------------------------------------------
# slide-classifier fit


def write_scores(path: Path, rows: list[tuple[str, list[str]]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["slide,score," + ",".join(FEATURE_NAMES)]
    lines += [f"{name},{values[0]}," + ",".join(values) for name, values in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def good_rows() -> list[tuple[str, list[str]]]:
    return [(f"{kind}_{i:03d}", [str(0.1 * i + j) for j in range(len(FEATURE_NAMES))])
            for kind in ("tumor", "normal") for i in (1, 2)]


def test_fit_without_slide_scores(work: Path, capsys: pytest.CaptureFixture):
    (work / "pred").mkdir()
    assert_user_error(*cli(capsys, "slide-classifier", "fit", "--pred", "pred", "--out", "f.json"),
                      "pred/slide_scores.csv", "no slide_scores.csv: run `cadx predict slides` first")


@pytest.mark.parametrize(("cell", "problem"), [("nan", "'nan' is not a finite number"),
                                               ("inf", "'inf' is not a finite number"),
                                               ("high", "'high' is not a number"),
                                               ("", "'' is not a number")])
def test_fit_bad_feature_cell(work: Path, capsys: pytest.CaptureFixture, cell: str, problem: str):
    rows = good_rows()
    rows[1][1][FEATURE_NAMES.index("mean")] = cell
    write_scores(work / "pred/slide_scores.csv", rows)
    assert_user_error(*cli(capsys, "slide-classifier", "fit", "--pred", "pred", "--out", "f.json"),
                      "pred/slide_scores.csv", f"^row 3, column mean: {problem}$")
    assert not (work / "f.json").exists()


def test_fit_missing_feature_column(work: Path, capsys: pytest.CaptureFixture):
    (work / "pred").mkdir()
    (work / "pred/slide_scores.csv").write_text("slide,score\ntumor_001,0.9\n")
    assert_user_error(*cli(capsys, "slide-classifier", "fit", "--pred", "pred", "--out", "f.json"),
                      "pred/slide_scores.csv", "row 1: no 'max' column")


def test_fit_output_is_the_input(work: Path, capsys: pytest.CaptureFixture):
    write_scores(work / "pred/slide_scores.csv", good_rows())
    before = (work / "pred/slide_scores.csv").read_text()
    assert_user_error(*cli(capsys, "slide-classifier", "fit", "--pred", "pred", "--out", "pred/slide_scores.csv"),
                      "pred/slide_scores.csv", "is also an input")
    assert (work / "pred/slide_scores.csv").read_text() == before


def test_fit_then_the_forest_loads(work: Path, capsys: pytest.CaptureFixture):
    """The good table of the cases above fits (so the refusals are about the bad cell)."""
    write_scores(work / "pred/slide_scores.csv", good_rows())
    rc, err = cli(capsys, "slide-classifier", "fit", "--pred", "pred", "--out", "f.json")
    assert rc == 0, err
    assert json.loads((work / "f.json").read_text())["format"] == "cadx-slide-forest"


# ----------------------------------------------------------------------------------------------
# evaluate camelyon


@pytest.fixture()
def evaluation(cohort, work: Path) -> tuple[str, str]:
    """``pred`` (grids, detections and slide scores for the two test slides) and ``truth`` folders."""
    from cadx.io.annotations import Detection
    from cadx.io.h5 import ScoreGrid, write_score_grid_h5
    from cadx.io.tables import write_detections_csv

    root, slides = cohort
    truth = work / "truth"
    shutil.copytree(root / "testing/lesion_annotations", truth / "lesion_annotations")
    shutil.copy(root / "testing/reference.csv", truth / "reference.csv")
    rows = ["slide,score"]
    for s in (s for s in slides if s.split == "testing"):
        w, h = s.layout.size_wh
        grid = ScoreGrid(np.zeros((1, h // 256, w // 256), np.float32), ("tumor_probability",), 256, 256, (w, h),
                         0.243)
        write_score_grid_h5(work / "pred" / f"{s.name}.h5", grid)
        write_detections_csv(work / "pred" / f"{s.name}.csv", [Detection(0.5, w / 2, h / 2), Detection(0.01, 5, 5)])
        rows.append(f"{s.name},{0.9 if s.layout.is_tumor else 0.1}")
    (work / "pred/slide_scores.csv").write_text("\n".join(rows) + "\n")
    return "pred", "truth"


def evaluate(capsys: pytest.CaptureFixture, pred: str, truth: str, *extra: str) -> tuple[int, str]:
    return cli(capsys, "evaluate", "camelyon", "--pred", pred, "--truth", truth, *extra)


def test_evaluate_missing_reference(evaluation, work: Path, capsys: pytest.CaptureFixture):
    (work / "truth/reference.csv").unlink()
    assert_user_error(*evaluate(capsys, *evaluation), "truth/reference.csv", "no such reference.csv file")


def test_evaluate_reference_saved_by_excel(evaluation, work: Path, capsys: pytest.CaptureFixture):
    """Excel's "CSV UTF-8": a byte-order mark, a header row and CRLF line ends."""
    text = (work / "truth/reference.csv").read_text().strip().splitlines()
    (work / "truth/reference.csv").write_bytes(
        "\ufeffImage,Type,Metastases,Size\r\n".encode() + "".join(f"{ln}\r\n" for ln in text).encode())
    rc, err = evaluate(capsys, *evaluation)
    assert rc == 0, err
    assert json.loads((work / "pred/metrics.json").read_text())["slides"] == 2


def test_evaluate_detection_with_nan_probability(evaluation, work: Path, capsys: pytest.CaptureFixture):
    (work / "pred/test_001.csv").write_text("0.5,100,100\nnan,200,200\n")
    assert_user_error(*evaluate(capsys, *evaluation), "pred/test_001.csv",
                      "^row 2, column prob: 'nan' is not a finite number$")


def test_evaluate_missing_detections_file(evaluation, work: Path, capsys: pytest.CaptureFixture):
    (work / "pred/test_002.csv").unlink()
    assert_user_error(*evaluate(capsys, *evaluation), "pred/test_002.csv",
                      "no detections file for a slide in reference.csv")


def test_evaluate_missing_score_column(evaluation, capsys: pytest.CaptureFixture):
    assert_user_error(*evaluate(capsys, *evaluation, "--score-column", "rf_score"), "pred/slide_scores.csv",
                      r"row 1: no 'rf_score' column \(columns: slide, score\)")


def test_evaluate_nan_slide_score(evaluation, work: Path, capsys: pytest.CaptureFixture):
    (work / "pred/slide_scores.csv").write_text("slide,score\ntest_001,0.9\ntest_002,nan\n")
    assert_user_error(*evaluate(capsys, *evaluation), "pred/slide_scores.csv",
                      "^row 3, column score: 'nan' is not a finite number$")


# ----------------------------------------------------------------------------------------------
# demo


def test_demo_unknown_task(capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "nosuch", "--out", "d"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument task: invalid choice: 'nosuch'" in err and "Traceback" not in err
