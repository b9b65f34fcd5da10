"""Bad input through the dermoscopy commands: ``predict derm``, ``explain``, ``evaluate derm``,
``train derm --config`` and ``synth derm``.

The rule (cadx.cli.main), as in tests/test_bad_input.py and tests/test_bad_input_ml.py: a user error
prints one line ``cadx: error: <file>: <problem>`` (the row, column or key where there is one) and
exits with 2, no traceback; the batch commands (``predict derm``, ``explain``) report each bad image
once, finish the others and exit with 1; argparse refuses bad option values with exit 2. Images
cadx must read (CMYK JPEG, 16-bit PNG, EXIF-rotated JPEG, a CSV with a byte-order mark) are checked
against known answers: the 16-bit PNG predicts exactly as its 8-bit twin, the EXIF-rotated photo
exactly as the same pixels stored upright. Pickle checkpoints carry a payload that would create a
marker file: refused, and the marker never appears. The decompression bombs inside a batch run in a
child process with a capped address space.
"""

from __future__ import annotations

import csv
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")

from cadx.cli.main import main  # noqa: E402

from .derm_data import lesion_image, make_class_folders, make_isic_folder  # noqa: E402
from .hostile_inputs import TORCH_MEMORY_CAP_BYTES, png_header_only, run_cli_capped  # noqa: E402
from .ml_inputs import planted_torch_pickle, tiny_checkpoint  # noqa: E402
from .test_bad_input import assert_user_error, cli  # noqa: E402

CLASSES = ("MEL", "NV", "BCC")
SIZE_PX = 32

#: Broken images (file name -> the problem named): each is listed by a batch command, fatal to training.
BAD_IMAGES = {
    "notimage.jpg": r"not an image cadx reads \(JPEG, PNG, TIFF or BMP\)",
    "truncated.jpg": r"cannot decode the image: truncated or corrupt",
    "empty.jpg": r"is empty \(0 bytes\), not an image",
    "bomb.png": r"decompression bomb",
}
#: Images in unusual encodings that must be read (and predicted).
ODD_IMAGES = ("cmyk.jpg", "deep16.png", "rotated.jpg")


# ----------------------------------------------------------------------------------------------
# Inputs


def derm_checkpoint(path: Path, *, seed: int = 0) -> Path:
    """An untrained 3-class dermoscopy checkpoint (32 px) with its preprocessing and temperature."""
    import torch

    from cadx.models.checkpoint import save_checkpoint
    from cadx.models.factory import create_model
    from cadx.preprocessing.images import ImagePreprocess

    torch.manual_seed(seed)
    model = create_model("tf_efficientnet_lite0", pretrained=False, num_classes=3, input_size=SIZE_PX,
                         class_names=CLASSES)
    return save_checkpoint(path, model.eval(), extra={"preprocess": ImagePreprocess(size_px=SIZE_PX).to_dict(),
                                                      "calibration": {"temperature": 1.0}})


