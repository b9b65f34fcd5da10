"""Explaining a classifier on image files: the checkpoint's preprocessing, its top classes, a CAM overlay each.

For each image the model sees exactly what it saw in training (the checkpoint's recorded
``preprocess``, else a plain resize to its input size), the top classes are read from the same
forward pass, and the class activation map of the explained class is drawn over that model input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cadx.errors import CadxError, ConfigError
from cadx.explain.cam import METHODS, class_activation_maps
from cadx.models.config import ModelConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Explanation:
    """One explained image.

    Attributes
    ----------
    image : Path
        The input file.
    overlay : Path
        The PNG written: the model input with the map over it.
    target : int
        Index of the class the map explains.
    target_name : str
    top : list of (str, float)
        The highest outputs after the model's activation (probabilities for softmax and sigmoid
        heads), highest first.
    """

    image: Path
    overlay: Path
    target: int
    target_name: str
    top: list[tuple[str, float]]


@dataclass
class ExplainReport:
    """What :func:`explain_images` did: explanations and ``(image, problem)`` failures, in input order."""

    explanations: list[Explanation] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)


def class_labels(config: ModelConfig) -> list[str]:
    """The model's class names, or ``"0"``, ``"1"``, ... when it records none.

    Examples
    --------
    >>> class_labels(ModelConfig("resnet18", 2)), class_labels(ModelConfig("resnet18", 2, class_names=("a", "b")))
    (['0', '1'], ['a', 'b'])
    """
    return list(config.class_names) or [str(i) for i in range(config.num_classes)]


def resolve_class(config: ModelConfig, name: str) -> int:
    """Index of a class given by name (or, for a model without names, by index).

    Raises
    ------
    CadxError
        Not one of the model's classes.

    Examples
    --------
    >>> resolve_class(ModelConfig("resnet18", 3, class_names=("MEL", "NV", "BCC")), "NV")
    1
    """
    labels = class_labels(config)
    if name in labels:
        return labels.index(name)
    raise CadxError(f"class {name!r} is not one of the model's classes ({', '.join(labels)})")


def image_preprocess(meta: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """What turns a photograph into the model's input image, as the checkpoint records it.

    Parameters
    ----------
    meta : dict
        Checkpoint metadata (:func:`cadx.models.checkpoint.load_checkpoint`).

    Returns
    -------
    callable
        ``(H, W, 3) uint8 -> (S, S, 3) uint8``: the recorded ``meta["preprocess"]``
        (:class:`cadx.preprocessing.images.ImagePreprocess`) when present, else, for tile models
        (input ``rgb_tile``), the whole image resized to the model's input size.

    Raises
    ------
    CadxError
        The model does not take RGB images, or the recorded preprocessing is invalid.
    """
    config = ModelConfig.from_dict(meta["model"])
    if config.in_chans != 3:
        raise CadxError(f"{config.architecture} takes {config.in_chans} channels; explanations need an RGB model")
    recorded = meta.get("preprocess")
    if recorded:
        from cadx.preprocessing.images import ImagePreprocess

        try:
            return ImagePreprocess.from_dict(recorded)
        except (TypeError, ValueError, ConfigError) as exc:
            raise CadxError(f"the checkpoint's preprocessing entry is invalid: {exc}") from None
    if config.input == "rgb_tile":
        return _Resize(config.input_size)
    raise CadxError(f"cannot prepare images for a model with input {config.input!r}")


def explain_images(paths: Sequence[str | Path], model: Any, meta: dict[str, Any], out_dir: str | Path, *,
                   method: str = "gradcam", target: int | None = None, top_k: int = 3,
                   device: str = "auto") -> ExplainReport:
    """Top classes and a class activation map overlay (``out_dir/<image stem>.png``) for each image.

    Parameters
    ----------
    paths : sequence of str or Path
        Image files; one that cannot be read is reported in ``failures`` and the rest go on.
    model : torch.nn.Module
        With ``cadx_config`` (e.g. from :func:`cadx.models.checkpoint.load_checkpoint`).
    meta : dict
        Its checkpoint metadata (see :func:`image_preprocess`).
    out_dir : str or Path
    method : str
        One of :data:`cadx.explain.cam.METHODS`.
    target : int, optional
        The class explained (default: each image's top class).
    top_k : int
        Number of classes listed per image.
    device : str
        Torch device (``"auto"``: CUDA when present).

    Returns
    -------
    ExplainReport

    Raises
    ------
    CadxError
        Two inputs would write the same overlay, an overlay would replace an input, ``out_dir`` is a
        file or cannot be created, or the model cannot be explained (see :func:`image_preprocess`).
    """
    import torch

    from cadx.inference.predictor import TorchPredictor, model_input
    from cadx.io.atomic import ensure_not_input, prepare_output_folder
    from cadx.io.images import read_rgb, write_png
    from cadx.parallel.jobs import map_jobs
    from cadx.viz.overlay import overlay_map

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    paths = [Path(p) for p in paths]
    out_dir = Path(out_dir)
    outputs = {p: out_dir / f"{p.stem}.png" for p in paths}
    seen: dict[Path, Path] = {}
    for p, out in outputs.items():
        if out in seen:
            raise CadxError(f"{seen[out]} and {p} would both write {out}; explain them into separate folders")
        seen[out] = p
        ensure_not_input(out, p)
    prepare = image_preprocess(meta)
    prepare_output_folder(out_dir)  # a folder that is a file fails the command once, not each image
    predictor = TorchPredictor(model, device=device)
    config = predictor.config
    labels = class_labels(config)

    def explain_one(path: Path) -> Explanation:
        img = prepare(read_rgb(path))[None]
        scores = predictor.predict(img)[0]
        t = int(np.argmax(scores)) if target is None else int(target)
        x = torch.from_numpy(model_input(img, config)).to(predictor.device)
        cam = class_activation_maps(predictor.model, x, method=method, targets=[t])[0]
        write_png(outputs[path], overlay_map(img[0], cam))
        top = [(labels[i], float(scores[i])) for i in np.argsort(-scores, kind="stable")[:top_k]]
        log.info("%s: %s -> %s", path, top, outputs[path])
        return Explanation(path, outputs[path], t, labels[t], top)

    report = map_jobs(explain_one, paths)
    return ExplainReport(explanations=report.results, failures=[(Path(p), why) for p, why in report.failures])


class _Resize:
    """The whole image resized (bilinear) to ``size_px`` x ``size_px``."""

    def __init__(self, size_px: int) -> None:
        self.size_px = size_px

    def __call__(self, img: np.ndarray) -> np.ndarray:
        from PIL import Image

        return np.asarray(Image.fromarray(img).resize((self.size_px, self.size_px), Image.Resampling.BILINEAR))
