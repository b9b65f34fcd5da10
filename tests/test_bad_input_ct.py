"""Bad input through the head-CT commands: ``predict ct``, ``evaluate ct``, ``train ct --config`` and
``synth ct``.

The rule (cadx.cli.main), as in tests/test_bad_input.py: a user error prints one line
``cadx: error: <file>: <problem>`` (the row, column or key where there is one) and exits with 2, no
traceback; ``predict ct`` (a batch) reports each bad file once, predicts the others and exits with 1;
argparse refuses bad option values with exit 2. RSNA quirks cadx must accept (image ids that are not
valid UIDs, a CSV with a byte-order mark) are checked against known answers. Pickle checkpoints carry
a payload that would create a marker file: refused, and the marker never appears.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("pydicom")

from cadx.cli.main import main  # noqa: E402

from .ct_data import SUBTYPES, make_rsna_folder, slice_hu, write_slice  # noqa: E402
from .hostile_inputs import TORCH_MEMORY_CAP_BYTES, run_cli_capped  # noqa: E402
from .ml_inputs import planted_torch_pickle, tiny_checkpoint  # noqa: E402
from .test_bad_input import assert_user_error, cli  # noqa: E402

SIZE_PX = 32

#: Broken DICOM files (file name -> the problem named): listed by ``predict ct``, fatal to training.
BAD_DICOMS = {
    "notdicom.dcm": r"^not a DICOM file",
    "nopixels.dcm": r"^has no pixel data",
    "truncated.dcm": r"^(damaged DICOM file|cannot decode the pixel data|pixel data of shape)",
    "mr.dcm": r"^not a CT image \(Modality MR\)",
}


# ----------------------------------------------------------------------------------------------
# Inputs


def ct_checkpoint(path: Path, *, seed: int = 0) -> Path:
    """An untrained six-label head-CT checkpoint (32 px, three windows, no 2.5D context)."""
    import torch

    from cadx.models.checkpoint import save_checkpoint
    from cadx.models.factory import create_model

    torch.manual_seed(seed)
    model = create_model("tf_efficientnet_lite0", pretrained=False, num_classes=6, in_chans=3, input_size=SIZE_PX,
                         class_names=SUBTYPES, activation="sigmoid")
    ct_input = {"windows": [[40.0, 80.0], [80.0, 200.0], [600.0, 2800.0]], "context_slices": 0,
                "image_size": SIZE_PX}
    return save_checkpoint(path, model.eval(), extra={"ct_input": ct_input})


def edit_dicom(src: Path, dst: Path, **changes: object) -> Path:
    """A copy of ``src`` with header keywords set (``None`` deletes the element)."""
    import pydicom

    from cadx.io.dicom import _quiet_uids

    with _quiet_uids():
        ds = pydicom.dcmread(src)
        for keyword, value in changes.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        ds.save_as(dst)
    return dst


def write_dicoms(folder: Path, *, seed: int = 0) -> Path:
    """``good_0..2.dcm`` (one series, z 0/5/10 mm) and :data:`BAD_DICOMS` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(3):
        write_slice(folder / f"good_{k}.dcm", slice_hu(np.zeros(6), rng, SIZE_PX), image_id=f"ID_00000{k}aa",
                    patient="PAT_1", study="1.2.3.1", series="1.2.3.1.1", z_mm=5.0 * k)
    (folder / "notdicom.dcm").write_text("a text file, not DICOM\n")
    edit_dicom(folder / "good_0.dcm", folder / "nopixels.dcm", PixelData=None, SOPInstanceUID="ID_0000nopix")
    edit_dicom(folder / "good_0.dcm", folder / "mr.dcm", Modality="MR", SOPInstanceUID="ID_00000mr0")
    whole = edit_dicom(folder / "good_1.dcm", folder / "whole.dcm", SOPInstanceUID="ID_0000trunc")
    (folder / "truncated.dcm").write_bytes(whole.read_bytes()[: whole.stat().st_size - SIZE_PX * SIZE_PX])
    whole.unlink()
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``ct`` (a head-CT checkpoint) and ``tile`` (a CAMELYON tile checkpoint), absolute paths."""
    root = tmp_path_factory.mktemp("ct-models")
    return {"ct": ct_checkpoint(root / "ct.pt"), "tile": tiny_checkpoint(root / "tile.pt")}


@pytest.fixture(scope="module")
def dicom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dicoms(tmp_path_factory.mktemp("ct-dicoms") / "dicoms")


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dicom_dir: Path) -> Path:
    """The current directory of a test (short names in messages), holding a copy of the DICOM files."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(dicom_dir, tmp_path / "dicoms")
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path