def png16_rgb(path: Path, rgb8: np.ndarray) -> Path:
    """A 16-bit RGB PNG whose samples are ``rgb8 * 257`` (so the high byte is ``rgb8``), written by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = rgb8.shape
    samples = rgb8.astype(">u2") * 257
    raw = b"".join(b"\x00" + samples[r].tobytes() for r in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def write_images(folder: Path, *, seed: int = 0) -> Path:
    """Good, broken and oddly encoded images in ``folder``, with the twins the known answers need.

    Files: ``good_0.jpg``, ``good_1.jpg``; :data:`BAD_IMAGES`; :data:`ODD_IMAGES` and their twins
    ``deep8.png`` (the 16-bit PNG's pixels in 8 bits), ``upright.png`` (``rotated.jpg``'s pixels as
    displayed) and ``sideways.png`` (its pixels as stored, EXIF ignored).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(2):
        Image.fromarray(lesion_image(CLASSES[i], 48, rng)).save(folder / f"good_{i}.jpg", quality=95)
    (folder / "notimage.jpg").write_text("a text file, not a picture\n")
    whole = folder / "whole.jpg"
    Image.fromarray(lesion_image("MEL", 64, rng)).save(whole, quality=90)
    (folder / "truncated.jpg").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    (folder / "empty.jpg").write_bytes(b"")
    png_header_only(folder / "bomb.png", 100_000, 100_000)  # ~80 bytes claiming 10 Gpx

    Image.fromarray(lesion_image("BCC", 48, rng)).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    deep = lesion_image("NV", 40, rng)
    png16_rgb(folder / "deep16.png", deep)
    Image.fromarray(deep).save(folder / "deep8.png")
    # Stored 40 rows x 56 columns with EXIF orientation 6 ("rotate 90 degrees clockwise to display").
    stored = lesion_image("MEL", 56, rng)[8:48]
    stored[:, :10] = (20, 20, 20)  # a dark band on the stored left: on top once displayed
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(folder / "rotated.jpg", quality=95, exif=exif)
    with Image.open(folder / "rotated.jpg") as im:
        decoded = np.asarray(im.convert("RGB"))  # the stored pixels, EXIF ignored
    Image.fromarray(decoded).save(folder / "sideways.png")
    Image.fromarray(np.ascontiguousarray(np.rot90(decoded, k=-1))).save(folder / "upright.png")
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``derm`` (a dermoscopy checkpoint) and ``tile`` (a CAMELYON tile checkpoint), absolute paths."""
    root = tmp_path_factory.mktemp("derm-models")
    return {"derm": derm_checkpoint(root / "derm.pt"), "tile": tiny_checkpoint(root / "tile.pt")}


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("derm-images") / "images")


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image_dir: Path) -> Path:
    """The current directory of a test (short names in messages), holding a copy of the images."""
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(image_dir, tmp_path / "images")
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["image", *CLASSES]
    return {r[0]: np.array([float(v) for v in r[1:]]) for r in rows[1:]}


def assert_batch_failures(rc: int, stderr: str, failed: dict[str, str]) -> None:
    """Exit 1, no traceback, and the closing listing names each failed file once, with its problem."""
    assert "Traceback" not in stderr and "MemoryError" not in stderr, stderr
    assert rc == 1, (rc, stderr)
    lines = stderr.splitlines()
    at = lines.index(f"{len(failed)} failed:")
    listing = lines[at + 1:at + 1 + len(failed)]
    for file, problem in failed.items():
        hits = [ln for ln in listing if ln.startswith(f"  {file}: ")]
        assert len(hits) == 1, (file, listing)
        rest = hits[0][len(f"  {file}: "):]
        assert not rest.startswith(f"{file}: "), hits[0]  # the file is named once, not twice
        assert re.search(problem, rest), hits[0]


# ----------------------------------------------------------------------------------------------
# predict derm


def predict(capsys: pytest.CaptureFixture, model: Path, *inputs: str, out: str = "p") -> tuple[int, str]:
    return cli(capsys, "predict", "derm", *inputs, "--model", model, "--out", out)


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_predict_a_bad_image_is_listed_and_the_others_predicted(work: Path, models, capsys, name: str):
    rc, err = predict(capsys, models["derm"], f"images/{name}", "images/good_0.jpg")
    assert_batch_failures(rc, err, {f"images/{name}": BAD_IMAGES[name]})
    assert list(read_predictions(work / "p/predictions.csv")) == ["good_0"]
    record = json.loads((work / "p/predict.json").read_text())
    assert [f[0] for f in record["failures"]] == [f"images/{name}"]


def test_predict_odd_encodings_are_read_with_known_answers(work: Path, models, capsys):
    """CMYK JPEG, 16-bit PNG and an EXIF-rotated JPEG are predicted (exit 0), each as its plain twin."""
    twins = ("deep8.png", "upright.png", "sideways.png")
    rc, err = predict(capsys, models["derm"], *(f"images/{n}" for n in ODD_IMAGES + twins))
    assert rc == 0 and "Traceback" not in err, err
    p = read_predictions(work / "p/predictions.csv")
    assert sorted(p) == sorted(Path(n).stem for n in ODD_IMAGES + twins)
    for row in p.values():
        assert row.sum() == pytest.approx(1.0, abs=1e-5) and (row > 0).all()
    np.testing.assert_allclose(p["deep16"], p["deep8"], atol=2e-6)  # 16-bit reduced to its high byte
    np.testing.assert_allclose(p["rotated"], p["upright"], atol=2e-6)  # shown upright, as a viewer does
    assert np.abs(p["rotated"] - p["sideways"]).max() > 1e-4  # the orientation matters to this model


def test_predict_folder_with_bad_images_among_good_ones(work: Path, models):
    """One child with a capped address space: the bomb must be refused from its header, not decoded."""
    r = run_cli_capped(["predict", "derm", "images", "--model", str(models["derm"]), "--out", "p"], cwd=work,
                       cap_bytes=TORCH_MEMORY_CAP_BYTES, timeout_s=300)
    assert_batch_failures(r.returncode, r.stderr, {f"images/{n}": why for n, why in BAD_IMAGES.items()})
    good = {"good_0", "good_1", *(Path(n).stem for n in ODD_IMAGES), "deep8", "upright", "sideways"}
    assert set(read_predictions(work / "p/predictions.csv")) == good
    assert f"predicted {len(good)} of {len(good) + len(BAD_IMAGES)} images" in r.stdout


def test_predict_with_a_camelyon_tile_checkpoint(work: Path, models, capsys):
    """Refused from the checkpoint's record before any work: no ONNX export beside it, no output folder."""
    (work / "tile.pt").write_bytes(models["tile"].read_bytes())
    assert_user_error(*predict(capsys, Path("tile.pt"), "images/good_0.jpg"), "tile.pt",
                      r"records no image preprocessing: not a dermoscopy model \(train one with `cadx train derm`\)")
    assert not (work / "tile.onnx").exists()
    assert not (work / "p").exists()


