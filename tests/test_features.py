"""Tile features: known answers against tiles read by hand, CLAM's files, resume, kill, bad slides, encoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cadx.errors import CadxError
from cadx.inference.features import extract_features, extract_slide_features, features_request, load_encoder
from cadx.inference.predictor import OnnxPredictor, TorchPredictor
from cadx.io.h5 import read_features_attrs, read_features_h5, write_features_h5
from cadx.io.slide import ArraySlide
from cadx.models.factory import create_model
from cadx.models.weights import WeightsUnavailableError

TISSUE = (200, 120, 180)
MPP, TILE = 1.0, 64  # on 0.5 um/px images: 128 level-0 px per tile


def _tissue_image(seed: int, w: int = 1024, h: int = 768) -> np.ndarray:
    """White glass with a textured pink disc (every tile differs)."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 255, np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (xx - w * 0.45) ** 2 + (yy - h * 0.5) ** 2 < (0.35 * h) ** 2
    noise = rng.integers(-40, 40, (h, w, 3))
    img[disc] = np.clip(np.array(TISSUE) + noise[disc], 0, 255)
    return img


class Counting:
    """A predictor wrapper that counts ``embed`` calls (and can fail on the n-th)."""

    def __init__(self, inner, fail_at: int | None = None, exc: type[BaseException] = KeyboardInterrupt):
        self.inner, self.config, self.calls, self.fail_at, self.exc = inner, inner.config, 0, fail_at, exc

    def embed(self, x):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise self.exc("stopped")
        return self.inner.embed(x)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return TorchPredictor(create_model("resnet18", kind="encoder", input_size=TILE), device="cpu")


@pytest.fixture()
def slides(tmp_path):
    from PIL import Image

    paths = []
    for k in range(2):
        p = tmp_path / "slides" / f"slide_{k}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(_tissue_image(k)).save(p)
        paths.append(p)
    return paths


def test_features_are_the_embeddings_of_the_tiles_read_by_hand_at_their_coords(encoder):
    slide = ArraySlide(_tissue_image(3), mpp=0.5, min_level_size_px=64)  # level 1 is 1.0 um/px
    tf = extract_slide_features(slide, encoder, mpp=MPP, tile_size_px=TILE, min_tissue=0.5, batch_size=5)
    assert 10 < len(tf) < 48 and tf.features.shape == (len(tf), 512) and tf.features.dtype == np.float32
    assert (tf.coords_xy % 128 == 0).all() and tf.attrs["level"] == 1 and tf.attrs["tile_size_level0_px"] == 128
    by_hand = np.stack([slide.read_region((int(x), int(y)), 1, (TILE, TILE)) for x, y in tf.coords_xy])
    np.testing.assert_allclose(tf.features, encoder.embed(by_hand), rtol=1e-5, atol=1e-5)
    assert np.ptp(tf.features, axis=0).max() > 1e-3  # the tiles differ: the order is tested too
    assert tf.attrs["encoder"] == "resnet18" and tf.attrs["feature_dim"] == 512 and tf.attrs["min_tissue"] == 0.5


def test_a_slide_without_tissue_is_an_empty_bag_of_the_right_width(encoder):
    slide = ArraySlide(np.full((512, 512, 3), 255, np.uint8), mpp=0.5)
    tf = extract_slide_features(slide, encoder, mpp=MPP, tile_size_px=TILE)
    assert tf.features.shape == (0, 512) and tf.coords_xy.shape == (0, 2)


def _run(slides, predictor, out, **kw):
    options = {"mpp": MPP, "tile_size_px": TILE, "min_tissue": 0.5, "encoder_id": "enc-1", "mpp_override": 0.5}
    return extract_features(slides, predictor, out, **{**options, **kw})


def test_cohort_writes_clam_files_and_lists_a_corrupt_slide_while_the_others_finish(tmp_path, slides, encoder):
    bad = tmp_path / "slides" / "broken.tif"
    bad.write_bytes(b"II*\x00" + b"\x00garbage" * 50)
    out = tmp_path / "features"
    report = _run([slides[0], bad, slides[1]], encoder, out)
    assert [p for p, _ in report.done] == [slides[0], slides[1]] and report.skipped == []
    assert [p for p, _ in report.failures] == [bad] and "broken.tif" in report.failures[0][1]
    for path, done in report.done:
        tf = read_features_h5(out / "h5_files" / f"{path.stem}.h5")
        pt = torch.load(out / "pt_files" / f"{path.stem}.pt", weights_only=True)
        assert isinstance(pt, torch.Tensor) and pt.dtype == torch.float32
        np.testing.assert_array_equal(pt.numpy(), tf.features)
        assert done["tiles"] == len(tf) > 0 and not done["reused"]
        assert tf.attrs["encoder_id"] == "enc-1" and tf.attrs["slide"] == path.stem and tf.attrs["mpp_override"] == 0.5
    assert sorted(p.name for p in (out / "h5_files").iterdir()) == ["slide_0.h5", "slide_1.h5"]