def read_submission(path: Path) -> dict[str, np.ndarray]:
    """``{image id: (6,) probabilities}`` from a long-format submission."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["ID", "Label"]
    out: dict[str, list[float]] = {}
    for label_id, value in rows[1:]:
        image, subtype = label_id.rsplit("_", 1)
        out.setdefault(image, []).append(float(value))
        assert SUBTYPES[len(out[image]) - 1] == subtype
    return {k: np.array(v) for k, v in out.items()}


def assert_batch_failures(rc: int, stderr: str, failed: dict[str, str]) -> None:
    """Exit 1, no traceback, and the closing listing names each failed file once, with its problem."""
    import re

    assert "Traceback" not in stderr, stderr
    assert rc == 1, (rc, stderr)
    lines = stderr.splitlines()
    at = lines.index(f"{len(failed)} failed:")
    listing = lines[at + 1:]
    assert len(listing) == len(failed), listing
    for file, problem in failed.items():
        hits = [ln for ln in listing if ln.startswith(f"  {file}: ")]
        assert len(hits) == 1, (file, listing)
        rest = hits[0][len(f"  {file}: "):]
        assert not rest.startswith(f"{file}: "), hits[0]  # named once, not twice
        assert re.search(problem, rest), hits[0]
    assert sum(str(Path(f).name) in stderr for f in failed) == len(failed)


# ----------------------------------------------------------------------------------------------
# predict ct


def predict(capsys: pytest.CaptureFixture, model: Path, *inputs: str, out: str = "p") -> tuple[int, str]:
    return cli(capsys, "predict", "ct", *inputs, "--model", model, "--out", out, "--backend", "torch")


@pytest.mark.parametrize("name", sorted(BAD_DICOMS))
def test_predict_a_bad_file_is_listed_and_the_others_predicted(work: Path, models, capsys, name: str):
    rc, err = predict(capsys, models["ct"], f"dicoms/{name}", "dicoms/good_0.dcm")
    assert_batch_failures(rc, err, {f"dicoms/{name}": BAD_DICOMS[name]})
    assert list(read_submission(work / "p/submission.csv")) == ["ID_000000aa"]
    record = json.loads((work / "p/predict.json").read_text())
    assert [f[0] for f in record["failures"]] == [f"dicoms/{name}"]


def test_predict_folder_with_bad_files_among_good_ones(work: Path, models, capsys):
    rc = main(["predict", "ct", "dicoms", "--model", str(models["ct"]), "--out", "p", "--backend", "torch"])
    out, err = capsys.readouterr()
    assert f"predicted 3 of {3 + len(BAD_DICOMS)} slices in 1 studies" in out
    assert_batch_failures(rc, err, {f"dicoms/{n}": why for n, why in BAD_DICOMS.items()})
    assert sorted(read_submission(work / "p/submission.csv")) == ["ID_000000aa", "ID_000001aa", "ID_000002aa"]
    rows = list(csv.DictReader((work / "p/studies.csv").open(newline="")))
    assert [(r["study"], r["patient"], r["slices"]) for r in rows] == [("1.2.3.1", "PAT_1", "3")]


def test_predict_a_localiser_among_the_slices_is_left_out_and_listed(work: Path, models, capsys):
    """A scout (ImageType LOCALIZER, sagittal) of the same series: listed once, not predicted."""
    edit_dicom(work / "dicoms/good_1.dcm", work / "dicoms/scout.dcm", SOPInstanceUID="ID_00000scout",
               ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"], ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    rc, err = predict(capsys, models["ct"], *(f"dicoms/{n}" for n in ("good_0.dcm", "scout.dcm", "good_1.dcm")))
    assert_batch_failures(rc, err, {"dicoms/scout.dcm": r"locali[sz]er"})
    assert sorted(read_submission(work / "p/submission.csv")) == ["ID_000000aa", "ID_000001aa"]


def test_predict_image_ids_that_are_not_uids_without_a_warning_flood(work: Path, models):
    """RSNA ids (``ID_<hex>``) stand where UIDs belong: predicted, nothing at all on stderr."""
    r = run_cli_capped(["predict", "ct", "dicoms/good_0.dcm", "dicoms/good_1.dcm", "dicoms/good_2.dcm", "--model",
                        str(models["ct"]), "--out", "p", "--backend", "torch"], cwd=work,
                       cap_bytes=TORCH_MEMORY_CAP_BYTES, timeout_s=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr
    assert sorted(read_submission(work / "p/submission.csv")) == ["ID_000000aa", "ID_000001aa", "ID_000002aa"]


@pytest.mark.parametrize("kind", ["tile", "derm"])
def test_predict_with_a_checkpoint_that_is_not_a_ct_model(work: Path, models, capsys, kind: str):
    """Refused from the checkpoint's record before any work: no ONNX export beside it, no output folder."""
    if kind == "derm":
        from .test_bad_input_derm import derm_checkpoint

        derm_checkpoint(work / "derm.pt")
    else:
        shutil.copy(models["tile"], work / "tile.pt")
    rc, err = cli(capsys, "predict", "ct", "dicoms/good_0.dcm", "--model", f"{kind}.pt", "--out", "p")
    assert_user_error(rc, err, f"{kind}.pt",
                      r"^records no CT input recipe: not a head-CT model \(train one with `cadx train ct`\)$")
    assert not (work / f"{kind}.onnx").exists()
    assert not (work / "p").exists()