def test_predict_with_a_broken_preprocessing_record(work: Path, models, capsys):
    import torch

    payload = torch.load(models["derm"], weights_only=True)
    payload["preprocess"]["size_px"] = "large"
    torch.save(payload, work / "broken.pt")
    assert_user_error(*predict(capsys, Path("broken.pt"), "images/good_0.jpg"), "broken.pt",
                      r"^invalid preprocessing record: image preprocessing: size_px must be an integer, got 'large'$")


def test_predict_refuses_a_pickle_checkpoint(work: Path, capsys):
    planted_torch_pickle(work / "evil.pt", work / "payload-ran")
    assert_user_error(*predict(capsys, Path("evil.pt"), "images/good_0.jpg"), "evil.pt",
                      "refused: it holds Python objects other than tensors and plain data")
    assert not (work / "payload-ran").exists()
    assert not (work / "p").exists()


@pytest.mark.parametrize("output", ["predictions.csv", "predict.json"])
def test_predict_output_is_an_input(work: Path, models, capsys, output: str):
    """Both files ``predict derm`` writes are checked against the inputs before any work."""
    (work / output).write_bytes((work / "images/good_0.jpg").read_bytes())
    before = (work / output).read_bytes()
    assert_user_error(*predict(capsys, models["derm"], output, "images/good_1.jpg", out="."), output,
                      r"is also an input")
    assert (work / output).read_bytes() == before
    assert not (work / ("predict.json" if output == "predictions.csv" else "predictions.csv")).exists()


def test_predict_output_folder_is_a_file(work: Path, models, capsys):
    assert_user_error(*predict(capsys, models["derm"], "images/good_0.jpg", out="afile"), "afile",
                      "is a file, not a folder")
    assert (work / "afile").read_text() == "not a folder"


# ----------------------------------------------------------------------------------------------
# explain


def explain(capsys: pytest.CaptureFixture, model: Path, *inputs: str, out: str = "x") -> tuple[int, str]:
    return cli(capsys, "explain", *inputs, "--model", model, "--out", out)


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_explain_a_bad_image_is_listed_and_the_others_explained(work: Path, models, capsys, name: str):
    rc, err = explain(capsys, models["derm"], f"images/{name}", "images/good_0.jpg")
    assert_batch_failures(rc, err, {f"images/{name}": BAD_IMAGES[name]})
    assert sorted(p.name for p in (work / "x").iterdir()) == ["good_0.png"]


