"""Which torch device to run on: one rule for training and inference."""

from __future__ import annotations


def resolve_device(name: str = "auto") -> str:
    """``"auto"`` is CUDA when present, else CPU; any other name is returned unchanged.

    Parameters
    ----------
    name : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...

    Examples
    --------
    >>> resolve_device("cpu")
    'cpu'
    >>> resolve_device("auto") in ("cpu", "cuda")
    True
    """
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
