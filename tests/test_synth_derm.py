"""cadx.synth.derm: the ISIC 2019 layout exactly, revisits, determinism, and an honest difficulty."""

from __future__ import annotations

import csv
import re
from collections import Counter

import numpy as np
import pytest

from cadx.errors import ConfigError
from cadx.io.images import read_rgb
from cadx.synth.derm import (
    GROUND_TRUTH_CSV,
    IMAGE_DIR,
    ISIC_CLASSES,
    METADATA_CSV,
    generate_derm,
)
from cadx.synth.derm_render import LOOKS


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("derm")
    return out, generate_derm(out, n=12, seed=5, size_px=96, revisit_fraction=0.5)


def test_files_and_csv_layout_exact(small):
    out, records = small
    assert sorted(p.name for p in out.iterdir()) == sorted([IMAGE_DIR, GROUND_TRUTH_CSV, METADATA_CSV])
    names = sorted(p.name for p in (out / IMAGE_DIR).iterdir())
    assert names == [f"ISIC_{i:07d}.jpg" for i in range(12)]
    gt = _rows(out / GROUND_TRUTH_CSV)
    assert gt[0] == ["image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    assert [r[0] for r in gt[1:]] == [n[:-4] for n in names]
    for row, rec in zip(gt[1:], records, strict=True):
        assert sorted(row[1:]) == ["0.0"] * 8 + ["1.0"]  # one-hot, ISIC's float spelling
        assert gt[0][row.index("1.0")] == rec.diagnosis
    md = _rows(out / METADATA_CSV)
    assert md[0] == ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"]
    assert [r[0] for r in md[1:]] == [r[0] for r in gt[1:]]
    sites = {"anterior torso", "posterior torso", "upper extremity", "lower extremity", "head/neck", ""}
    for _image, age, site, lesion_id, sex in md[1:]:
        assert site in sites
        assert re.fullmatch(r"HAM_\d{7}", lesion_id)
        assert age == "" or (re.fullmatch(r"\d+\.0", age) and float(age) % 5 == 0)
        assert sex in ("male", "female", "")
    assert (out / GROUND_TRUTH_CSV).read_bytes().endswith(b"0.0\n")


def test_images_are_rgb_jpegs_of_the_two_shapes(small):
    out, records = small
    shapes = set()
    for rec in records:
        img = read_rgb(rec.path)
        shapes.add(img.shape)
        if img.shape[0] == img.shape[1]:  # dermoscope photographs: black corners
            assert img[:4, :4].mean() < 20 and img[40:56, 40:56].mean() > 60
    assert shapes <= {(96, 96, 3), (72, 96, 3)}


def test_revisits_share_lesion_id_and_metadata_but_differ(small):
    out, records = small
    counts = Counter(r.lesion_id for r in records)
    assert sorted(counts.values()) == [1] * 4 + [2] * 4  # 8 lesions (ceil(12 / 1.5)), 4 photographed twice
    md = {row[0]: row[1:] for row in _rows(out / METADATA_CSV)[1:]}
    for lesion_id, k in counts.items():
        if k != 2:
            continue
        a, b = sorted((r for r in records if r.lesion_id == lesion_id), key=lambda r: r.view)
        assert (a.view, b.view) == (0, 1)
        assert a.diagnosis == b.diagnosis and a.look == b.look and a.strength == b.strength
        assert md[a.image] == md[b.image]
        pa, pb = read_rgb(a.path), read_rgb(b.path)
        assert pa.shape != pb.shape or np.abs(pa.astype(int) - pb).mean() > 3


def test_deterministic_by_seed(tmp_path):
    a = generate_derm(tmp_path / "a", n=5, seed=11, size_px=80)
    b = generate_derm(tmp_path / "b", n=5, seed=11, size_px=80)
    c = generate_derm(tmp_path / "c", n=5, seed=12, size_px=80)
    for name in (GROUND_TRUTH_CSV, METADATA_CSV):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert [r.path.read_bytes() for r in a] == [r.path.read_bytes() for r in b]
    assert [r.path.read_bytes() for r in a] != [r.path.read_bytes() for r in c]


def test_class_subset_balanced_and_errors(tmp_path):
    records = generate_derm(tmp_path, n=9, seed=0, classes=("nv", "MEL"), size_px=64, revisit_fraction=0.0)
    per_class = Counter(r.diagnosis for r in records)
    assert set(per_class) == {"MEL", "NV"} and abs(per_class["MEL"] - per_class["NV"]) <= 1
    assert len(_rows(tmp_path / GROUND_TRUTH_CSV)[0]) == 1 + len(ISIC_CLASSES)
    assert {r.look for r in records} <= set(LOOKS)
    with pytest.raises(ConfigError, match="AK: an ISIC class the synthetic generator does not draw"):
        generate_derm(tmp_path, n=3, classes=("MEL", "AK"))
    with pytest.raises(ConfigError, match="XYZ: not an ISIC 2019 class"):
        generate_derm(tmp_path, n=3, classes="MEL,XYZ")
    with pytest.raises(ConfigError, match="distinct"):
        generate_derm(tmp_path, n=3, classes=("MEL", "MEL"))
    with pytest.raises(ConfigError, match="n: expected at least 1"):
        generate_derm(tmp_path, n=0)
    with pytest.raises(ConfigError, match="revisit_fraction"):
        generate_derm(tmp_path, n=3, revisit_fraction=1.5)


def _colour_histogram(img: np.ndarray) -> np.ndarray:
    from cadx.preprocessing.colour import shades_of_gray

    q = (shades_of_gray(img) // 64).reshape(-1, 3).astype(int)
    return np.sqrt(np.bincount(q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2], minlength=64) / len(q))


def test_classes_separable_but_not_trivially(tmp_path):
    """Colour histograms + logistic regression, cross-validated by lesion: far above chance, not perfect."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    records = generate_derm(tmp_path, n=150, seed=0, size_px=128)
    x = np.stack([_colour_histogram(read_rgb(r.path)) for r in records])
    y = np.array([r.diagnosis for r in records])
    groups = np.array([r.lesion_id for r in records])
    pred = cross_val_predict(LogisticRegression(C=10, max_iter=3000), x, y, groups=groups, cv=GroupKFold(4))
    bacc = balanced_accuracy_score(y, pred)
    assert 0.65 <= bacc <= 0.95, bacc
    # Atypical naevi and light melanomas are drawn alike: together they are near chance.
    shared = np.array([r.look == "atypical" for r in records])
    assert shared.sum() >= 8
    assert set(y[shared]) == {"MEL", "NV"}
    assert np.mean(pred[shared] == y[shared]) < 0.75


def test_cli_synth_derm(tmp_path, capsys):
    from cadx.cli.main import main

    assert main(["synth", "derm", "--out", str(tmp_path), "--n", "4", "--seed", "2", "--size", "64",
                 "--classes", "MEL,NV"]) == 0
    out = capsys.readouterr().out
    assert "wrote 4 images" in out and "MEL 2, NV 2" in out
    assert len(_rows(tmp_path / GROUND_TRUTH_CSV)) == 5


def test_first_id_gives_disjoint_images_and_lesions(tmp_path):
    from cadx.synth.derm import generate_derm

    a = generate_derm(tmp_path / "a", n=6, seed=3, size_px=96)
    b = generate_derm(tmp_path / "b", n=6, seed=4, size_px=96, first_id=6)
    assert [r.image for r in b] == [f"ISIC_{k:07d}" for k in range(6, 12)]
    assert not {r.lesion_id for r in a} & {r.lesion_id for r in b}
    assert {r.lesion_id for r in a} <= {f"HAM_{k:07d}" for k in range(6)}