def test_predict_refuses_a_pickle_checkpoint(work: Path, capsys):
    planted_torch_pickle(work / "evil.pt", work / "payload-ran")
    assert_user_error(*predict(capsys, Path("evil.pt"), "dicoms/good_0.dcm"), "evil.pt",
                      "refused: it holds Python objects other than tensors and plain data")
    assert not (work / "payload-ran").exists()
    assert not (work / "p").exists()


@pytest.mark.parametrize("output", ["submission.csv", "studies.csv", "predict.json"])
def test_predict_output_is_an_input(work: Path, models, capsys, output: str):
    """Every file ``predict ct`` writes is checked against the inputs before any work."""
    shutil.copy(work / "dicoms/good_0.dcm", work / output)
    before = (work / output).read_bytes()
    assert_user_error(*predict(capsys, models["ct"], output, "dicoms/good_1.dcm", out="."), output,
                      r"is also an input")
    assert (work / output).read_bytes() == before
    assert not {"submission.csv", "studies.csv", "predict.json"} - {output} & {p.name for p in work.iterdir()}


def test_predict_no_dicom_in_the_folder(work: Path, models, capsys):
    (work / "empty").mkdir()
    rc, err = predict(capsys, models["ct"], "empty")
    assert rc == 2 and "Traceback" not in err and err.startswith("cadx: error: no DICOM files found in empty"), err


# ----------------------------------------------------------------------------------------------
# evaluate ct


