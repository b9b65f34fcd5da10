"""Model factory, offline ImageNet weights, checkpoints, ONNX export and parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cadx
from cadx.errors import CheckpointError, ConfigError
from cadx.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from cadx.models.config import ModelConfig, TileSpec
from cadx.models.factory import MODEL_KINDS, SUPPORTED_MODELS, build_from_config, create_model
from cadx.models.weights import WeightsUnavailableError
from cadx.preprocessing.augment import to_model_input

ESPRESSO = 967
CATS = {281, 282, 283, 285, 292}  # tabby, tiger cat, Persian, Egyptian cat, tiger


def _imagenet_top5(model, image: np.ndarray) -> list[int]:
    from PIL import Image

    cfg = model.cadx_config
    img = np.asarray(Image.fromarray(image).resize((224, 224), Image.Resampling.BICUBIC))
    x = torch.from_numpy(to_model_input(img[None], cfg.mean, cfg.std))
    with torch.inference_mode():
        return torch.topk(model.eval()(x), 5).indices[0].tolist()


def test_lite0_weights_are_real_imagenet_weights():
    from skimage import data

    model = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=1000)
    assert model.cadx_config.weights.startswith("file:efficientnet-lite0")
    assert model.cadx_config.mean == (0.5, 0.5, 0.5)
    assert _imagenet_top5(model, data.coffee())[0] == ESPRESSO
    assert _imagenet_top5(model, data.chelsea())[0] in CATS


def test_new_head_keeps_pretrained_backbone():
    base = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=1000)
    tuned = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=2, input_size=128)
    assert tuned.get_classifier().out_features == 2
    torch.testing.assert_close(base.conv_stem.weight, tuned.conv_stem.weight)
    assert tuned.cadx_config.input_size == 128 and tuned.cadx_config.num_classes == 2


def test_missing_weights_error_says_how_to_provide_them(monkeypatch):
    monkeypatch.delenv("CADX_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsUnavailableError) as err:
        create_model("resnet50", pretrained=True)
    msg = str(err.value)
    # Only ways that exist: config keys of the training config and the weights folder.
    for way in ("`pretrained: PATH`", "$CADX_WEIGHTS_DIR/resnet50.pth", "`pretrained: hub`", "`pretrained: false`"):
        assert way in msg
    assert "--weights" not in msg and "--pretrained" not in msg and "--no-pretrained" not in msg


def test_local_weights_file_and_weights_dir(tmp_path, monkeypatch):
    src = create_model("mobilenetv2_100", num_classes=1000)
    path = tmp_path / "mobilenetv2_100.pth"
    torch.save(src.state_dict(), path)
    m = create_model("mobilenetv2_100", pretrained=path, num_classes=3)
    torch.testing.assert_close(m.conv_stem.weight, src.conv_stem.weight)
    assert m.cadx_config.weights == "file:mobilenetv2_100.pth"
    monkeypatch.setenv("CADX_WEIGHTS_DIR", str(tmp_path))
    m2 = create_model("mobilenetv2_100", pretrained=True, num_classes=2)
    torch.testing.assert_close(m2.conv_stem.weight, src.conv_stem.weight)


def test_weights_of_another_network_are_rejected(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save(create_model("mobilenetv2_100", num_classes=1000).state_dict(), path)
    with pytest.raises(WeightsUnavailableError, match="does not fit"):
        create_model("tf_efficientnet_lite0", pretrained=path)


@pytest.mark.slow
@pytest.mark.parametrize("name", SUPPORTED_MODELS)
def test_every_supported_backbone_builds_and_runs(name):
    m = create_model(name, num_classes=2).eval()
    size = 299 if name == "inception_v3" else 96
    with torch.inference_mode():
        assert m(torch.zeros(1, 3, size, size)).shape == (1, 2)
        pooled = m.forward_head(m.forward_features(torch.zeros(1, 3, size, size)), pre_logits=True)
    assert pooled.shape == (1, m.get_classifier().in_features)  # what Predictor.embed returns


def test_checkpoint_round_trip(tmp_path):
    m = create_model("tf_efficientnet_lite0", num_classes=2, input_size=64, class_names=("normal", "tumor"))
    path = save_checkpoint(tmp_path / "c.pt", m, tile={"mpp": 0.5, "size_px": 64}, train_config={"lr": 1e-3},
                           metrics={"val_auc": 0.9})
    back, meta = load_checkpoint(path)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(back(x), m.eval()(x))
    assert meta["tile"] == {"mpp": 0.5, "size_px": 64, "context_mpp": None, "min_tissue": 0.5, "label_rule": ""}
    assert meta["metrics"]["val_auc"] == 0.9 and meta["train_config"] == {"lr": 1e-3}
    assert meta["model"] == m.cadx_config.to_dict() and meta["model"]["class_names"] == ["normal", "tumor"]
    assert back.cadx_config.architecture == "tf_efficientnet_lite0" and meta["cadx_version"] == cadx.__version__


def test_bad_checkpoints_are_clean_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"a": torch.zeros(1)}, plain)
    with pytest.raises(CheckpointError, match="not a cadx checkpoint"):
        load_checkpoint(plain)


def test_six_channel_input_reuses_rgb_filters():
    rgb = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=2)
    six = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=2, in_chans=6)
    torch.testing.assert_close(six.conv_stem.weight[:, :3], rgb.conv_stem.weight * 0.5)
    torch.testing.assert_close(six.conv_stem.weight[:, 3:], rgb.conv_stem.weight * 0.5)
    assert six.cadx_config.in_chans == 6 and len(six.cadx_config.mean) == 6


def test_weights_in_safetensors_and_wrapped_state_dicts(tmp_path):
    from safetensors.torch import save_file

    src = create_model("resnet18", num_classes=1000)
    save_file(src.state_dict(), tmp_path / "r.safetensors")
    torch.save({"state_dict": src.state_dict()}, tmp_path / "wrapped.pth")
    for name in ("r.safetensors", "wrapped.pth"):
        m = create_model("resnet18", pretrained=tmp_path / name, num_classes=2, in_chans=6)
        torch.testing.assert_close(m.conv1.weight[:, 3:], src.conv1.weight * 0.5)
        assert m.get_classifier().out_features == 2 and m.cadx_config.weights == f"file:{name}"


def test_unreadable_or_missing_weights_files(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not weights")
    with pytest.raises(WeightsUnavailableError, match="junk.pth: not a readable"):
        create_model("resnet18", pretrained=junk)
    with pytest.raises(WeightsUnavailableError, match="no such weights file"):
        create_model("resnet18", pretrained=tmp_path / "missing.pth")
    marker = tmp_path / "pwned"
    state = dict(create_model("resnet18", num_classes=1000).state_dict())
    state["hook"] = _Payload(marker)
    torch.save(state, tmp_path / "evil.pth")
    with pytest.raises(WeightsUnavailableError, match="evil.pth: not a readable weights file"):
        create_model("resnet18", pretrained=tmp_path / "evil.pth")
    assert not marker.exists()


def test_unknown_architecture_and_kind_are_config_errors():
    with pytest.raises(ConfigError, match="unknown architecture 'resnet_nope'"):
        create_model("resnet_nope")
    with pytest.raises(ConfigError, match="unknown model kind 'detector'"):
        create_model("resnet18", kind="detector")
    assert set(MODEL_KINDS) == {"classifier", "encoder", "sequence", "mil", "segmenter"}


def test_activation_defaults_and_choices():
    assert create_model("resnet18", num_classes=2).cadx_config.activation == "softmax"  # CAMELYON tiles
    assert create_model("resnet18", num_classes=5, activation="sigmoid").cadx_config.activation == "sigmoid"
    assert create_model("resnet18", num_classes=1, activation="none").cadx_config.activation == "none"
    with pytest.raises(ConfigError, match="softmax needs num_classes >= 2"):
        create_model("resnet18", num_classes=1)
    with pytest.raises(ConfigError, match="activation must be one of"):
        create_model("resnet18", activation="relu")


@pytest.mark.parametrize("change, problem", [
    ({"num_classes": 0}, "num_classes must be a positive integer"),
    ({"num_classes": True}, "num_classes must be a positive integer"),
    ({"mean": (0.5, 0.5)}, "mean must hold one number per input channel"),
    ({"std": (0.5, 0.0, 0.5)}, "std must be positive"),
    ({"class_names": ("a",)}, "class_names must be empty or 2 strings"),
    ({"input": "ct_volume"}, "input must be one of"),
    ({"architecture": ""}, "architecture must be a non-empty string"),
])
def test_model_config_is_validated(change, problem):
    good = {"architecture": "resnet18", "num_classes": 2}
    with pytest.raises(ConfigError, match=problem):
        ModelConfig(**{**good, **change})


def test_model_config_is_frozen_and_round_trips_as_plain_data():
    import dataclasses
    import json

    c = ModelConfig("resnet18", 3, in_chans=6, mean=(0.5,) * 6, std=(0.25,) * 6, class_names=("a", "b", "c"),
                    activation="sigmoid")
    d = c.to_dict()
    assert json.loads(json.dumps(d)) == d and ModelConfig.from_dict(json.loads(json.dumps(d))) == c
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.num_classes = 4
    old = {k: v for k, v in d.items() if k not in ("kind", "activation", "input")}  # a cadx 0.1 record
    assert ModelConfig.from_dict(old).activation == "softmax"
    with pytest.raises(ConfigError, match="unknown keys \\['colour'\\]"):
        ModelConfig.from_dict({**d, "colour": 1})
    with pytest.raises(ConfigError, match="missing keys \\['num_classes'\\]"):
        ModelConfig.from_dict({"architecture": "resnet18"})


def test_tile_spec_is_validated():
    assert TileSpec.from_dict({"mpp": 0.5, "size_px": 64, "context_mpp": 2.0}).context_mpp == 2.0
    for bad, problem in [({"mpp": 0, "size_px": 64}, "mpp must be a positive number"),
                         ({"mpp": 0.5, "size_px": 6.4}, "size_px must be a positive integer"),
                         ({"mpp": 0.5, "size_px": 64, "min_tissue": 2}, "min_tissue must be in"),
                         ({"mpp": 0.5}, "missing keys \\['size_px'\\]"),
                         ({"mpp": 0.5, "size_px": 64, "tile": 1}, "unknown keys")]:
        with pytest.raises(ConfigError, match=problem):
            TileSpec.from_dict(bad)


def test_build_from_config_matches_create_model():
    m = create_model("resnet18", num_classes=4, in_chans=6, activation="sigmoid")
    rebuilt = build_from_config(m.cadx_config)
    assert rebuilt.cadx_config == m.cadx_config
    assert rebuilt.get_classifier().out_features == 4 and rebuilt.conv1.in_channels == 6


class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_checkpoint_with_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    import pickle

    marker = tmp_path / "pwned"
    m = create_model("resnet18", num_classes=2)
    state = {k: v.clone() for k, v in m.state_dict().items()}
    evil = {"format": "cadx-checkpoint", "format_version": 2, "model": m.cadx_config.to_dict(), "tile": {},
            "state_dict": state, "hook": _Payload(marker)}
    torch.save(evil, tmp_path / "evil.pt")  # a real torch zip file with one hostile object in it
    (tmp_path / "evil_legacy.pt").write_bytes(pickle.dumps(evil, protocol=2))  # a bare pickle
    assert not marker.exists()
    for name in ("evil.pt", "evil_legacy.pt"):
        with pytest.raises(CheckpointError, match=f"{name}: refused"):
            load_checkpoint(tmp_path / name)
        assert not marker.exists()
    # Without the payload the same content loads: the refusal is about the payload only.
    del evil["hook"]
    torch.save(evil, tmp_path / "fine.pt")
    assert load_checkpoint(tmp_path / "fine.pt")[1]["model"]["architecture"] == "resnet18"


def test_checkpoint_metadata_is_plain_data(tmp_path):
    import json
    from pathlib import Path

    m = create_model("resnet18", num_classes=2)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(torch.zeros(2, 3, 32, 32)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "c.pt", m, tile=TileSpec(mpp=0.5, size_px=64, context_mpp=1.0),
                           train_config={"data_dir": Path("/data"), "betas": (0.9, 0.99), "n": np.int64(3)},
                           metrics={"auc": np.float32(0.5)},
                           extra={"step": 7, "optimizer": opt.state_dict()})
    payload = read_checkpoint(path)  # weights_only=True
    assert payload["train_config"] == {"data_dir": "/data", "betas": [0.9, 0.99], "n": 3}
    assert type(payload["metrics"]["auc"]) is float and payload["step"] == 7
    meta_json = {k: payload[k] for k in ("model", "tile", "train_config", "metrics")}
    assert json.loads(json.dumps(meta_json)) == meta_json
    assert payload["tile"]["context_mpp"] == 1.0
    opt2 = torch.optim.AdamW(m.parameters(), lr=1e-3)
    opt2.load_state_dict(payload["optimizer"])  # resume state survives weights-only loading
    with pytest.raises(TypeError, match="train_config.f: builtin_function_or_method is not plain data"):
        save_checkpoint(tmp_path / "d.pt", m, train_config={"f": len})
    with pytest.raises(ConfigError, match="tile spec: missing keys"):
        save_checkpoint(tmp_path / "d.pt", m, tile={"mpp": 0.5})


def test_checkpoint_keeps_activation_and_refuses_newer_formats(tmp_path):
    m = create_model("resnet18", num_classes=3, activation="sigmoid")
    path = save_checkpoint(tmp_path / "c.pt", m)
    back, meta = load_checkpoint(path)
    assert back.cadx_config.activation == "sigmoid" and meta["model"]["activation"] == "sigmoid"
    payload = read_checkpoint(path)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="newer cadx"):
        load_checkpoint(tmp_path / "new.pt")
    payload["format_version"] = 2
    payload["model"]["activation"] = "relu"
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt: model config: activation"):
        load_checkpoint(tmp_path / "bad.pt")