def test_explain_odd_encodings_and_the_rotated_photo_upright(work: Path, models, capsys):
    rc, err = explain(capsys, models["derm"], *(f"images/{n}" for n in (*ODD_IMAGES, "upright.png", "sideways.png")))
    assert rc == 0 and "Traceback" not in err, err
    overlays = {p.stem: np.asarray(Image.open(p)) for p in (work / "x").iterdir()}
    assert sorted(overlays) == ["cmyk", "deep16", "rotated", "sideways", "upright"]
    assert all(o.shape == (SIZE_PX, SIZE_PX, 3) for o in overlays.values())
    diff = np.abs(overlays["rotated"].astype(int) - overlays["upright"])
    assert diff.max() <= 1, diff.max()  # the map of the upright picture, over the upright picture
    assert np.abs(overlays["rotated"].astype(int) - overlays["sideways"]).max() > 50


def test_explain_folder_with_bad_images_among_good_ones(work: Path, models):
    r = run_cli_capped(["explain", "images", "--model", str(models["derm"]), "--out", "x"], cwd=work,
                       cap_bytes=TORCH_MEMORY_CAP_BYTES, timeout_s=300)
    assert_batch_failures(r.returncode, r.stderr, {f"images/{n}": why for n, why in BAD_IMAGES.items()})
    good = {"good_0", "good_1", *(Path(n).stem for n in ODD_IMAGES), "deep8", "upright", "sideways"}
    assert {p.stem for p in (work / "x").iterdir()} == good


def test_explain_a_camelyon_tile_checkpoint_works(work: Path, models, capsys):
    """Not an error: tile models are explained on the image resized to their input size (64 px)."""
    rc, err = explain(capsys, models["tile"], "images/good_0.jpg")
    assert rc == 0 and "Traceback" not in err, err
    assert np.asarray(Image.open(work / "x/good_0.png")).shape == (64, 64, 3)


def test_explain_refuses_a_pickle_checkpoint(work: Path, capsys):
    planted_torch_pickle(work / "evil.pt", work / "payload-ran")
    assert_user_error(*explain(capsys, Path("evil.pt"), "images/good_0.jpg"), "evil.pt",
                      "refused: it holds Python objects other than tensors and plain data")
    assert not (work / "payload-ran").exists()
    assert not (work / "x").exists()


def test_explain_output_is_an_input(work: Path, models, capsys):
    before = (work / "images/upright.png").read_bytes()
    assert_user_error(*explain(capsys, models["derm"], "images/upright.png", out="images"), "images/upright.png",
                      r"is also an input")
    assert (work / "images/upright.png").read_bytes() == before


def test_explain_output_folder_is_a_file(work: Path, models, capsys):
    """One line for the command, not one failure per image."""
    assert_user_error(*explain(capsys, models["derm"], "images/good_0.jpg", "images/good_1.jpg", out="afile"),
                      "afile", "is a file, not a folder")
    assert (work / "afile").read_text() == "not a folder"


def test_explain_unknown_class(work: Path, models, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["explain", "images/good_0.jpg", "--model", str(models["derm"]), "--out", "x", "--method", "lime"])
    assert exc.value.code == 2 and "argument --method: invalid choice: 'lime'" in capsys.readouterr().err
    rc, err = cli(capsys, "explain", "images/good_0.jpg", "--model", models["derm"], "--out", "x", "--class", "AK")
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines() == ["cadx: error: class 'AK' is not one of the model's classes (MEL, NV, BCC)"]


# ----------------------------------------------------------------------------------------------
# evaluate derm

ISIC = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
#: (image, true class, MEL, NV, BCC): MEL 2 of 2 right, NV 1 of 2, BCC 1 of 1
CASES = [("ISIC_0000001", "MEL", 0.7, 0.2, 0.1), ("ISIC_0000002", "MEL", 0.5, 0.3, 0.2),
         ("ISIC_0000003", "NV", 0.1, 0.8, 0.1), ("ISIC_0000004", "NV", 0.6, 0.3, 0.1),
         ("ISIC_0000005", "BCC", 0.2, 0.2, 0.6)]


def write_truth(path: Path, *, columns: tuple[str, ...] = ISIC, cases=CASES, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["image", *columns])
        for name, cls, *_ in cases:
            w.writerow([name, *("1.0" if c == cls else "0.0" for c in columns)])
    return path


