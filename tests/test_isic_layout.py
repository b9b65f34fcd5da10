"""Reading the ISIC 2019 layout and the folder-per-class layout; every CSV problem named."""

from __future__ import annotations

import pytest

from cadx.errors import ConfigError, InputFileError
from cadx.tasks.isic2019.layout import (
    DIAGNOSTIC_CLASSES,
    read_class_folders,
    read_derm_data,
    read_ground_truth,
    read_isic_layout,
)

from .derm_data import make_class_folders, make_isic_folder


@pytest.fixture()
def isic(tmp_path):
    return make_isic_folder(tmp_path / "isic", n_per_class=3, size_px=16, revisit_every=2)


def test_isic_layout_labels_order_and_lesion_ids(isic):
    data = read_isic_layout(isic)
    assert data.class_names == ("MEL", "NV", "BCC")
    assert data.counts() == {"MEL": 3, "NV": 3, "BCC": 3}
    assert data.names[:3] == ("ISIC_0000000", "ISIC_0000001", "ISIC_0000002")
    assert data.labels == (0, 0, 0, 1, 1, 1, 2, 2, 2)
    assert data.paths[0] == isic / "ISIC_2019_Training_Input" / "ISIC_0000000.jpg"
    # lesion 2 was photographed twice (images 1 and 2)
    assert data.lesions[:3] == ("IL_0000001", "IL_0000002", "IL_0000002")
    assert len(set(data.lesions)) == 6


def test_class_subset_reorders_and_drops_other_classes(isic):
    data = read_isic_layout(isic, classes="NV,MEL")
    assert data.class_names == ("NV", "MEL") and len(data) == 6
    assert data.labels == (1, 1, 1, 0, 0, 0)


def test_all_means_the_eight_diagnostic_classes(tmp_path):
    root = make_isic_folder(tmp_path / "all", n_per_class=1, size_px=8, classes=DIAGNOSTIC_CLASSES)
    data = read_derm_data(root, classes="all")
    assert data.class_names == DIAGNOSTIC_CLASSES and data.labels == tuple(range(8))
    with pytest.raises(InputFileError, match="no images of class AK"):
        read_derm_data(make_isic_folder(tmp_path / "three", n_per_class=1, size_px=8), classes="all")


def test_unknown_or_unk_class_is_a_config_error(isic):
    with pytest.raises(ConfigError, match="unknown ISIC 2019 class XYZ"):
        read_isic_layout(isic, classes="MEL,XYZ")
    with pytest.raises(ConfigError, match="UNK"):
        read_isic_layout(isic, classes="MEL,UNK")
    with pytest.raises(ConfigError, match="at least two"):
        read_isic_layout(isic, classes="MEL")


def test_missing_image_is_named(isic):
    gone = isic / "ISIC_2019_Training_Input" / "ISIC_0000004.jpg"
    gone.unlink()
    with pytest.raises(InputFileError) as exc:
        read_isic_layout(isic)
    assert str(exc.value).startswith(str(gone)) and "listed in ISIC_2019_Training_GroundTruth.csv" in str(exc.value)
    assert len(read_isic_layout(isic, classes="MEL,BCC")) == 6  # an unused missing image does not matter


def test_unknown_class_column_names_file_row_and_column(isic):
    gt = isic / "ISIC_2019_Training_GroundTruth.csv"
    gt.write_text(gt.read_text().replace("SCC", "XYZ", 1))
    with pytest.raises(InputFileError, match=r"GroundTruth.csv: row 1, column 'XYZ': unknown class column"):
        read_isic_layout(isic)


def test_byte_order_mark_is_accepted(tmp_path):
    root = make_isic_folder(tmp_path / "bom", n_per_class=2, size_px=8, bom=True)
    assert (root / "ISIC_2019_Training_GroundTruth.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
    data = read_isic_layout(root)
    assert len(data) == 6 and data.lesions[0] == "IL_0000001"


@pytest.mark.parametrize(("row", "match"), [
    ("ISIC_9,1.0,1.0,0.0", r"row 3: ISIC_9 is not one-hot"),
    ("ISIC_9,0.0,0.0,0.0", r"row 3: ISIC_9 is not one-hot"),
    ("ISIC_9,x,1.0,0.0", r"row 3, column MEL: 'x' is not a number"),
    ("ISIC_9,1.0,0.0", r"row 3: 3 cells, expected 4"),
    ("ISIC_1,1.0,0.0,0.0", r"row 3, column image: ISIC_1 appears twice \(first in row 2\)"),
])
def test_bad_rows_are_named(tmp_path, row, match):
    p = tmp_path / "gt.csv"
    p.write_text(f"image,MEL,NV,BCC\nISIC_1,0.0,1.0,0.0\n{row}\n")
    with pytest.raises(InputFileError, match=match):
        read_ground_truth(p)


def test_first_column_must_be_image(tmp_path):
    p = tmp_path / "gt.csv"
    p.write_text("name,MEL,NV\n")
    with pytest.raises(InputFileError, match="first column must be 'image'"):
        read_ground_truth(p)


def test_without_metadata_each_image_is_its_own_lesion(isic):
    (isic / "ISIC_2019_Training_Metadata.csv").unlink()
    data = read_isic_layout(isic)
    assert data.lesions == data.names


def test_metadata_without_lesion_id_column(isic):
    (isic / "ISIC_2019_Training_Metadata.csv").write_text("image,age_approx\nISIC_0000000,30\n")
    with pytest.raises(InputFileError, match="no 'lesion_id' column"):
        read_isic_layout(isic)


def test_folder_per_class(tmp_path):
    root = make_class_folders(tmp_path / "f", n_per_class=2, classes=("MEL", "NV", "BCC"))
    data = read_derm_data(root, classes="all")
    assert data.class_names == ("BCC", "MEL", "NV") and data.labels == (0, 0, 1, 1, 2, 2)
    assert data.names[:2] == ("img_0", "img_1") and len(set(data.lesions)) == 6
    subset = read_class_folders(root, classes=["NV", "MEL"])
    assert subset.class_names == ("NV", "MEL") and subset.labels == (0, 0, 1, 1)
    with pytest.raises(InputFileError, match="no such class folder"):
        read_class_folders(root, classes="MEL,SCC")
    (root / "empty").mkdir()
    with pytest.raises(InputFileError, match="no images of class empty"):
        read_class_folders(root, classes="MEL,empty")
