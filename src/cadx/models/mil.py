"""Multiple-instance learning over the tile features of a slide: gated attention and max pooling.

A *bag* is one slide's tiles as features ``(N, D)`` float32 (one row per tissue tile, from a frozen
encoder; 1024-d for the truncated ResNet-50 of CLAM). The label is the slide's only: 0 normal,
1 tumour. One forward returns a :class:`MILOutput`: the bag logits, a softmax attention over the
tiles (where the model looked) and a per-tile tumour logit (the instance classifier).

- :class:`GatedAttentionMIL`: Ilse et al. (2018) gated attention with CLAM-SB's sizes,
  ``D -> 512 -> 256 -> 1``, dropout 0.25, and one instance classifier on the 512-d tile embedding.
- :class:`MaxPoolMIL`: the baseline; per-tile logits, the bag takes those of its most tumour-like tile.
- :func:`instance_loss`: CLAM's instance clustering on the top- and bottom-attended tiles.

Memory grows linearly with N (no N x N tensor anywhere): a 100k x 1024 bag needs about 1 GB for a
forward without gradients. The factory builds these as ``create_model("abmil" | "maxmil", kind="mil",
in_chans=D, num_classes=2)``, so checkpoints save and rebuild them like every model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cadx.errors import ConfigError

__all__ = ["MIL_ARCHITECTURES", "GatedAttentionMIL", "MILOutput", "MaxPoolMIL", "build_mil_model", "instance_loss"]

#: Architecture names of kind ``"mil"``: gated attention, max pooling.
MIL_ARCHITECTURES = ("abmil", "maxmil")


@dataclass
class MILOutput:
    """What one forward of a MIL model returns for one bag of N tiles.

    Attributes
    ----------
    logits : torch.Tensor
        ``(C,)`` bag logits, C = 2 (normal, tumour).
    attention : torch.Tensor
        ``(N,)`` softmax over the bag's tiles, summing to 1 (max-pool MIL: the softmax of its tile scores).
    instance_scores : torch.Tensor
        ``(N,)`` per-tile tumour logit (sigmoid gives the tile's tumour probability).
    """

    logits: torch.Tensor
    attention: torch.Tensor
    instance_scores: torch.Tensor


class GatedAttentionMIL(nn.Module):
    """Gated-attention MIL (Ilse et al. 2018) with CLAM-SB's layer sizes and an instance classifier.

    Each tile's features go through ``Linear(D, 512) + ReLU + Dropout`` to an embedding ``h``; the
    attention score is ``w . (tanh(V h) * sigmoid(U h))`` with V, U ``512 -> 256``; the bag embedding
    is the attention-weighted sum of ``h`` and a linear layer gives the bag logits. A second linear
    layer on ``h`` gives each tile's tumour logit (trained by :func:`instance_loss`).

    Parameters
    ----------
    in_dim : int
        D, the length of one tile's features.
    hidden : tuple of int
        Widths of the tile embedding and of the attention layers (CLAM-SB: 512, 256).
    dropout : float
        Dropout after the embedding and in both attention branches while training.
    n_classes : int
        Bag outputs; must be 2 (normal, tumour): the instance scores are tumour logits.
    instance_k : int
        The k of :func:`instance_loss` this model was meant to train with (recorded, not used by forward).

    Notes
    -----
    ``forward(features)`` takes ``(N, D)`` float (or ``(1, N, D)``) and returns a :class:`MILOutput`.
    ``uses_instance_loss`` is True: training adds :func:`instance_loss`.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> m = GatedAttentionMIL(16).eval()
    >>> with torch.no_grad():
    ...     out = m(torch.randn(7, 16))
    >>> tuple(out.logits.shape), tuple(out.attention.shape), round(float(out.attention.sum()), 4)
    ((2,), (7,), 1.0)
    """

    def __init__(self, in_dim: int, *, hidden: tuple[int, int] = (512, 256), dropout: float = 0.25,
                 n_classes: int = 2, instance_k: int = 8) -> None:
        super().__init__()
        _check_sizes(in_dim, n_classes, *hidden, dropout=dropout)
        h1, h2 = hidden
        self.fc = nn.Sequential(nn.Linear(in_dim, h1), nn.ReLU(), nn.Dropout(dropout))
        self.attention_a = nn.Sequential(nn.Linear(h1, h2), nn.Tanh(), nn.Dropout(dropout))
        self.attention_b = nn.Sequential(nn.Linear(h1, h2), nn.Sigmoid(), nn.Dropout(dropout))
        self.attention_c = nn.Linear(h2, 1)
        self.classifier = nn.Linear(h1, n_classes)
        self.instance_classifier = nn.Linear(h1, 1)
        self.num_classes, self.num_features, self.instance_k = n_classes, h1, instance_k
        self.uses_instance_loss = True
        self.pretrained_cfg = _pretrained_cfg(in_dim)

    def _attend(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.fc(_as_bag(features))
        scores = self.attention_c(self.attention_a(h) * self.attention_b(h)).squeeze(-1)
        attention = torch.softmax(scores, dim=0)
        return h, attention, attention @ h

    def forward_features(self, features: torch.Tensor) -> torch.Tensor:
        """The bag embedding ``(hidden[0],)``: the attention-weighted mean of the tile embeddings."""
        return self._attend(features)[2]

    def forward_head(self, pooled: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Bag logits ``(C,)`` from :meth:`forward_features` (the embedding itself if ``pre_logits``)."""
        return pooled if pre_logits else self.classifier(pooled)

    def forward(self, features: torch.Tensor) -> MILOutput:
        h, attention, pooled = self._attend(features)
        return MILOutput(self.classifier(pooled), attention, self.instance_classifier(h).squeeze(-1))


class MaxPoolMIL(nn.Module):
    """Max-pooling MIL baseline: a slide is as tumour-like as its most tumour-like tile.

    ``Linear(D, 512) + ReLU + Dropout`` then per-tile logits ``(N, 2)``; a tile's score is its tumour
    log-odds (logit 1 - logit 0) and the bag logits are those of the tile with the highest score.

    Only the pooled tile gets a gradient, so a tumour tile that a random head ranks low is rarely
    picked and learnt late or never. The tile head therefore starts at zero: the first updates make
    the score grow with a tile's (non-negative) embedding, which ranks unusual tiles first (on the
    generated planted-tile bags of the tests, 300 bags x 4 epochs: 10 of 10 seeds learnt the tile,
    against 4 of 5 with a random head). It is trained without
    :func:`instance_loss` (``uses_instance_loss`` is False): its instance scores are the scores it
    pools, and CLAM's bottom-k negatives would push a low-ranked tumour tile further down.

    Parameters
    ----------
    in_dim : int
        D, the length of one tile's features.
    hidden : int
        Width of the tile embedding.
    dropout : float
        Dropout after the embedding while training.
    n_classes : int
        Must be 2 (normal, tumour).

    Examples
    --------
    >>> m = MaxPoolMIL(4, hidden=8).eval()
    >>> x = torch.randn(5, 4)
    >>> out = m(x)
    >>> bool(torch.equal(out.logits[1] - out.logits[0], out.instance_scores.max()))
    True
    """

    def __init__(self, in_dim: int, *, hidden: int = 512, dropout: float = 0.25, n_classes: int = 2) -> None:
        super().__init__()
        _check_sizes(in_dim, n_classes, hidden, dropout=dropout)
        self.fc = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.classifier = nn.Linear(hidden, n_classes)
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)
        self.num_classes, self.num_features = n_classes, hidden
        self.uses_instance_loss = False
        self.pretrained_cfg = _pretrained_cfg(in_dim)

    def _tiles(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tile_logits = self.classifier(self.fc(_as_bag(features)))
        return tile_logits, tile_logits[:, 1] - tile_logits[:, 0]

    def forward_features(self, features: torch.Tensor) -> torch.Tensor:
        """Per-tile logits ``(N, C)`` (the tiles' own outputs; the head picks one)."""
        return self._tiles(features)[0]

    def forward_head(self, tile_logits: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Bag logits ``(C,)``: the row of the tile with the highest tumour log-odds."""
        if pre_logits:
            return tile_logits
        return tile_logits[torch.argmax(tile_logits[:, 1] - tile_logits[:, 0])]

    def forward(self, features: torch.Tensor) -> MILOutput:
        tile_logits, scores = self._tiles(features)
        return MILOutput(tile_logits[torch.argmax(scores)], torch.softmax(scores, dim=0), scores)


def instance_loss(out: MILOutput, label: Any, k: int) -> torch.Tensor:
    """CLAM's instance-clustering loss on the most and least attended tiles of one bag.

    Pseudo-labels come from the attention (CLAM-SB, ``subtyping=False``): in a tumour bag the k
    most attended tiles should score as tumour and the k least attended as normal; in a normal bag
    the k most attended tiles should score as normal. The loss is the mean binary cross entropy of
    those tiles' :attr:`MILOutput.instance_scores` against the pseudo-labels; gradients reach the
    instance classifier (and the tile embedding), not the choice of tiles.

    Small bags: a tumour bag of N < 2k tiles uses ``max(1, N // 2)`` tiles on each side (the two
    sides never share a tile; a bag of one tile has no negative); a normal bag uses ``min(k, N)``.

    Parameters
    ----------
    out : MILOutput
        One bag's forward.
    label : int or tensor
        The bag label: 1 tumour, 0 normal.
    k : int
        Tiles taken from each end of the attention ranking.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Examples
    --------
    >>> out = MILOutput(torch.zeros(2), torch.tensor([0.4, 0.1, 0.2, 0.3]), torch.tensor([2.0, 0.0, -1.0, 1.0]))
    >>> round(float(instance_loss(out, 1, k=1)), 4)   # tile 0 -> tumour, tile 1 -> normal
    0.41
    >>> round(float(instance_loss(out, 0, k=2)), 4)   # tiles 0 and 3 -> normal
    1.7201
    """
    if k < 1:
        raise ValueError(f"instance_loss: k must be >= 1, not {k}")
    n = int(out.attention.shape[0])
    order = torch.argsort(out.attention.detach(), descending=True, stable=True)
    if int(label) == 1:
        kk = min(k, max(1, n // 2))
        top, bottom = order[:kk], order[kk:][-kk:]  # disjoint; empty for a bag of one tile
        picked = torch.cat([top, bottom])
        target = torch.cat([torch.ones(len(top)), torch.zeros(len(bottom))])
    else:
        picked = order[:min(k, n)]
        target = torch.zeros(len(picked))
    scores = out.instance_scores[picked]
    return nn.functional.binary_cross_entropy_with_logits(scores, target.to(scores.device, scores.dtype))


def build_mil_model(name: str, *, pretrained: Any, num_classes: int, in_chans: int) -> tuple[Any, str]:
    """The factory's builder of kind ``"mil"`` (``in_chans`` is the feature length D).

    Raises
    ------
    ConfigError
        Not one of :data:`MIL_ARCHITECTURES`, not 2 classes, or pretrained weights asked for (MIL
        models are trained from the slide features).

    Examples
    --------
    >>> m, source = build_mil_model("maxmil", pretrained=False, num_classes=2, in_chans=8)
    >>> type(m).__name__, source
    ('MaxPoolMIL', 'random')
    """
    if pretrained is not False:
        raise ConfigError("model config: MIL models have no pretrained weights; use pretrained: false")
    if name not in MIL_ARCHITECTURES:
        raise ConfigError(f"model config: MIL architecture must be one of {MIL_ARCHITECTURES} (got {name!r})")
    model = GatedAttentionMIL(in_chans, n_classes=num_classes) if name == "abmil" else MaxPoolMIL(
        in_chans, n_classes=num_classes)
    return model, "random"


def _as_bag(features: torch.Tensor) -> torch.Tensor:
    """``(N, D)`` from ``(N, D)`` or ``(1, N, D)``."""
    if features.ndim == 3 and features.shape[0] == 1:
        features = features[0]
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"expected one bag of tile features (N, D) with N >= 1, got shape {tuple(features.shape)}")
    return features


def _check_sizes(in_dim: int, n_classes: int, *hidden: int, dropout: float) -> None:
    for name, value in (("in_dim", in_dim), *((f"hidden[{i}]", h) for i, h in enumerate(hidden))):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"model config: {name} must be a positive integer (got {value!r})")
    if n_classes != 2:
        raise ConfigError(f"model config: MIL models have 2 classes (normal, tumour), got num_classes={n_classes}")
    if not 0 <= dropout < 1:
        raise ConfigError(f"model config: dropout must be in [0, 1) (got {dropout!r})")


def _pretrained_cfg(in_dim: int) -> dict[str, Any]:
    """What the factory and checkpoints expect of a model (timm's attribute); features are used as they are."""
    return {"input_size": (in_dim, 1, 1), "mean": (0.0,), "std": (1.0,)}