def write_pred(path: Path, *, cases=CASES, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["image", *CLASSES])
        for name, _, *p in cases:
            w.writerow([name, *p])
    return path


def evaluate(capsys: pytest.CaptureFixture, pred: str = "p", truth: str = "gt.csv", *extra: str) -> tuple[int, str]:
    return cli(capsys, "evaluate", "derm", "--pred", pred, "--truth", truth, *extra)


@pytest.fixture()
def ev(work: Path) -> Path:
    write_truth(work / "gt.csv")
    write_pred(work / "p/predictions.csv")
    return work


def test_evaluate_good_files_with_byte_order_marks(ev: Path, capsys):
    write_truth(ev / "gt.csv", bom=True)
    write_pred(ev / "p/predictions.csv", bom=True)
    rc, err = evaluate(capsys)
    assert rc == 0 and "Traceback" not in err, err
    m = json.loads((ev / "p/metrics.json").read_text())
    assert m["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert m["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)


def test_evaluate_truth_with_an_unknown_class_column(ev: Path, capsys):
    """A column that is neither an ISIC class nor predicted (a typo) is refused, not silently left out."""
    write_truth(ev / "gt.csv", columns=("MEL", "NV", "BCC", "NEVI"),
                cases=[*CASES, ("ISIC_0000006", "NEVI", 0.2, 0.7, 0.1)])
    write_pred(ev / "p/predictions.csv", cases=[*CASES, ("ISIC_0000006", "NEVI", 0.2, 0.7, 0.1)])
    assert_user_error(*evaluate(capsys), "gt.csv",
                      r"^row 1, column NEVI: unknown class column \(neither an ISIC 2019 class nor a prediction "
                      r"column: MEL, NV, BCC\)$")
    assert not (ev / "p/metrics.json").exists()


def test_evaluate_truth_of_a_folder_per_class_model(ev: Path, capsys):
    """Class names of a folder-per-class model are known when they are the prediction columns."""
    rows = (ev / "p/predictions.csv").read_text().replace("image,MEL,NV,BCC", "image,melanoma,naevus,bcc")
    (ev / "p/predictions.csv").write_text(rows)
    truth = (ev / "gt.csv").read_text().splitlines()
    keep = [0, 1, 2]  # MEL, NV, BCC columns of ISIC
    lines = ["image,melanoma,naevus,bcc"] + [",".join([ln.split(",")[0]] + [ln.split(",")[1 + k] for k in keep])
                                             for ln in truth[1:]]
    (ev / "gt.csv").write_text("\n".join(lines) + "\n")
    rc, err = evaluate(capsys)
    assert rc == 0 and "Traceback" not in err, err
    assert json.loads((ev / "p/metrics.json").read_text())["classes"] == ["melanoma", "naevus", "bcc"]


def test_evaluate_predicted_image_missing_from_the_truth(ev: Path, capsys):
    write_pred(ev / "p/predictions.csv", cases=[*CASES, ("ISIC_0000404", "MEL", 0.2, 0.7, 0.1)])
    assert_user_error(*evaluate(capsys), "gt.csv",
                      r"^no row for image 'ISIC_0000404' \(predictions predictions.csv row 7\)$")


def test_evaluate_nan_probability(ev: Path, capsys):
    text = (ev / "p/predictions.csv").read_text().replace("ISIC_0000003,0.1,", "ISIC_0000003,nan,")
    (ev / "p/predictions.csv").write_text(text)
    assert_user_error(*evaluate(capsys), "p/predictions.csv", r"^row 4, column MEL: 'nan' is not a finite number$")


@pytest.mark.parametrize(("content", "problem"), [
    (b"", "empty"),
    (None, r"not UTF-8 text|not a CSV|cannot read"),  # a JPEG given as the predictions
])
def test_evaluate_predictions_not_a_table(ev: Path, capsys, content: bytes | None, problem: str):
    data = (ev / "images/good_0.jpg").read_bytes() if content is None else content
    (ev / "p/predictions.csv").write_bytes(data)
    assert_user_error(*evaluate(capsys), "p/predictions.csv", problem)


