"""Class activation maps: where in an image a CNN found the evidence for a class, and whether it is real.

The maps come from pytorch-grad-cam (PyPI ``grad-cam``, the ``explain`` extra), always through its
context manager so that the forward hooks are removed afterwards:

- ``gradcam`` (Selvaraju et al. 2017): the target layer's activations weighted by the spatial mean
  of the class score's gradient, rectified.
- ``gradcam++`` (Chattopadhay et al. 2018): as Grad-CAM with pixel-wise weights of positive gradients;
  better when a class appears several times in the image.
- ``scorecam`` (Wang et al. 2020): no gradients; each channel weighted by the class score of the
  input masked with that channel's upsampled activation (one forward pass per channel: slow).
- ``eigencam`` (Muhammad & Yeasin 2020): the first principal component of the activations. It is
  **class-agnostic** (the target is ignored): it shows what the layer responds to most, not why the
  model chose a class. SVD leaves the component's sign arbitrary; cadx flips it so that the strongest
  response is positive (the correction of Seg-Eigen-CAM, Chung & Ying 2025).

A map is only as good as its faithfulness: :func:`deletion_check` deletes the pixels it ranks highest
and compares the confidence drop with deleting as many random pixels (Samek et al. 2017; the
"random CAM" baseline of Adebayo et al. 2018 fails it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cadx.errors import CadxError, require_extra

log = logging.getLogger(__name__)

#: Methods of :func:`class_activation_maps`.
METHODS = ("gradcam", "gradcam++", "scorecam", "eigencam")

#: Target layer per architecture family: (name prefixes, attribute path from the model). The layer's
#: output must still be a spatial map (before global pooling).
#: - timm ResNet family: the last residual block, ``layer4[-1]`` (pytorch-grad-cam's choice for ResNets).
#: - timm EfficientNet family (``efficientnet_*``, ``tf_efficientnet_*`` including the ``lite`` models,
#:   ``mobilenetv2_*``, ``mnasnet_*``, ``mixnet_*``): ``bn2``, i.e. ``conv_head`` followed by its batch norm
#:   and activation: the rectified last feature map, the equivalent of torchvision's ``features[-1]``
#:   that pytorch-grad-cam recommends for MobileNet and EfficientNet.
#: - timm MobileNetV3: ``blocks[-1]`` (its ``conv_head`` comes after global pooling, so it has no map).
#: - ConvNeXt: ``stages[-1]``.
#: Anything else (or a model whose attributes do not match its name): the last ``nn.Conv2d``.
LAYER_RULES: tuple[tuple[tuple[str, ...], tuple[str | int, ...]], ...] = (
    (("resnet", "resnext", "seresnet", "seresnext", "wide_resnet", "ecaresnet", "resnetrs"), ("layer4", -1)),
    (("efficientnet", "tf_efficientnet", "mobilenetv2", "mnasnet", "mixnet", "tf_mixnet"), ("bn2",)),
    (("mobilenetv3", "tf_mobilenetv3"), ("blocks", -1)),
    (("convnext",), ("stages", -1)),
)


def architecture_of(model: Any) -> str:
    """The architecture name: ``model.cadx_config.architecture``, else timm's ``pretrained_cfg``'s, else ``""``."""
    config = getattr(model, "cadx_config", None)
    if config is not None:
        return str(config.architecture)
    return str((getattr(model, "pretrained_cfg", None) or {}).get("architecture", ""))


def target_layer(model: Any) -> Any:
    """The layer whose activations a CAM weighs, chosen from the model's architecture.

    Parameters
    ----------
    model : torch.nn.Module
        Usually built by :func:`cadx.models.factory.create_model` (its ``cadx_config.architecture``
        names the timm architecture).

    Returns
    -------
    torch.nn.Module
        See :data:`LAYER_RULES`; the last ``nn.Conv2d`` for other architectures.

    Raises
    ------
    CadxError
        The model has no convolution (e.g. a vision transformer): a CAM needs a spatial feature map.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    >>> target_layer(net) is net[2]
    True
    """
    import torch

    arch = architecture_of(model).lower()
    for prefixes, path in LAYER_RULES:
        if arch.startswith(prefixes):
            layer = _follow(model, path)
            if layer is not None:
                return layer
            log.info("%s: no %s in the model; using its last convolution", arch, _path_text(path))
            break
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise CadxError(f"{arch or type(model).__name__} has no convolutional layer: a class activation map "
                        "needs a CNN")
    return convs[-1]


def class_activation_maps(model: Any, x: Any, *, method: str = "gradcam", targets: Sequence[int] | None = None,
                          layer: Any = None) -> np.ndarray:
    """Class activation maps of a batch, at the input's size, each scaled to [0, 1].

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning raw scores (logits) ``(N, K)``. Its train/eval mode is restored
        afterwards; the maps are computed in eval mode and parameter gradients are cleared.
    x : torch.Tensor, (N, C, H, W) float
        The network input (already normalised).
    method : str
        One of :data:`METHODS`.
    targets : sequence of int, optional
        The class explained for each image (default: each image's top class). The score explained
        is the raw logit of that class. Ignored by ``eigencam`` (class-agnostic).
    layer : torch.nn.Module, optional
        Target layer (default: :func:`target_layer`).

    Returns
    -------
    ndarray of float32, shape (N, H, W), in [0, 1]
        1 marks the strongest evidence in each image. An image without positive evidence for its
        target (all weighted activations <= 0) gets an all-zero map.

    Raises
    ------
    MissingExtraError
        pytorch-grad-cam is not installed (``pip install 'cadx[explain]'``).
    ValueError
        Unknown ``method``, ``x`` not 4-D, or ``targets`` not one valid class index per image.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
    ...                           torch.nn.Flatten())
    >>> cams = class_activation_maps(net, torch.rand(2, 3, 8, 8), targets=[0, 1])
    >>> cams.shape, cams.dtype, bool(cams.min() >= 0 and cams.max() <= 1)
    ((2, 8, 8), dtype('float32'), True)
    """
    import torch

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if x.ndim != 4:
        raise ValueError(f"expected an (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    require_extra("pytorch_grad_cam", "explain")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    n = int(x.shape[0])
    if targets is not None:
        targets = [int(t) for t in targets]
        num_classes = getattr(getattr(model, "cadx_config", None), "num_classes", None)
        if len(targets) != n or any(t < 0 or (num_classes is not None and t >= num_classes) for t in targets):
            raise ValueError(f"targets must be {n} class indices in [0, {num_classes}), got {targets}")
    layer = layer if layer is not None else target_layer(model)
    cam_class = _cam_class(method)
    was_training = model.training
    maps = None
    try:
        # Gradients are needed even when the caller runs under no_grad / inference_mode; the input
        # itself requires grad so that a model with frozen parameters still has them at the layer.
        with torch.inference_mode(False), torch.enable_grad():
            inp = x.detach().clone().requires_grad_(method in ("gradcam", "gradcam++"))
            with cam_class(model=model, target_layers=[layer]) as cam:
                if method == "scorecam":
                    cam.batch_size = 32
                chosen = None if targets is None else [ClassifierOutputTarget(t) for t in targets]
                maps = cam(input_tensor=inp, targets=chosen)
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    if maps is None:  # pytorch-grad-cam's __exit__ swallows an IndexError (a bad target index)
        raise RuntimeError("pytorch-grad-cam returned no map (its context manager swallowed an IndexError)")
    return np.clip(np.nan_to_num(np.asarray(maps, np.float32)), 0.0, 1.0)


def deletion_check(predict_fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray, cams: np.ndarray,
                   targets: Sequence[int], *, fraction: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """Faithfulness of CAMs: does deleting what they rank highest lower the target's confidence most?

    In each image, the ``fraction`` of pixels with the highest CAM value (ties broken at random) is
    replaced by the image's mean colour, and so is, separately, a random ``fraction`` of its pixels.
    A faithful map makes the first deletion cost the target class more confidence than the second.

    Parameters
    ----------
    predict_fn : callable
        ``predict_fn(images) -> (N, K)`` class probabilities (e.g. a predictor's ``predict``).
    images : ndarray, shape (N, H, W, C)
        Images as ``predict_fn`` takes them (e.g. uint8 RGB); not modified.
    cams : ndarray, shape (N, H, W)
        One map per image, at the image's size.
    targets : sequence of int
        The class each map explains.
    fraction : float
        Fraction of pixels deleted, in (0, 1).
    seed : int
        Seed of the random deletions and of tie-breaking.

    Returns
    -------
    dict
        ``drop_top`` and ``drop_random``: mean over images of the target probability before minus
        after deletion (positive: confidence lost); ``passed``: ``drop_top > drop_random``.

    Raises
    ------
    ValueError
        Shapes that do not match, or ``fraction`` outside (0, 1).

    Examples
    --------
    A "model" whose class 1 probability is the brightness of the top-left pixel:

    >>> import numpy as np
    >>> def predict(imgs):
    ...     p = imgs[:, 0, 0, 0] / 255.0
    ...     return np.stack([1 - p, p], axis=1)
    >>> imgs = np.zeros((1, 10, 10, 3), np.uint8)
    >>> imgs[0, 0, 0] = 255
    >>> right = np.zeros((1, 10, 10))
    >>> right[0, 0, 0] = 1.0
    >>> r = deletion_check(predict, imgs, right, [1])
    >>> round(r["drop_top"], 2), r["passed"]
    (0.99, True)
    >>> deletion_check(predict, imgs, 1.0 - right, [1])["passed"]
    False
    """
    images = np.asarray(images)
    cams = np.asarray(cams, np.float64)
    targets = np.asarray(targets, np.int64)
    if images.ndim != 4 or cams.shape != images.shape[:3] or targets.shape != (images.shape[0],):
        raise ValueError(f"expected images (N, H, W, C), cams (N, H, W) and N targets; got {images.shape}, "
                         f"{cams.shape} and {targets.shape}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    n, h, w, c = images.shape
    k = max(1, int(round(fraction * h * w)))
    rng = np.random.default_rng(seed)
    top, rand = images.copy(), images.copy()
    for i in range(n):
        flat = images[i].reshape(-1, c)
        fill = flat.mean(axis=0)
        if np.issubdtype(images.dtype, np.integer):
            fill = np.rint(fill)
        fill = fill.astype(images.dtype)
        order = np.lexsort((rng.random(h * w), -np.nan_to_num(cams[i].ravel(), nan=-np.inf)))
        top[i].reshape(-1, c)[order[:k]] = fill
        rand[i].reshape(-1, c)[rng.choice(h * w, size=k, replace=False)] = fill
    idx = np.arange(n)
    before = np.asarray(predict_fn(images))[idx, targets]
    drop_top = float(np.mean(before - np.asarray(predict_fn(top))[idx, targets]))
    drop_random = float(np.mean(before - np.asarray(predict_fn(rand))[idx, targets]))
    return {"drop_top": drop_top, "drop_random": drop_random, "passed": bool(drop_top > drop_random)}


def _cam_class(method: str) -> type:
    """The pytorch-grad-cam class of ``method`` (EigenCAM with its sign fixed)."""
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, ScoreCAM
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    if method != "eigencam":
        return {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "scorecam": ScoreCAM}[method]

    class SignedEigenCAM(EigenCAM):
        """EigenCAM whose principal component points at the strongest response (positive)."""

        def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth):  # noqa: ANN001, ANN201
            proj = get_2d_projection(activations)
            flip = np.abs(proj.min(axis=(1, 2))) > np.abs(proj.max(axis=(1, 2)))
            proj[flip] *= -1
            return proj

    return SignedEigenCAM


def _follow(model: Any, path: tuple[str | int, ...]) -> Any:
    obj = model
    for step in path:
        try:
            obj = obj[step] if isinstance(step, int) else getattr(obj, step)
        except (AttributeError, IndexError, TypeError):
            return None
    return obj


def _path_text(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path).lstrip(".")
