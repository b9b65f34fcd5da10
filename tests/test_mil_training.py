"""MIL training: the planted-tile known answer, resume after a kill, cross-validation by slide."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cadx.datasets.bags import BagDataset
from cadx.errors import ConfigError
from cadx.metrics.classification import roc_auc
from cadx.models.checkpoint import load_checkpoint
from cadx.models.factory import create_model
from cadx.training.mil import MilFitSettings, bag_predict, cross_validate_bags, fit_mil
from tests.mil_data import one_thread, planted_bags  # noqa: F401 (fixture)


def _train_and_score(arch: str, n_train: int, epochs: int) -> tuple[float, float, dict]:
    train, _ = planted_bags(n_train, 0)
    val, _ = planted_bags(16, 1)
    test, planted = planted_bags(40, 2)
    torch.manual_seed(0)
    model = create_model(arch, kind="mil", in_chans=32)
    result = fit_mil(model, train, val, MilFitSettings(epochs=epochs, lr=1e-3, patience=None))
    preds = [bag_predict(model, test.features(i)) for i in range(len(test))]
    auc = roc_auc(test.labels, [p["probability"] for p in preds])
    found = np.mean([np.argmax(p["attention"]) == planted[i] for i, p in enumerate(preds) if test.labels[i] == 1])
    return auc, float(found), result


# Max pooling learns only through the top tile of each bag: it needs more bags than attention does
# (with fewer it memorises noise tiles on some seeds).
@pytest.mark.parametrize(("arch", "n_train", "epochs"), [("abmil", 120, 5), ("maxmil", 300, 4)])
def test_attention_finds_the_planted_tile_that_decides_the_label(one_thread, arch, n_train, epochs):  # noqa: F811
    auc, found, result = _train_and_score(arch, n_train, epochs)
    assert auc > 0.95, (auc, result.best)
    assert found >= 0.9, found  # the planted tile gets the most attention in >= 90 % of tumour bags
    assert [h["epoch"] for h in result.history] == list(range(1, epochs + 1))
    assert {"val_loss", "val_auc"} <= set(result.best)


def _resume_setup(n_bags: int = 12):
    bags, _ = planted_bags(n_bags, 3, dim=8, tiles=(4, 9))
    val, _ = planted_bags(6, 4, dim=8, tiles=(4, 9))
    torch.manual_seed(5)
    model = create_model("abmil", kind="mil", in_chans=8)
    return model, bags, val, MilFitSettings(epochs=3, lr=1e-3, patience=None, seed=2)


class _Killed(Exception):
    pass


def test_resume_after_a_kill_gives_the_uninterrupted_result(one_thread, tmp_path):  # noqa: F811
    model, bags, val, settings = _resume_setup()
    straight = fit_mil(model, bags, val, settings, out_dir=tmp_path / "straight")
    want = {k: v.clone() for k, v in model.state_dict().items()}

    def kill_at_step_17(step, total, metrics):
        assert total == 36
        if step == 17:  # one step after the saved end of epoch 1
            raise _Killed

    model, bags, val, settings = _resume_setup()
    with pytest.raises(_Killed):
        fit_mil(model, bags, val, settings, out_dir=tmp_path / "cut", progress=kill_at_step_17)
    model, bags, val, settings = _resume_setup()  # a new process rebuilds everything
    steps = []
    resumed = fit_mil(model, bags, val, settings, out_dir=tmp_path / "cut", progress=lambda s, t, m: steps.append(s))
    assert steps == list(range(13, 37))
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in straight.history]
    for k, v in model.state_dict().items():
        assert torch.equal(v, want[k]), k


def test_without_validation_the_last_epoch_is_kept_and_bad_settings_fail(one_thread):  # noqa: F811
    model, bags, _, settings = _resume_setup(8)
    result = fit_mil(model, bags, None, settings)
    assert result.best["epoch"] == 3 and not result.stopped_early
    one_class = BagDataset.from_arrays([np.ones((2, 8), np.float32)] * 2, [0, 0], ["a", "b"])
    with pytest.raises(ConfigError, match="both classes"):
        fit_mil(model, bags, one_class, MilFitSettings(monitor="val_auc"))
    with pytest.raises(ConfigError, match="no training bags"):
        fit_mil(model, bags.subset([]), None, settings)
    with pytest.raises(ConfigError, match="instance_weight"):
        MilFitSettings(instance_weight=1.5)


def test_cross_validation_scores_every_slide_once_with_a_model_that_never_saw_it(one_thread, tmp_path):  # noqa: F811
    bags, _ = planted_bags(24, 5, dim=8, tiles=(4, 9))
    settings = MilFitSettings(epochs=2, lr=1e-3, patience=None)
    folds = []
    cv = cross_validate_bags(bags, folds=3, seed=1, settings=settings, out_dir=tmp_path,
                             progress=lambda s, t, m: folds.append(m["fold"]))
    assert sorted(set(folds)) == [0, 1, 2] and len(cv.per_fold) == 3
    assert set(cv.oof) == set(bags.names)
    for f in cv.per_fold:
        ckpt, meta = load_checkpoint(f["checkpoint"])
        slides = meta["slides"]
        assert meta["fold"] == f["fold"] and meta["model"]["kind"] == "mil"
        assert not set(slides["test"]) & (set(slides["train"]) | set(slides["val"]))
        assert len(slides["test"]) == f["n_test"] == 8 and len(slides["val"]) == f["n_val"] == 2
        assert {cv.oof[s]["fold"] for s in slides["test"]} == {f["fold"]}
        s = slides["test"][0]
        again = bag_predict(ckpt, bags.features(bags.names.index(s)))
        assert again["probability"] == pytest.approx(cv.oof[s]["probability"], abs=1e-6)
        assert cv.oof[s]["attention"].shape == (len(bags.features(bags.names.index(s))),)
    aucs = [f["auc"] for f in cv.per_fold]
    assert cv.mean["auc"] == pytest.approx(np.mean(aucs)) and cv.sd["auc"] == pytest.approx(np.std(aucs, ddof=1))
    summary = cv.summary()
    assert set(summary["oof"]) == set(bags.names) and isinstance(summary["per_fold"][0]["checkpoint"], str)
    # A rerun into the same folder resumes each finished fold (nothing retrained) and scores the same.
    steps = []
    again = cross_validate_bags(bags, folds=3, seed=1, settings=settings, out_dir=tmp_path,
                                progress=lambda s, t, m: steps.append(s))
    assert steps == [] and again.mean == cv.mean
    with pytest.raises(ConfigError, match="at least 13 slides"):
        cross_validate_bags(bags, folds=13, settings=settings)
