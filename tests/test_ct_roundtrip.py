"""The DICOM reader recovers the generator's Hounsfield units, the 12-bit wrap quirk included."""

from __future__ import annotations

import numpy as np


def test_reader_recovers_generated_hu_and_series_order(tmp_path):
    from cadx.io.dicom import read_ct_series, read_ct_slice
    from cadx.synth.ct import generate_ct

    records = generate_ct(tmp_path, studies=4, seed=1, slices_per_study=6, size_px=96, wrap_fraction=0.5)
    assert any(r.wrapped for r in records) and not all(r.wrapped for r in records)
    for r in records:
        hu = read_ct_slice(r.path).hu
        for name, (row, col) in r.landmarks.items():
            # noise is ~6 HU sd; the wrap fix, slope and intercept must be exact for this to hold
            assert abs(float(hu[row, col]) - r.truth_hu[name]) < 40, (r.image_id, name)
    one = sorted((r for r in records if r.series_uid == records[0].series_uid), key=lambda r: r.z_mm)
    rng = np.random.default_rng(0)
    series = read_ct_series([one[i].path for i in rng.permutation(len(one))])
    assert [s.image_id for s in series.slices] == [r.image_id for r in one]
