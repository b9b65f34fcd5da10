"""Small trained-model inputs for the ML command tests: a 64-px checkpoint and planted pickles.

Used by tests/test_resume.py and tests/test_bad_input_ml.py.
"""

from __future__ import annotations

import pickle
from pathlib import Path

#: The tile spec of :func:`tiny_checkpoint`: 64-px tiles at 2 um/px (a 4096-px synthetic slide is 8 x 8 tiles).
TILE_MPP, TILE_PX = 2.0, 64


def tiny_checkpoint(path: Path, *, seed: int = 0) -> Path:
    """A cadx checkpoint of an untrained ``tf_efficientnet_lite0`` (2 classes, 64 px, no download)."""
    import torch

    from cadx.models.checkpoint import save_checkpoint
    from cadx.models.config import TileSpec
    from cadx.models.factory import create_model

    torch.manual_seed(seed)
    model = create_model("tf_efficientnet_lite0", pretrained=False, num_classes=2, input_size=TILE_PX,
                         class_names=("normal", "tumor"))
    return save_checkpoint(path, model, tile=TileSpec(mpp=TILE_MPP, size_px=TILE_PX))


class _WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: the file appearing means the payload ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def planted_torch_pickle(path: Path, marker: Path) -> Path:
    """A torch file (``torch.save``) whose payload would create ``marker`` if unpickled without restrictions."""
    import torch

    torch.save({"format": "cadx-checkpoint", "payload": _WritesMarker(marker)}, path)
    return path


def planted_pickle(path: Path, marker: Path) -> Path:
    """A plain pickle (what joblib writes uncompressed) whose payload would create ``marker``."""
    path.write_bytes(pickle.dumps({"model": _WritesMarker(marker)}, protocol=4))
    return path
