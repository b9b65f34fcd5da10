"""The slide forest: exact predictions after a code-free round trip; pickles refused unread."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from cadx.errors import CadxError, CheckpointError, InputFileError
from cadx.inference.detections import FEATURE_NAMES
from cadx.tasks.camelyon16.slide_forest import (
    DEFAULT_NAME,
    SlideForest,
    fit_slide_forest,
    forest_scores,
    label_from_name,
    load_slide_forest,
    read_feature_table,
    save_slide_forest,
)

N_FEATURES = len(FEATURE_NAMES)


def _data(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features where tumour slides have a higher max probability (column 0), plus noise columns."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, N_FEATURES))
    x[:, 0] = 0.3 + 0.4 * y + 0.25 * rng.normal(size=n)
    return x, y


def _sklearn_forest(x, y, seed=0, n_trees=25):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=n_trees, random_state=seed, n_jobs=1).fit(x, y)


def test_forest_predicts_exactly_as_sklearn():
    x, y = _data()
    rf = _sklearn_forest(x, y)
    test = np.random.default_rng(1).normal(size=(200, N_FEATURES))
    test[:5] = x[:5]  # training rows land on exact leaves
    np.testing.assert_array_equal(SlideForest.from_sklearn(rf).predict_proba(test), rf.predict_proba(test))


def test_round_trip_gives_identical_scores(tmp_path):
    x, y = _data()
    rf = _sklearn_forest(x, y, n_trees=30)
    path = save_slide_forest(tmp_path / DEFAULT_NAME, rf)
    back = load_slide_forest(path)
    test = np.random.default_rng(2).normal(size=(300, N_FEATURES))
    np.testing.assert_array_equal(forest_scores(back, test), rf.predict_proba(test)[:, 1])
    assert json.loads(path.read_text())["format"] == "cadx-slide-forest"  # plain JSON, no code


def test_fit_separates_tumour_from_normal(tmp_path):
    x, y = _data(seed=3)
    forest = fit_slide_forest(x, y, seed=0, n_trees=50)
    assert isinstance(forest, SlideForest) and len(forest.trees) == 50
    scores = forest_scores(load_slide_forest(save_slide_forest(tmp_path / "f.json", forest)), x)
    assert scores[y == 1].min() > scores[y == 0].max()  # training slides perfectly ranked
    probe = np.zeros((2, N_FEATURES))
    probe[:, 0] = [0.0, 1.0]  # far below / far above the tumour threshold on max probability
    low, high = forest_scores(forest, probe)
    assert low < 0.5 < high


def test_fit_needs_both_classes():
    x, _ = _data(10)
    with pytest.raises(CadxError, match="tumour"):
        fit_slide_forest(x, np.ones(10, int))


class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("compress", [0, 3])
def test_crafted_joblib_file_is_refused_without_running_code(tmp_path, compress):
    import joblib

    marker = tmp_path / "pwned"
    path = tmp_path / "slide_forest.joblib"
    joblib.dump({"format": "cadx-slide-forest", "model": _Payload(marker)}, path, compress=compress)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused unread"):
        load_slide_forest(path)
    assert not marker.exists()
    # A plain pickle under a JSON name is recognised by its bytes, not its name.
    disguised = tmp_path / "forest.json"
    disguised.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    with pytest.raises(CheckpointError, match="refused unread"):
        load_slide_forest(disguised)
    assert not marker.exists()


def test_malformed_forest_files_are_clean_errors(tmp_path):
    x, y = _data()
    good = json.loads(save_slide_forest(tmp_path / "f.json", _sklearn_forest(x, y, n_trees=2)).read_text())

    def write(payload) -> str:
        p = tmp_path / "bad.json"
        p.write_text(json.dumps(payload))
        return str(p)

    with pytest.raises(CheckpointError, match="no such"):
        load_slide_forest(tmp_path / "missing.json")
    with pytest.raises(CheckpointError, match="not JSON"):
        (tmp_path / "t.json").write_text("{nope")
        load_slide_forest(tmp_path / "t.json")
    with pytest.raises(CheckpointError, match="made for features"):
        load_slide_forest(write({**good, "features": ["max"]}))
    loop = json.loads(json.dumps(good))
    loop["trees"][0]["children_left"][0] = 0  # a node that points at itself would never end
    with pytest.raises(CheckpointError, match="out of order"):
        load_slide_forest(write(loop))
    oob = json.loads(json.dumps(good))
    internal = oob["trees"][0]["children_left"].index(next(c for c in oob["trees"][0]["children_left"] if c > 0))
    oob["trees"][0]["feature"][internal] = N_FEATURES
    with pytest.raises(CheckpointError, match="feature out of range"):
        load_slide_forest(write(oob))


def test_feature_table_and_labels(tmp_path):
    header = "slide,score," + ",".join(FEATURE_NAMES)

    def row(name: str, v: float) -> str:
        return f"{name},{v}," + ",".join(str(v + i) for i in range(N_FEATURES))

    (tmp_path / "slide_scores.csv").write_text("\ufeff" + "\n".join([header, row("tumor_001", 0.9),
                                                                      row("normal_002", 0.1)]) + "\n")
    names, feats = read_feature_table(tmp_path)
    assert names == ["tumor_001", "normal_002"] and feats.shape == (2, N_FEATURES)
    assert feats[1, 2] == pytest.approx(2.1)
    assert [label_from_name(n) for n in names] == [1, 0]
    with pytest.raises(CadxError, match="reference.csv"):
        label_from_name("test_001")
    (tmp_path / "slide_scores.csv").write_text(header + "\n" + row("a", 0.5).replace("0.5,", "x,", 2) + "\n")
    with pytest.raises(InputFileError, match="row 2"):
        read_feature_table(tmp_path)
    with pytest.raises(InputFileError, match="no slide_scores.csv"):
        read_feature_table(tmp_path / "nowhere")
