"""CSV readers: every bad cell is an InputFileError naming the file, row and column."""

from __future__ import annotations

import numpy as np
import pytest

from cadx.errors import InputFileError
from cadx.io.annotations import Detection
from cadx.io.tables import read_detections_csv, read_reference, read_slide_scores, write_detections_csv


def _write(tmp_path, name, text, *, bom=False):
    p = tmp_path / name
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return p


def test_detections_round_trip_in_the_challenge_format(tmp_path):
    dets = [Detection(0.9, 1200.0, 3400.5), Detection(0.25, 10.0, 20.0)]
    path = write_detections_csv(tmp_path / "test_001.csv", dets)
    assert path.read_text().splitlines() == ["0.900000,1200.0,3400.5", "0.250000,10.0,20.0"]  # no header
    assert read_detections_csv(path) == dets


def test_detections_header_and_blank_lines_are_skipped(tmp_path):
    p = _write(tmp_path, "a.csv", "prob,X,Y\n0.5,1,2\n\n0.4,3,4,extra\n")
    assert read_detections_csv(p) == [Detection(0.5, 1.0, 2.0), Detection(0.4, 3.0, 4.0)]
    assert read_detections_csv(_write(tmp_path, "empty.csv", "")) == []


def test_excel_bom_is_accepted_and_the_first_row_kept(tmp_path):
    # Without BOM handling the first cell reads '\ufeff0.9', looks like a header, and a detection is lost.
    p = _write(tmp_path, "bom.csv", "0.9,100,200\r\n0.8,300,400\r\n", bom=True)
    assert read_detections_csv(p) == [Detection(0.9, 100.0, 200.0), Detection(0.8, 300.0, 400.0)]
    p = _write(tmp_path, "bom_header.csv", "prob,X,Y\r\n0.9,100,200\r\n", bom=True)
    assert read_detections_csv(p) == [Detection(0.9, 100.0, 200.0)]


@pytest.mark.parametrize(("text", "message"), [
    ("0.9,1,2\nnan,3,4\n", r"bad.csv: row 2, column prob: 'nan' is not a finite number"),
    ("prob,X,Y\n0.9,1,2\n0.8,left,4\n", r"bad.csv: row 3, column X: 'left' is not a number"),
    ("0.9,1,2\n0.8,3\n", r"bad.csv: row 2, column Y: missing"),
    ("0.9,1,2\n0.8\n", r"bad.csv: row 2, column X: missing"),
    ("0.9,1,inf\n", r"bad.csv: row 1, column Y: 'inf' is not a finite number"),
])
def test_bad_detection_cells_name_file_row_and_column(tmp_path, text, message):
    with pytest.raises(InputFileError, match=message):
        read_detections_csv(_write(tmp_path, "bad.csv", text))


def test_missing_detections_file(tmp_path):
    with pytest.raises(InputFileError, match="test_009.csv: no such detections file"):
        read_detections_csv(tmp_path / "test_009.csv")


def test_slide_scores_columns_in_order(tmp_path):
    p = _write(tmp_path, "slide_scores.csv", "slide,score,max,rf_score\ntest_001,0.9,0.9,0.7\ntest_002,0.1,0.1,0.2\n",
               bom=True)
    names, v = read_slide_scores(p, columns=["rf_score", "score"])
    assert names == ["test_001", "test_002"]
    np.testing.assert_array_equal(v, [[0.7, 0.9], [0.2, 0.1]])
    names, v = read_slide_scores(_write(tmp_path, "header_only.csv", "slide,score\n"))
    assert names == [] and v.shape == (0, 1)


@pytest.mark.parametrize(("text", "message"), [
    ("slide,score\ntest_001,0.9\n", r"row 1: no 'rf_score' column"),
    ("slide,rf_score\ntest_001,\n", r"row 2, column rf_score: '' is not a number"),
    ("slide,rf_score\ntest_001,NaN\n", r"row 2, column rf_score: 'NaN' is not a finite number"),
    ("slide,rf_score\ntest_001,0.2\ntest_001,0.3\n", r"row 3, column slide: 'test_001' appears twice"),
    ("", r"empty"),
])
def test_bad_slide_scores(tmp_path, text, message):
    with pytest.raises(InputFileError, match=r"slide_scores.csv: " + message):
        read_slide_scores(_write(tmp_path, "slide_scores.csv", text), columns=["rf_score"])


def test_reference_csv(tmp_path):
    p = _write(tmp_path, "reference.csv", "image,type\nTest_001,Tumor,Macro,Primary\ntest_002,normal\n", bom=True)
    assert read_reference(p) == {"test_001": 1, "test_002": 0}
    with pytest.raises(InputFileError, match=r"reference.csv: row 2, column 2: 'benign'"):
        read_reference(_write(tmp_path, "reference.csv", "test_001,Tumor\ntest_002,Benign\n"))
    with pytest.raises(InputFileError, match=r"row 1, column 2: 'missing'"):
        read_reference(_write(tmp_path, "reference.csv", "test_001\n"))
    with pytest.raises(InputFileError, match="no such reference.csv file"):
        read_reference(tmp_path / "nope" / "reference.csv")
