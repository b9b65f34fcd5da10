"""RSNA 2019 layout: the long-format labels, header identity, patient split."""

import numpy as np
import pytest

from cadx.errors import ConfigError, InputFileError
from cadx.tasks.rsna_ich.layout import SUBTYPES, patient_split, read_long_csv, read_rsna_data

from .ct_data import make_rsna_folder


def _write(tmp_path, lines):
    p = tmp_path / "labels.csv"
    p.write_text("\n".join(["ID,Label", *lines]) + "\n")
    return p


def _image(name, values):
    return [f"{name}_{s},{v}" for s, v in zip(SUBTYPES, values, strict=True)]


def test_pivot_drops_duplicates_and_keeps_order(tmp_path):
    a = _image("ID_aa", [0, 1, 0, 0, 0, 1])
    b = _image("ID_bb", [0, 0, 0, 0, 0, 0])
    p = _write(tmp_path, [*a, a[1], *reversed(b), b[5]])
    t = read_long_csv(p)
    assert t.image_ids == ["ID_aa", "ID_bb"]
    assert t.values.tolist() == [[0, 1, 0, 0, 0, 1], [0] * 6]
    assert t.duplicates == 2 and t.rows == [2, 9]


@pytest.mark.parametrize("lines,message", [
    (["aa_epidural,0"], "row 2, column ID: 'aa_epidural' is not ID_<image>_<subtype>"),
    (["ID_aa_bleed,0"], "row 2, column ID: unknown subtype 'bleed'"),
    (["ID_aa_epidural,2"], "row 2, column Label: '2' is not 0 or 1"),
    (["ID_aa_epidural,x"], "row 2, column Label: 'x' is not a number"),
    ([*_image("ID_aa", [0] * 6), "ID_aa_any,1"], "row 8, column Label: ID_aa_any is 1 here but 0 on row 7"),
    (_image("ID_aa", [0] * 6)[:4], "row 2: image ID_aa has no row for subdural, any"),
    ([], "no labels rows"),
])
def test_bad_rows_named(tmp_path, lines, message):
    with pytest.raises(InputFileError, match=message.replace("(", r"\(").replace("[", r"\[")) as exc:
        read_long_csv(_write(tmp_path, lines))
    assert "labels.csv" in str(exc.value)


def test_bad_header(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("image,MEL\nID_a_any,1\n")
    with pytest.raises(InputFileError, match="row 1: header 'image,MEL'"):
        read_long_csv(p)


def test_probabilities_when_not_binary(tmp_path):
    p = _write(tmp_path, _image("ID_aa", [0.1, 0.2, 0.3, 0.4, 0.5, 0.95]))
    assert read_long_csv(p, binary=False).values[0, 5] == 0.95
    with pytest.raises(InputFileError, match="is not 0 or 1"):
        read_long_csv(p)


def test_read_folder_header_identity(tmp_path):
    root = make_rsna_folder(tmp_path / "rsna", patients=3, slices=3, studies_per_patient=2)
    data = read_rsna_data(root)
    assert len(data) == 18
    assert sorted(set(data.patients)) == ["PAT_000", "PAT_001", "PAT_002"]
    assert len(set(data.studies)) == 6
    i = data.image_ids.index(data.paths[0].stem)
    assert i == 0 and data.paths[0].name.startswith("ID_")
    # patient 1 has bleeds on every slice, patient 0 none
    p = np.array(data.patients)
    assert data.labels[p == "PAT_001", 5].tolist() == [1] * 6
    assert data.labels[p == "PAT_000"].sum() == 0
    assert sorted(set(data.z_mm.tolist())) == [0.0, 5.0, 10.0]


def test_listed_image_without_file(tmp_path):
    root = make_rsna_folder(tmp_path / "rsna", patients=2, slices=2)
    victim = sorted((root / "stage_2_train").glob("*.dcm"))[1]
    victim.unlink()
    with pytest.raises(InputFileError, match=f"{victim.name}: listed on row .* no such file"):
        read_rsna_data(root)


def test_patient_split_no_patient_on_both_sides():
    rng = np.random.default_rng(0)
    groups = [f"P{i // 5}" for i in range(200)]  # 40 patients, 5 slices each
    y = np.zeros((200, 6), np.uint8)
    for i in range(200):
        if (i // 5) % 2:
            y[i, rng.integers(5)] = 1
            y[i, 5] = 1
    tr, va = patient_split(y, groups, val_fraction=0.25, seed=3)
    g = np.array(groups)
    assert not set(g[tr]) & set(g[va])
    assert len(tr) + len(va) == 200 and len(set(g[va])) == 10
    # stratified: about half the validation patients have a bleed, as overall
    assert 4 <= len(set(g[va][y[va, 5] == 1])) <= 6
    tr2, va2 = patient_split(y, groups, val_fraction=0.25, seed=3)
    assert np.array_equal(va, va2)


def test_patient_split_needs_two_patients():
    with pytest.raises(ConfigError, match="two or more patients"):
        patient_split(np.zeros((3, 6)), ["a", "a", "a"])
