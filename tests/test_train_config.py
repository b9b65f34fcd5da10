"""Training configuration: every mistake is one ConfigError line naming the file and key, before any work."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from cadx.errors import ConfigError
from cadx.tasks.camelyon16.train import TrainConfig, train_tile_classifier


@pytest.fixture()
def layout(tmp_path):
    data = tmp_path / "data"
    for d in ("tumor", "normal"):
        (data / "training" / d).mkdir(parents=True)
    return data


def _write(tmp_path, text):
    p = tmp_path / "train.yaml"
    p.write_text(text)
    return p


def _one_line_error(path, *needles):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_yaml(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_yaml11_exponent_without_dot_is_a_float(tmp_path, layout):
    p = _write(tmp_path, f"data_dir: {layout}\nout_dir: {tmp_path / 'out'}\nlr: 5e-4\nlr_head: 1e-3\n")
    import yaml

    assert yaml.safe_load(p.read_text())["lr"] == "5e-4"  # what YAML 1.1 makes of it: a string
    cfg = TrainConfig.from_yaml(p)
    assert cfg.lr == 0.0005 and isinstance(cfg.lr, float) and cfg.lr_head == 0.001
    assert cfg.trainable_blocks == 1 and cfg.tile_size == 128 and cfg.warmup_steps == 20  # defaults
    assert asdict(cfg)["lr"] == 0.0005  # still a standard dataclass (the checkpoint records asdict)


def test_wrong_type_names_file_and_key(tmp_path, layout):
    p = _write(tmp_path, f"data_dir: {layout}\nout_dir: o\ntile_size: big\n")
    _one_line_error(p, "tile_size", "'big'", "integer")


def test_out_of_range_value(tmp_path, layout):
    p = _write(tmp_path, f"data_dir: {layout}\nout_dir: o\nval_fraction: 1.5\ntrainable_blocks: -3\n")
    _one_line_error(p, "val_fraction", "trainable_blocks")


def test_unknown_key(tmp_path, layout):
    p = _write(tmp_path, f"data_dir: {layout}\nout_dir: o\nlearning_rate: 3\n")
    _one_line_error(p, "learning_rate: unknown key", "lr_head")  # and the keys it might have meant


def test_yaml_syntax_error(tmp_path):
    p = _write(tmp_path, "data_dir: [a, b\nout_dir: o\n")
    _one_line_error(p, "YAML syntax error", "line ")


def test_top_level_list(tmp_path):
    p = _write(tmp_path, "- data_dir: a\n- out_dir: b\n")
    _one_line_error(p, "mapping", "list")


def test_missing_and_incomplete_data_dir(tmp_path):
    p = _write(tmp_path, f"data_dir: {tmp_path / 'nowhere'}\nout_dir: o\n")
    _one_line_error(p, "data_dir", "no such folder")
    (tmp_path / "half" / "training" / "tumor").mkdir(parents=True)
    p = _write(tmp_path, f"data_dir: {tmp_path / 'half'}\nout_dir: o\n")
    _one_line_error(p, "data_dir", "training/normal")
    p = _write(tmp_path, "out_dir: o\n")
    _one_line_error(p, "data_dir: required key missing")


def test_missing_files(tmp_path, layout):
    _one_line_error(tmp_path / "absent.yaml", "no such config file")
    p = _write(tmp_path, f"data_dir: {layout}\nout_dir: o\npretrained: {tmp_path / 'w.pth'}\n")
    _one_line_error(p, "pretrained", "no such weights file")
    p = _write(tmp_path, f"data_dir: {layout}\nout_dir: o\nmodel: resnet_nonexistent\n")
    _one_line_error(p, "model", "resnet_nonexistent")


def test_values_from_code_are_checked_too(layout, tmp_path):
    with pytest.raises(ConfigError, match=r"^TrainConfig: batch_size: .*'many'"):
        TrainConfig(data_dir=str(layout), out_dir="o", batch_size="many")
    assert TrainConfig(str(layout), "o", lr="1e-3").lr == 0.001


def test_errors_come_before_any_work(tmp_path, layout, monkeypatch):
    """A bad config never reaches tiling: nothing is written to out_dir."""
    from cadx.tasks.camelyon16 import train

    monkeypatch.setattr(train, "tile_cohort", lambda *a, **k: pytest.fail("tiling started"))
    out = tmp_path / "out"
    p = _write(tmp_path, f"data_dir: {layout}\nout_dir: {out}\nbatch_size: 0\n")
    with pytest.raises(ConfigError, match="batch_size"):
        train_tile_classifier(TrainConfig.from_yaml(p), show_progress=False)
    # A valid config over empty class folders stops before tiling, naming the layout.
    p = _write(tmp_path, f"data_dir: {layout}\nout_dir: {out}\n")
    with pytest.raises(ConfigError, match="no slides under training/tumor and training/normal"):
        train_tile_classifier(TrainConfig.from_yaml(p), show_progress=False)
    assert not (out / "coords").exists()
