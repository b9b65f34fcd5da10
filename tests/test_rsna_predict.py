"""cadx predict ct: Kaggle submission, per-study max, bad files reported; round trip through evaluate."""

import csv
import json

import numpy as np
import pytest

from cadx.cli.main import main
from cadx.tasks.rsna_ich.evaluate import evaluate_ct
from cadx.tasks.rsna_ich.layout import SUBTYPES
from cadx.tasks.rsna_ich.predict import predict_ct
from cadx.tasks.rsna_ich.train import CtTrainConfig, train_ct

from .ct_data import make_rsna_folder


class MeanPredictor:
    """A stand-in model: probability of each label = mean input intensity of the middle slice / 255."""

    def __init__(self):
        from cadx.models.config import ModelConfig

        self.config = ModelConfig(architecture="fake", num_classes=6, in_chans=9, mean=(0.5,) * 9, std=(0.5,) * 9,
                                  class_names=SUBTYPES, activation="sigmoid")
        self.seen = []

    def predict(self, x):
        self.seen.append(x.shape)
        return np.repeat(x[..., 3:6].mean(axis=(1, 2, 3))[:, None] / 255.0, 6, axis=1).astype(np.float32)


META = {"ct_input": {"windows": [[40, 80], [80, 200], [600, 2800]], "context_slices": 1, "image_size": 16}}


def test_submission_and_study_max(tmp_path):
    root = make_rsna_folder(tmp_path / "rsna", patients=2, slices=3)
    files = sorted((root / "stage_2_train").glob("*.dcm"))
    bad = tmp_path / "ID_bad.dcm"
    bad.write_bytes(b"not dicom")
    pred = MeanPredictor()
    rep = predict_ct([*files, bad], pred, META, tmp_path / "out", batch_size=4)
    assert [p for p, _ in rep.failures] == [bad]
    assert pred.seen == [(4, 16, 16, 9), (2, 16, 16, 9)]
    lines = (tmp_path / "out" / "submission.csv").read_text().splitlines()
    assert lines[0] == "ID,Label" and len(lines) == 1 + 6 * 6
    assert {ln.split(",")[0].rsplit("_", 1)[0] for ln in lines[1:]} == {f.stem for f in files}
    rows = list(csv.DictReader((tmp_path / "out" / "studies.csv").read_text().splitlines()))
    assert [r["slices"] for r in rows] == ["3", "3"]
    patient_of = np.array([int(name[7:9], 16) for name in rep.image_ids])  # the fixture's id encodes the patient
    for r in rows:
        k = int(r["patient"].removeprefix("PAT_"))
        expected = rep.probs[patient_of == k].max(axis=0)
        assert [float(r[c]) for c in SUBTYPES] == pytest.approx(expected.tolist(), abs=1e-6)
        assert rep.probs[patient_of == k, 5].min() < expected[5]  # a max, not any one slice
    assert json.loads((tmp_path / "out" / "predict.json").read_text())["failures"][0][0] == str(bad)


def test_cli_train_predict_evaluate_round_trip(tmp_path, capsys):
    root = make_rsna_folder(tmp_path / "rsna", patients=4, slices=2)
    cfg = CtTrainConfig(data_dir=str(root), out_dir=str(tmp_path / "run"), pretrained=False, image_size=32,
                        batch_size=4, warmup_steps=1, finetune_steps=1, eval_every=2, num_workers=0, device="cpu")
    model = train_ct(cfg, show_progress=False)
    rc = main(["predict", "ct", str(root / "stage_2_train"), "--model", str(model), "--out", str(tmp_path / "p"),
               "--backend", "torch", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["studies"]) == 4 and out["failures"] == []
    m = evaluate_ct(tmp_path / "p", root)
    assert m["images"] == 8 and m["truth_images_not_predicted"] == 0
