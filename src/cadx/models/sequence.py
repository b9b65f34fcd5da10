"""Study-level sequence model over per-slice embeddings (the RSNA 2019 winners' second stage).

A head-CT study is a stack of slices; a bleed seen on one slice makes the neighbours more likely to
show it too. :class:`StudySequenceModel` reads the per-slice embeddings of a slice model
(``predictor.embed``, one D-vector per slice, in slice order along the patient axis) and returns
per-slice logits that see the whole study: a bidirectional GRU (``kind="gru"``) or two 1D
convolutions along the slices (``kind="conv"``), with a skip connection from each slice's own
projection.

Studies of different lengths are padded into one batch ``(B, T, D)`` with a boolean mask
``(B, T)`` (True = a real slice); padded slices never influence real ones.

The factory builds it as ``create_model("gru-64", kind="sequence", in_chans=D, num_classes=6,
activation="sigmoid")``: the architecture name is ``<kind>-<hidden>`` (:func:`sequence_architecture`),
so a checkpoint rebuilds it from its :class:`~cadx.models.config.ModelConfig` alone.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from cadx.errors import ConfigError

__all__ = ["SEQUENCE_KINDS", "StudySequenceModel", "build_sequence_model", "parse_sequence_architecture",
           "sequence_architecture"]

#: Sequence layers: bidirectional GRU, or 1D convolution along the slices.
SEQUENCE_KINDS = ("gru", "conv")

_ARCH = re.compile(r"^(gru|conv)(?:-(\d+))?$")


def sequence_architecture(kind: str = "gru", hidden: int = 64) -> str:
    """The factory's architecture name of a sequence model.

    Examples
    --------
    >>> sequence_architecture("conv", 32)
    'conv-32'
    >>> parse_sequence_architecture(sequence_architecture("gru", 16))
    ('gru', 16)
    """
    parse_sequence_architecture(f"{kind}-{hidden}")
    return f"{kind}-{hidden}"


def parse_sequence_architecture(name: str) -> tuple[str, int]:
    """``"gru-64"`` -> ``("gru", 64)``; a bare ``"gru"`` or ``"conv"`` has 64 hidden units.

    Raises
    ------
    ConfigError
        Not ``gru[-H]`` or ``conv[-H]`` with H >= 1.

    Examples
    --------
    >>> parse_sequence_architecture("conv")
    ('conv', 64)
    >>> parse_sequence_architecture("lstm-8")
    Traceback (most recent call last):
    ...
    cadx.errors.ConfigError: model config: sequence architecture must be 'gru-<hidden>' or ... (got 'lstm-8')
    """
    m = _ARCH.match(name) if isinstance(name, str) else None
    if m is None or (m.group(2) is not None and int(m.group(2)) < 1):
        raise ConfigError(f"model config: sequence architecture must be 'gru-<hidden>' or 'conv-<hidden>' "
                          f"(got {name!r})")
    return m.group(1), int(m.group(2) or 64)


class StudySequenceModel(nn.Module):
    """Per-slice logits from the embeddings of all slices of a study.

    Parameters
    ----------
    in_features : int
        D, the length of one slice embedding.
    num_labels : int
        K outputs per slice (6 for RSNA: five subtypes and "any").
    hidden : int
        Width of the slice projection and of each GRU direction / conv layer.
    kind : {"gru", "conv"}
        Bidirectional GRU over the whole study, or two convolutions of kernel 3 along the slices
        (receptive field +-2 slices).
    dropout : float
        Dropout on the projected embeddings while training.

    Notes
    -----
    ``forward(x, mask=None)`` takes ``x`` ``(B, T, D)`` float (slice order along the patient axis)
    and ``mask`` ``(B, T)`` bool (True = real slice, padding after the real slices), or a tuple
    ``(x, mask)`` as one argument (the form :func:`cadx.training.loop.fit` passes), and returns
    ``(B, T, K)`` logits; logits of padded slices are 0.

    Examples
    --------
    >>> m = StudySequenceModel(8, 6, hidden=4, kind="gru").eval()
    >>> x = torch.zeros(2, 5, 8); mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).bool()
    >>> with torch.no_grad():
    ...     logits = m(x, mask)
    >>> tuple(logits.shape), float(logits[1, 3:].abs().sum())
    ((2, 5, 6), 0.0)
    """

    def __init__(self, in_features: int, num_labels: int = 6, *, hidden: int = 64, kind: str = "gru",
                 dropout: float = 0.0) -> None:
        super().__init__()
        if kind not in SEQUENCE_KINDS:
            raise ConfigError(f"model config: sequence kind must be one of {SEQUENCE_KINDS} (got {kind!r})")
        for name, value in (("in_features", in_features), ("num_labels", num_labels), ("hidden", hidden)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"model config: {name} must be a positive integer (got {value!r})")
        self.kind, self.hidden, self.num_features = kind, hidden, 3 * hidden
        self.num_classes = num_labels
        self.proj = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout))
        if kind == "gru":
            self.seq: nn.Module = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        else:
            self.seq = nn.ModuleList([nn.Conv1d(hidden, 2 * hidden, 3, padding=1),
                                      nn.Conv1d(2 * hidden, 2 * hidden, 3, padding=1)])
        self.head = nn.Linear(3 * hidden, num_labels)
        # What the factory and checkpoints expect of a model (timm's attribute); the embeddings come
        # already normalised by the slice model, hence mean 0, std 1.
        self.pretrained_cfg = {"input_size": (in_features, 1, 1), "mean": (0.0,), "std": (1.0,)}

    def forward_features(self, x: Any, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, 3 * hidden)`` per-slice features: the slice's projection and its study context."""
        x, mask = _unpack(x, mask)
        keep = mask.unsqueeze(-1).to(x.dtype)
        h = self.proj(x) * keep
        if self.kind == "gru":
            lengths = mask.sum(1).clamp(min=1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.seq(packed)
            ctx, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=h.shape[1])
        else:
            # Zeros in the padding after every layer, as before the study's first slice: the end of a
            # padded study looks exactly like the end of an unpadded one.
            ctx, keep_c = h.transpose(1, 2), keep.transpose(1, 2)
            for conv in self.seq:
                ctx = torch.relu(conv(ctx)) * keep_c
            ctx = ctx.transpose(1, 2)
        return torch.cat([h, ctx], dim=-1) * keep

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits ``(B, T, K)`` from :meth:`forward_features` (the features themselves if ``pre_logits``)."""
        return features if pre_logits else self.head(features)

    def forward(self, x: Any, mask: torch.Tensor | None = None) -> torch.Tensor:
        x, mask = _unpack(x, mask)
        return self.forward_head(self.forward_features(x, mask)) * mask.unsqueeze(-1).to(x.dtype)


def _unpack(x: Any, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, mask)`` from ``x`` or ``((x, mask),)``; an absent mask means every slice is real."""
    if isinstance(x, (tuple, list)):
        x, mask = x
    if x.ndim != 3:
        raise ValueError(f"expected embeddings (B, T, D), got shape {tuple(x.shape)}")
    if mask is None:
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    return x, mask.bool()


def build_sequence_model(name: str, *, pretrained: Any, num_classes: int, in_chans: int) -> tuple[Any, str]:
    """The factory's builder of kind ``"sequence"`` (``in_chans`` is the embedding length D).

    Raises
    ------
    ConfigError
        A bad architecture name, or pretrained weights asked for (train it from the slice embeddings).
    """
    if pretrained is not False:
        raise ConfigError("model config: sequence models have no pretrained weights; use pretrained: false")
    kind, hidden = parse_sequence_architecture(name)
    return StudySequenceModel(in_chans, num_classes, hidden=hidden, kind=kind), "random"