def test_evaluate_output_is_an_input(ev: Path, capsys):
    """The truth file named like an output, in the folder the outputs go to: refused, untouched."""
    (ev / "gt.csv").rename(ev / "p/metrics.json")
    before = (ev / "p/metrics.json").read_bytes()
    assert_user_error(*evaluate(capsys, "p", "p/metrics.json"), "p/metrics.json", "is also an input")
    assert (ev / "p/metrics.json").read_bytes() == before


def test_evaluate_output_folder_is_a_file(ev: Path, capsys):
    assert_user_error(*evaluate(capsys, "p", "gt.csv", "--out", "afile"), "afile", "is a file, not a folder")


# ----------------------------------------------------------------------------------------------
# train derm --config


def write_config(path: Path, data_dir: str | Path, out_dir: str = "run", **extra: object) -> Path:
    """A tiny, fast training config (32 px, random init, 1 + 1 steps, no worker processes)."""
    lines = [f"data_dir: {data_dir}", f"out_dir: {out_dir}", "pretrained: false", f"image_size: {SIZE_PX}",
             "warmup_steps: 1", "finetune_steps: 1", "eval_every: 1", "batch_size: 4", "num_workers: 0",
             "device: cpu"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def train(capsys: pytest.CaptureFixture, config: str = "c.yaml") -> tuple[int, str]:
    return cli(capsys, "train", "derm", "--config", config)


@pytest.fixture()
def isic(work: Path) -> Path:
    """An ISIC 2019-layout folder ``isic`` (3 classes x 4 images, 32 px) and a config ``c.yaml`` for it."""
    make_isic_folder(work / "isic", n_per_class=4, size_px=SIZE_PX)
    write_config(work / "c.yaml", "isic")
    return work / "isic"


def test_train_config_unknown_key(isic: Path, work: Path, capsys):
    write_config(work / "c.yaml", "isic", learning_rate=0.1)
    assert_user_error(*train(capsys), "c.yaml", r"^learning_rate: unknown key \(known keys: data_dir, out_dir, ")


def test_train_config_wrong_type(isic: Path, work: Path, capsys):
    write_config(work / "c.yaml", "isic", balance="often")
    assert_user_error(*train(capsys), "c.yaml", r"^balance: Input should be 'sampler' or 'loss_weights'")
    write_config(work / "c.yaml", "isic")
    (work / "c.yaml").write_text((work / "c.yaml").read_text().replace(f"image_size: {SIZE_PX}", "image_size: big"))
    assert_user_error(*train(capsys), "c.yaml", r"^image_size: Input should be a valid integer.*\(got 'big'\)$")


def test_train_config_data_dir_missing(work: Path, capsys):
    (work / "c.yaml").write_text("out_dir: run\n")
    assert_user_error(*train(capsys), "c.yaml", r"^data_dir: ")
    write_config(work / "c.yaml", "nowhere")
    assert_user_error(*train(capsys), "c.yaml", r"^data_dir: no such folder: nowhere$")
    (work / "flat").mkdir()
    write_config(work / "c.yaml", "flat")
    assert_user_error(*train(capsys), "c.yaml", r"^data_dir: flat is neither the ISIC 2019 layout")


def test_train_config_class_outside_isic(isic: Path, work: Path, capsys):
    write_config(work / "c.yaml", "isic", classes="MEL,XYZ")
    assert_user_error(*train(capsys), "c.yaml", r"^classes: unknown ISIC 2019 class XYZ")


def test_train_truth_with_an_unknown_class_column(isic: Path, capsys):
    gt = isic / "ISIC_2019_Training_GroundTruth.csv"
    gt.write_text(gt.read_text().replace(",VASC,", ",VASCULAR,", 1))
    assert_user_error(*train(capsys), "isic/ISIC_2019_Training_GroundTruth.csv",
                      r"^row 1, column 'VASCULAR': unknown class column")


def test_train_truth_with_nan(isic: Path, capsys):
    gt = isic / "ISIC_2019_Training_GroundTruth.csv"
    lines = gt.read_text().splitlines()
    lines[2] = lines[2].replace("0.0", "nan", 1)
    gt.write_text("\n".join(lines) + "\n")
    assert_user_error(*train(capsys), "isic/ISIC_2019_Training_GroundTruth.csv", r"^row 3, column \w+: 'nan' is not")


def test_train_image_listed_but_missing(isic: Path, capsys):
    (isic / "ISIC_2019_Training_Input/ISIC_0000005.jpg").unlink()
    assert_user_error(*train(capsys), "isic/ISIC_2019_Training_Input/ISIC_0000005.jpg",
                      r"^listed in ISIC_2019_Training_GroundTruth.csv \(image ISIC_0000005\) but missing$")


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_train_a_bad_training_image_is_named_before_training(isic: Path, work: Path, capsys, name: str):
    target = isic / "ISIC_2019_Training_Input/ISIC_0000005.jpg"
    target.write_bytes((work / "images" / name).read_bytes())
    assert_user_error(*train(capsys), "isic/ISIC_2019_Training_Input/ISIC_0000005.jpg", BAD_IMAGES[name])
    assert not (work / "run/model.pt").exists() and not (work / "run/last.pt").exists()


def test_train_csv_with_byte_order_marks_trains(work: Path, capsys):
    make_isic_folder(work / "isic", n_per_class=4, size_px=SIZE_PX, bom=True)
    write_config(work / "c.yaml", "isic")
    rc, err = train(capsys)
    assert rc == 0 and "Traceback" not in err, err
    from cadx.models.checkpoint import read_checkpoint

    assert read_checkpoint(work / "run/model.pt")["model"]["class_names"] == list(CLASSES)


def test_train_odd_encodings_are_training_images(work: Path, capsys):
    """Folder per class with a CMYK JPEG, a 16-bit PNG and an EXIF-rotated JPEG among the images: trains."""
    import shutil

    make_class_folders(work / "folders", n_per_class=3, size_px=SIZE_PX, classes=CLASSES)
    for name, cls in zip(ODD_IMAGES, CLASSES, strict=True):
        shutil.copy(work / "images" / name, work / "folders" / cls / name)
    write_config(work / "c.yaml", "folders", classes="MEL,NV,BCC")
    rc, err = train(capsys)
    assert rc == 0 and "Traceback" not in err, err
    with open(work / "run/split.csv", newline="") as fh:
        names = {row["image"] for row in csv.DictReader(fh)}
    assert {"cmyk", "deep16", "rotated"} <= names


def test_train_refuses_a_pickle_resume_file_before_any_work(isic: Path, work: Path, capsys):
    (work / "run").mkdir()
    planted_torch_pickle(work / "run/last.pt", work / "payload-ran")
    assert_user_error(*train(capsys), "run/last.pt", r"refused: it holds Python objects .* could run code")
    assert not (work / "payload-ran").exists()
    assert sorted(p.name for p in (work / "run").iterdir()) == ["last.pt"]  # no split.csv: refused first


def test_train_out_dir_is_a_file(isic: Path, work: Path, capsys):
    write_config(work / "c.yaml", "isic", out_dir="afile")
    assert_user_error(*train(capsys), "afile", "is a file, not a folder")
    assert (work / "afile").read_text() == "not a folder"


# ----------------------------------------------------------------------------------------------
# synth derm


@pytest.mark.parametrize(("classes", "problem"), [
    ("XYZ", r"^XYZ: not an ISIC 2019 class; choose from MEL, NV, BCC$"),
    ("MEL,AK", r"^AK: an ISIC class the synthetic generator does not draw; choose from MEL, NV, BCC$"),
    ("MEL,MEL", r"^expected distinct names from MEL, NV, BCC"),
])
def test_synth_classes_it_cannot_draw(work: Path, capsys, classes: str, problem: str):
    assert_user_error(*cli(capsys, "synth", "derm", "--out", "s", "--n", "3", "--classes", classes), "classes",
                      problem)
    assert not (work / "s").exists()


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_synth_image_count_must_be_positive(capsys, value: str):
    with pytest.raises(SystemExit) as exc:
        main(["synth", "derm", "--out", "s", "--n", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --n:" in err and repr(value) in err and "Traceback" not in err


def test_synth_output_folder_is_a_file(work: Path, capsys):
    assert_user_error(*cli(capsys, "synth", "derm", "--out", "afile", "--n", "2", "--size", "64"), "afile",
                      "is a file, not a folder")
    assert (work / "afile").read_text() == "not a folder"