def write_long(path: Path, table: dict[str, list[float]], *, bom: bool = False, extra: list[str] = ()) -> Path:
    """A long-format CSV: six rows per image, then ``extra`` raw lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["ID,Label"] + [f"{image}_{s},{v:g}" for image, row in table.items() for s, v in zip(SUBTYPES, row,
                                                                                                 strict=True)]
    path.write_text("\n".join([*lines, *extra]) + "\n", encoding="utf-8-sig" if bom else "utf-8")
    return path


TRUTH = {"ID_a1": [0, 0, 0, 0, 0, 0], "ID_a2": [1, 0, 0, 0, 0, 1], "ID_a3": [0, 0, 0, 0, 1, 1]}
PRED = {"ID_a1": [0.1, 0.1, 0.1, 0.1, 0.1, 0.2], "ID_a2": [0.8, 0.1, 0.1, 0.1, 0.1, 0.9],
        "ID_a3": [0.1, 0.1, 0.1, 0.1, 0.7, 0.6]}


def known_score(names: list[str]) -> float:
    """The weighted log loss of :data:`PRED` on :data:`TRUTH` for ``names``, by hand."""
    y = np.array([TRUTH[n] for n in names], float)
    p = np.array([PRED[n] for n in names], float)
    ll = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=0)
    return float((ll[:5].sum() + 2 * ll[5]) / 7)


def evaluate(capsys: pytest.CaptureFixture, pred: str = "p", truth: str = "gt.csv", *extra: str) -> tuple[int, str]:
    return cli(capsys, "evaluate", "ct", "--pred", pred, "--truth", truth, *extra)


@pytest.fixture()
def ev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_long(tmp_path / "gt.csv", TRUTH)
    write_long(tmp_path / "p/submission.csv", PRED)
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path


def test_evaluate_files_with_byte_order_marks_and_duplicate_rows(ev: Path, capsys):
    write_long(ev / "gt.csv", TRUTH, bom=True, extra=["ID_a2_epidural,1", "ID_a1_any,0"])  # identical duplicates
    write_long(ev / "p/submission.csv", PRED, bom=True)
    rc, err = evaluate(capsys)
    assert rc == 0 and "Traceback" not in err, err
    m = json.loads((ev / "p/metrics.json").read_text())
    assert m["images"] == 3
    assert m["weighted_log_loss"] == pytest.approx(known_score(["ID_a1", "ID_a2", "ID_a3"]), rel=1e-9)


@pytest.mark.parametrize(("line", "problem"), [
    ("a4_epidural,0", r"^row 20, column ID: 'a4_epidural' is not ID_<image>_<subtype>$"),
    ("ID_a4_haematoma,0", r"^row 20, column ID: unknown subtype 'haematoma' \(one of epidural, "),
    ("ID_a1_any,0.5", r"^row 20, column Label: '0.5' is not 0 or 1$"),
    ("ID_a1_any,2", r"^row 20, column Label: '2' is not 0 or 1$"),
    ("ID_a2_epidural,0", r"^row 20, column Label: ID_a2_epidural is 0 here but 1 on row 8$"),
])
def test_evaluate_bad_truth_rows(ev: Path, capsys, line: str, problem: str):
    write_long(ev / "gt.csv", TRUTH, extra=[line])
    assert_user_error(*evaluate(capsys), "gt.csv", problem)
    assert not (ev / "p/metrics.json").exists()


def test_evaluate_nan_in_the_submission(ev: Path, capsys):
    text = (ev / "p/submission.csv").read_text().replace("ID_a2_any,0.9", "ID_a2_any,nan")
    (ev / "p/submission.csv").write_text(text)
    assert_user_error(*evaluate(capsys), "p/submission.csv", r"^row 13, column Label: 'nan' is not a finite number")
    assert not (ev / "p/metrics.json").exists()


def test_evaluate_an_image_missing_from_the_submission_is_scored_without_it_and_said(ev: Path, capsys, caplog):
    """Scoring a subset (the validation patients) is allowed: one warning, counted in metrics.json."""
    import logging

    write_long(ev / "p/submission.csv", {k: v for k, v in PRED.items() if k != "ID_a2"})
    with caplog.at_level(logging.WARNING, logger="cadx"):
        rc, err = evaluate(capsys)
    assert rc == 0 and "Traceback" not in err, err
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["p/submission.csv: 1 ground-truth images have no prediction (left out of the score)"]
    m = json.loads((ev / "p/metrics.json").read_text())
    assert m["images"] == 2 and m["truth_images_not_predicted"] == 1
    assert m["weighted_log_loss"] == pytest.approx(known_score(["ID_a1", "ID_a3"]), rel=1e-9)


def test_evaluate_an_image_missing_a_subtype_row_in_the_submission(ev: Path, capsys):
    lines = (ev / "p/submission.csv").read_text().splitlines()
    (ev / "p/submission.csv").write_text("\n".join(ln for ln in lines if ln != "ID_a3_subdural,0.7") + "\n")
    assert_user_error(*evaluate(capsys), "p/submission.csv", r"^row 14: image ID_a3 has no row for subdural$")


def test_evaluate_predicted_image_missing_from_the_truth(ev: Path, capsys):
    write_long(ev / "p/submission.csv", {**PRED, "ID_zz": [0.5] * 6})
    assert_user_error(*evaluate(capsys), "gt.csv", r"^no rows for image ID_zz \(predictions submission.csv row 20\)$")


def test_evaluate_submission_that_is_a_dicom_file(ev: Path, capsys, dicom_dir: Path):
    shutil.copy(dicom_dir / "good_0.dcm", ev / "p/submission.csv")
    rc, err = evaluate(capsys)
    assert rc == 2 and "Traceback" not in err and err.startswith("cadx: error: p/submission.csv: "), err
    assert len(err.strip().splitlines()) == 1, err


def test_evaluate_output_is_an_input(ev: Path, capsys):
    """The truth file named like an output, in the folder the outputs go to: refused, untouched."""
    (ev / "gt.csv").rename(ev / "p/metrics.json")
    before = (ev / "p/metrics.json").read_bytes()
    assert_user_error(*evaluate(capsys, "p", "p/metrics.json"), "p/metrics.json", "is also an input")
    assert (ev / "p/metrics.json").read_bytes() == before


# ----------------------------------------------------------------------------------------------
# train ct --config


def write_config(path: Path, data_dir: str | Path, out_dir: str = "run", **extra: object) -> Path:
    """A tiny, fast training config (32 px, random init, 1 + 1 steps, no worker processes)."""
    lines = [f"data_dir: {data_dir}", f"out_dir: {out_dir}", "pretrained: false", f"image_size: {SIZE_PX}",
             "warmup_steps: 1", "finetune_steps: 1", "eval_every: 1", "batch_size: 4", "num_workers: 0",
             "device: cpu"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def train(capsys: pytest.CaptureFixture, config: str = "c.yaml") -> tuple[int, str]:
    return cli(capsys, "train", "ct", "--config", config)


@pytest.fixture()
def rsna(work: Path) -> Path:
    """An RSNA 2019-layout folder ``rsna`` (4 patients x 2 slices, 32 px) and a config ``c.yaml`` for it."""
    make_rsna_folder(work / "rsna", patients=4, slices=2, size_px=SIZE_PX)
    write_config(work / "c.yaml", "rsna")
    return work / "rsna"


def test_train_config_unknown_key(rsna: Path, work: Path, capsys):
    write_config(work / "c.yaml", "rsna", learning_rate=0.1)
    assert_user_error(*train(capsys), "c.yaml", r"^learning_rate: unknown key \(known keys: data_dir, out_dir, ")


def test_train_config_wrong_type(rsna: Path, work: Path, capsys):
    write_config(work / "c.yaml", "rsna", context_slices="two")
    assert_user_error(*train(capsys), "c.yaml", r"^context_slices: Input should be a valid integer")
    write_config(work / "c.yaml", "rsna", windows="brain")
    assert_user_error(*train(capsys), "c.yaml", r"^windows: ")


def test_train_config_data_dir_missing(work: Path, capsys):
    (work / "c.yaml").write_text("out_dir: run\n")
    assert_user_error(*train(capsys), "c.yaml", r"^data_dir: ")
    write_config(work / "c.yaml", "nowhere")
    assert_user_error(*train(capsys), "c.yaml", r"^data_dir: no such folder: nowhere$")
    write_config(work / "c.yaml", "dicoms")
    assert_user_error(*train(capsys), "c.yaml", r"^data_dir: dicoms is not the RSNA 2019 layout "
                                                r"\(no stage_2_train.csv\)$")


@pytest.mark.parametrize(("line", "problem"), [
    ("ID_zz_epidural,0", r"^row \d+: image ID_zz has no row for intraparenchymal"),
    ("ID_zz_haematoma,0", r"^row \d+, column ID: unknown subtype 'haematoma'"),
    ("ID_zz,0", r"^row \d+, column ID: 'ID_zz' is not ID_<image>_<subtype>$"),
    ("ID_zz_any,yes", r"^row \d+, column Label: 'yes' is not"),
])
def test_train_bad_label_rows(rsna: Path, capsys, line: str, problem: str):
    csv_path = rsna / "stage_2_train.csv"
    csv_path.write_text(csv_path.read_text() + line + "\n")
    assert_user_error(*train(capsys), "rsna/stage_2_train.csv", problem)


def test_train_conflicting_duplicate_label(rsna: Path, capsys):
    csv_path = rsna / "stage_2_train.csv"
    first = csv_path.read_text().splitlines()[1]
    label_id, value = first.split(",")
    csv_path.write_text(csv_path.read_text() + f"{label_id},{1 - int(value)}\n")
    assert_user_error(*train(capsys), "rsna/stage_2_train.csv",
                      rf"^row \d+, column Label: {label_id} is {1 - int(value)} here but {value} on row 2$")


@pytest.mark.parametrize("name", sorted(BAD_DICOMS))
def test_train_a_bad_training_slice_is_named(rsna: Path, work: Path, capsys, name: str):
    target = sorted((rsna / "stage_2_train").glob("*.dcm"))[3]
    target.write_bytes((work / "dicoms" / name).read_bytes())
    assert_user_error(*train(capsys), f"rsna/stage_2_train/{target.name}", BAD_DICOMS[name])
    assert not (work / "run/model.pt").exists()


def test_train_a_corrupt_slice_read_in_a_worker_process_is_one_line(rsna: Path, work: Path, capsys):
    """With DataLoader workers the slice is decoded in another process: still one line naming it."""
    write_config(work / "c.yaml", "rsna", num_workers=1)
    target = sorted((rsna / "stage_2_train").glob("*.dcm"))[3]
    target.write_bytes((work / "dicoms" / "truncated.dcm").read_bytes())
    assert_user_error(*train(capsys), f"rsna/stage_2_train/{target.name}", BAD_DICOMS["truncated.dcm"])
    assert not (work / "run/model.pt").exists()


def test_train_a_localiser_among_the_training_slices_is_named(rsna: Path, work: Path, capsys):
    target = sorted((rsna / "stage_2_train").glob("*.dcm"))[2]
    edit_dicom(target, target, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    assert_user_error(*train(capsys), f"rsna/stage_2_train/{target.name}",
                      r"^a localizer \(scout\) image \(ImageType LOCALIZER\), not a slice; remove it from "
                      r"stage_2_train.csv$")
    assert not (work / "run/model.pt").exists()


def test_train_csv_with_a_byte_order_mark_trains(rsna: Path, work: Path, capsys):
    csv_path = rsna / "stage_2_train.csv"
    csv_path.write_text(csv_path.read_text(), encoding="utf-8-sig")
    rc, err = train(capsys)
    assert rc == 0 and "Traceback" not in err, err
    from cadx.models.checkpoint import read_checkpoint

    record = read_checkpoint(work / "run/model.pt")
    assert record["model"]["class_names"] == list(SUBTYPES)
    assert record["ct_input"]["image_size"] == SIZE_PX
    with open(work / "run/split.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 8


def test_train_refuses_a_pickle_resume_file_before_any_work(rsna: Path, work: Path, capsys):
    (work / "run").mkdir()
    planted_torch_pickle(work / "run/last.pt", work / "payload-ran")
    rc, err = train(capsys)
    assert_user_error(rc, err, "run/last.pt", r"refused: it holds Python objects")
    assert not (work / "payload-ran").exists()


# ----------------------------------------------------------------------------------------------
# synth ct


@pytest.mark.parametrize(("option", "value"), [("--studies", "0"), ("--studies", "-1"), ("--slices", "2"),
                                               ("--size", "16"), ("--wrap-fraction", "1.5")])
def test_synth_option_out_of_range_is_refused_by_the_parser(capsys, option: str, value: str):
    with pytest.raises(SystemExit) as exc:
        main(["synth", "ct", "--out", "s", option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}:" in err and repr(value) in err and "Traceback" not in err


def test_synth_output_folder_is_a_file(work: Path, capsys):
    rc, err = cli(capsys, "synth", "ct", "--out", "afile", "--studies", "1", "--slices", "4", "--size", "32")
    assert_user_error(rc, err, "afile", "is a file, not a folder")
    assert (work / "afile").read_text() == "not a folder"
