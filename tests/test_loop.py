"""The generic training loop: known answers on synthetic tensors, resume, early stopping, progress."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from cadx.errors import CheckpointError
from cadx.training.loop import Phase, fit


def _loader(x, y, batch_size, seed):
    """A seeded shuffling loader as a factory of the batches from a given step on."""
    def batches(start):
        g = torch.Generator().manual_seed(seed)
        step = 0
        while True:
            order = torch.randperm(len(x), generator=g)
            for i in range(0, len(x) - batch_size + 1, batch_size):
                if step >= start:
                    idx = order[i:i + batch_size]
                    yield x[idx], y[idx]
                step += 1
    return batches


def _blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 2)) + np.where(y[:, None] == 1, 1.5, -1.5)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def test_binary_classifier_reaches_known_auc(tmp_path):
    torch.manual_seed(0)
    x, y = _blobs(400, 0)
    xv, yv = _blobs(200, 1)
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))

    @torch.no_grad()
    def evaluate():
        p = torch.softmax(model(xv), 1)[:, 1].numpy()
        return {"auc": roc_auc_score(yv.numpy(), p)}

    result = fit(model, [Phase("train", 60, 0.05)], loss_fn=torch.nn.CrossEntropyLoss(),
                 batches=_loader(x, y, 32, 0), evaluate=evaluate, monitor="auc", eval_every=20)
    assert result.steps == 60 and [h["step"] for h in result.history] == [20, 40, 60]
    assert result.best["auc"] > 0.95  # the blobs are 3 sd apart: AUC about 0.98
    assert isinstance(result.best["auc"], float)  # numpy scalars made plain
    assert evaluate()["auc"] == pytest.approx(result.best["auc"])  # the model holds the best weights


def test_multilabel_classifier_with_bce():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(600, 3)), dtype=torch.float32)
    y = (x > 0).float()  # label k present when feature k is positive
    xv, yv = x[400:], y[400:]
    x, y = x[:400], y[:400]
    model = torch.nn.Linear(3, 3)

    def evaluate():
        p = torch.sigmoid(model(xv)).numpy()
        return {"min_auc": min(roc_auc_score(yv[:, k].numpy(), p[:, k]) for k in range(3))}

    result = fit(model, [Phase("train", 80, 0.05)], loss_fn=torch.nn.BCEWithLogitsLoss(),
                 batches=_loader(x, y, 32, 1), evaluate=evaluate, monitor="min_auc", eval_every=40)
    assert result.best["min_auc"] > 0.98


def test_regression_recovers_the_weights():
    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    w_true = np.array([2.0, -1.0, 0.5], np.float32)
    xn = rng.normal(size=(512, 3)).astype(np.float32)
    x, y = torch.tensor(xn), torch.tensor(xn @ w_true + 0.3)[:, None]
    model = torch.nn.Linear(3, 1)

    def evaluate():
        return {"mse": float(torch.nn.functional.mse_loss(model(x), y))}

    result = fit(model, [Phase("train", 200, 0.1)], loss_fn=torch.nn.MSELoss(), batches=_loader(x, y, 64, 2),
                 evaluate=evaluate, monitor="mse", mode="min", eval_every=50, min_delta=0.0)
    np.testing.assert_allclose(model.weight.detach().numpy()[0], w_true, atol=0.02)
    assert model.bias.item() == pytest.approx(0.3, abs=0.02)
    assert result.best["mse"] < 1e-3 and result.best["step"] == 200


class _Stop(Exception):
    pass


def _resume_setup(tmp_path, *, factory=True):
    torch.manual_seed(5)
    x, y = _blobs(256, 3)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(16, 2))
    phases = [Phase("head", 6, 0.05, trainable=lambda m: list(m[3].parameters())),
              Phase("all", 10, 0.02, weight_decay=0.01)]
    batches = _loader(x, y, 16, 4) if factory else list(zip(x.split(16), y.split(16), strict=True))

    def evaluate():
        return {"acc": float((model(x).argmax(1) == y).float().mean())}

    kw = {"loss_fn": torch.nn.CrossEntropyLoss(), "batches": batches, "evaluate": evaluate, "monitor": "acc",
          "eval_every": 4, "patience": None, "out_dir": tmp_path, "seed": 11}
    return model, phases, kw


@pytest.mark.parametrize("factory", [True, False])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, factory):
    model, phases, kw = _resume_setup(tmp_path / "straight", factory=factory)
    straight = fit(model, phases, **kw)
    want = {k: v.clone() for k, v in model.state_dict().items()}

    def stop_after_9(step, total, metrics):
        assert total == 16
        if step == 9:  # after the evaluation at step 8 (saved) and one more step (lost)
            raise _Stop

    model, phases, kw = _resume_setup(tmp_path / "cut", factory=factory)
    with pytest.raises(_Stop):
        fit(model, phases, on_step=stop_after_9, **kw)
    model, phases, kw = _resume_setup(tmp_path / "cut", factory=factory)  # a fresh process would rebuild all
    steps = []
    resumed = fit(model, phases, on_step=lambda s, t, m: steps.append(s), **kw)
    assert steps == list(range(9, 17))  # continues at step 9 (index 8): the step after the saved evaluation
    assert resumed.steps == straight.steps == 16
    assert [(h["step"], h["phase"]) for h in resumed.history] == [(4, "head"), (8, "all"), (12, "all"), (16, "all")]
    assert [h["acc"] for h in resumed.history] == [h["acc"] for h in straight.history]
    for k, v in model.state_dict().items():  # the best weights
        assert torch.equal(v, want[k]), k
    last_straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["model"]
    last_cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    for k, v in last_cut.items():  # the weights after the last step
        assert torch.equal(v, last_straight[k]), k
    # The resume file holds plain types only and loads weights-only; a finished run does not train again.
    state = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert state["step"] == 16 and len(state["history"]) == 4
    # Evaluations without gain: those after the best one, the same count as in the uninterrupted run.
    best_at = [h["step"] for h in state["history"]].index(state["best_entry"]["step"])
    assert state["bad_evals"] == len(state["history"]) - 1 - best_at
    assert state["bad_evals"] == torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["bad_evals"]
    assert state["best_entry"]["step"] == straight.best["step"] == resumed.best["step"]
    model, phases, kw = _resume_setup(tmp_path / "cut", factory=factory)
    assert fit(model, phases, on_step=lambda *a: pytest.fail("trained again"), **kw).steps == 16


def test_no_resume_without_out_dir_or_when_disabled(tmp_path):
    model, phases, kw = _resume_setup(tmp_path)
    fit(model, phases, **kw)
    model, phases, kw = _resume_setup(tmp_path)
    steps = []
    fit(model, phases, on_step=lambda s, t, m: steps.append(s), **{**kw, "resume": False})
    assert steps == list(range(1, 17))


def test_a_foreign_resume_file_is_refused(tmp_path):
    model, phases, kw = _resume_setup(tmp_path)
    torch.save({"step": 3}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="not a cadx resume file"):
        fit(model, phases, **kw)
    marker = tmp_path / "ran"
    torch.save(_Payload(str(marker)), tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="not a readable resume file"):
        fit(model, phases, **kw)
    assert not marker.exists()  # the pickle payload never ran
    (tmp_path / "last.pt").unlink()
    fit(model, phases, **kw)
    model, _, kw = _resume_setup(tmp_path)
    with pytest.raises(CheckpointError, match="written for phases"):
        fit(model, [Phase("other", 3, 0.1)], **kw)


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_early_stopping_and_best_weights():
    model = torch.nn.Linear(1, 1)
    x, y = torch.ones(4, 1), torch.zeros(4, 1)
    scores = iter([0.5, 0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4])
    seen = {}

    def evaluate():
        seen[len(seen) + 1] = model.weight.detach().clone()
        return {"score": next(scores)}

    phases = [Phase("warm", 4, 0.1, stop_early=False), Phase("main", 20, 0.1)]
    result = fit(model, phases, loss_fn=torch.nn.MSELoss(), batches=[(x, y)], evaluate=evaluate, monitor="score",
                 eval_every=1, patience=2)
    # 0.9 at step 2; steps 3 and 4 bring no gain but belong to a phase that may not stop; step 5 is the
    # third evaluation without gain in a row and the first allowed to stop.
    assert result.stopped_early and result.steps == 5
    assert result.best["step"] == 2 and result.best["score"] == 0.9
    assert torch.equal(model.weight.detach(), seen[2])


def test_batchnorm_eval_keeps_running_statistics():
    x, y = torch.randn(32, 3) + 5, torch.randn(32, 1)

    def run(bn_eval):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 1))
        fit(model, [Phase("p", 3, 0.01)], loss_fn=torch.nn.MSELoss(), batches=[(x, y)], evaluate=lambda: {"m": 0.0},
            monitor="m", eval_every=3, batchnorm_eval=bn_eval)
        return model[0].running_mean

    assert torch.equal(run(True), torch.zeros(3))
    # Three training steps on the same batch with momentum 0.1: 1 - 0.9 ** 3 of the way to its mean (about 5).
    torch.testing.assert_close(run(False), x.mean(0) * (1 - 0.9**3))


def test_progress_callback_and_cosine_schedule():
    model = torch.nn.Linear(1, 1)
    calls = []
    fit(model, [Phase("a", 4, 1.0), Phase("b", 2, 0.5)], loss_fn=torch.nn.MSELoss(),
        batches=[(torch.ones(2, 1), torch.ones(2, 1))], evaluate=lambda: {"m": 1.0}, monitor="m", eval_every=3,
        on_step=lambda s, t, m: calls.append((s, t, m["phase"], round(m["lr"], 6), "m" in m)))
    assert calls == [(1, 6, "a", 1.0, False), (2, 6, "a", 0.853553, False), (3, 6, "a", 0.5, True),
                     (4, 6, "a", 0.146447, False), (5, 6, "b", 0.5, False), (6, 6, "b", 0.25, True)]