def test_resume_skips_finished_slides_and_redoes_one_made_with_other_settings(tmp_path, slides, encoder):
    out = tmp_path / "features"
    _run(slides, encoder, out)
    counting = Counting(encoder)
    again = _run(slides, counting, out)
    assert again.skipped == slides and again.done == [] and counting.calls == 0

    h5 = out / "h5_files" / "slide_1.h5"
    tf = read_features_h5(h5)
    write_features_h5(h5, tf.features, tf.coords_xy, {**tf.attrs, "min_tissue": 0.75})  # made with other settings
    redo = _run(slides, counting, out)
    assert redo.skipped == [slides[0]] and [p for p, _ in redo.done] == [slides[1]] and counting.calls > 0
    assert read_features_attrs(h5)[0]["min_tissue"] == 0.5

    calls = counting.calls
    other_encoder = _run(slides, counting, out, encoder_id="enc-2", write_pt=False)
    assert other_encoder.skipped == [] and counting.calls > calls
    assert not list((out / "pt_files").iterdir())  # they held the other encoder's features

    calls = counting.calls  # the .pt files come back from the .h5 files, the encoder does not run
    pt_only = _run(slides, counting, out, encoder_id="enc-2")
    assert counting.calls == calls and all(d["reused"] for _, d in pt_only.done) and len(pt_only.done) == 2
    np.testing.assert_array_equal(torch.load(out / "pt_files" / "slide_0.pt", weights_only=True).numpy(),
                                  read_features_h5(out / "h5_files" / "slide_0.h5").features)
    assert _run(slides, counting, out, encoder_id=None).skipped == []  # nothing identifies the encoder: redo


def test_a_killed_run_leaves_no_half_written_file_and_the_rerun_finishes(tmp_path, slides, encoder):
    out = tmp_path / "features"
    first = _run(slides[:1], encoder, out, batch_size=4)
    assert first.done[0][1]["tiles"] > 8
    killer = Counting(encoder, fail_at=2)  # slide_0 is skipped: the second batch of slide_1
    with pytest.raises(KeyboardInterrupt):
        _run(slides, killer, out, batch_size=4)
    assert killer.calls == 2
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert left == ["h5_files/slide_0.h5", "pt_files/slide_0.pt"]  # no slide_1 file, no .part file
    counting = Counting(encoder)
    rerun = _run(slides, counting, out, batch_size=4)
    assert rerun.skipped == [slides[0]] and [p for p, _ in rerun.done] == [slides[1]]
    assert counting.calls == -(-rerun.done[0][1]["tiles"] // 4)


def test_a_bug_in_the_encoder_stops_the_run(tmp_path, slides, encoder):
    with pytest.raises(RuntimeError):
        _run(slides, Counting(encoder, fail_at=1, exc=RuntimeError), tmp_path / "f")


def test_the_request_names_the_slide_by_its_size(tmp_path, slides):
    r = features_request(slides[0], encoder="e", encoder_id="x", mpp=0.5, tile_size_px=224, min_tissue=0.25)
    assert r["slide_file_bytes"] == slides[0].stat().st_size and r["mpp_override"] == -1.0


def test_load_encoder_onnx_is_exported_once_and_matches_torch(tmp_path):
    cache = tmp_path / "encoders"
    onnx, enc_id = load_encoder("tf_efficientnet_lite0", input_size=32, backend="onnx", cache_dir=cache)
    assert isinstance(onnx, OnnxPredictor) and onnx.config.kind == "encoder" and onnx.config.input_size == 32
    (exported,) = cache.iterdir()
    stamp = exported.stat().st_mtime_ns
    again, same_id = load_encoder("tf_efficientnet_lite0", input_size=32, backend="onnx", cache_dir=cache)
    assert same_id == enc_id and exported.stat().st_mtime_ns == stamp and again.path == exported
    torch_pred, torch_id = load_encoder("tf_efficientnet_lite0", input_size=32, backend="torch")
    assert torch_id == enc_id and isinstance(torch_pred, TorchPredictor)
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(onnx.embed(x), torch_pred.embed(x), rtol=1e-4, atol=1e-4)
    assert load_encoder("tf_efficientnet_lite0", input_size=64, backend="torch")[1] != enc_id


def test_load_encoder_without_weights_says_to_give_a_weights_file(monkeypatch, tmp_path):
    monkeypatch.delenv("CADX_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsUnavailableError, match="--weights FILE") as err:
        load_encoder("resnet50_trunc", backend="torch")
    assert "\n" not in str(err.value) and isinstance(err.value, CadxError)
    with pytest.raises(WeightsUnavailableError, match="no such weights file"):
        load_encoder("resnet50_trunc", weights=tmp_path / "missing.pth", backend="torch")
