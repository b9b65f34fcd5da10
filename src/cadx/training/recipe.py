"""What every task's fine-tuning shares: the warm-up / fine-tune phases and a tqdm progress callback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from cadx.training.loop import Phase


class TwoPhaseConfig(Protocol):
    """The fields :func:`phases_for` reads (a task's training config has them)."""

    warmup_steps: int
    lr_head: float
    finetune_steps: int
    lr: float
    trainable_blocks: int
    weight_decay: float


def phases_for(cfg: TwoPhaseConfig) -> list[Phase]:
    """Head-only warm-up (never stopped early), then fine-tuning of the last ``trainable_blocks`` stages.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> cfg = SimpleNamespace(warmup_steps=10, lr_head=1e-3, finetune_steps=40, lr=1e-4, trainable_blocks=2,
    ...                       weight_decay=0.0)
    >>> [(p.name, p.steps, p.trainable, p.stop_early) for p in phases_for(cfg)]
    [('warmup', 10, 0, False), ('finetune', 40, 2, True)]
    """
    return [Phase("warmup", cfg.warmup_steps, cfg.lr_head, trainable=0, weight_decay=cfg.weight_decay,
                  stop_early=False),
            Phase("finetune", cfg.finetune_steps, cfg.lr, trainable=cfg.trainable_blocks,
                  weight_decay=cfg.weight_decay)]


class TqdmProgress:
    """A :func:`~cadx.training.loop.fit` ``on_step`` callback that draws a tqdm bar.

    Parameters
    ----------
    monitor : str
        Evaluation steps print a line with this metric and the ``details``.
    details : mapping of str to str, optional
        Short label -> metric key, printed with two decimals after the monitored metric, e.g.
        ``{"sens": "val_sensitivity"}``.
    disable : bool
        No bar (the callback still accepts calls).
    """

    def __init__(self, *, monitor: str, details: Mapping[str, str] | None = None, disable: bool = False) -> None:
        self.monitor = monitor
        self.details = dict(details or {})
        self.disable = disable
        self._bar: Any = None

    def __call__(self, step: int, total: int, metrics: dict[str, Any]) -> None:
        from tqdm.auto import tqdm

        if self._bar is None:
            self._bar = tqdm(total=total, initial=step - 1, desc="training", unit="step", disable=self.disable)
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{metrics['loss']:.3f}", phase=metrics["phase"])
        if self.monitor in metrics:
            nan = float("nan")
            details = " ".join(f"{label} {metrics.get(key, nan):.2f}" for label, key in self.details.items())
            self.write(f"step {step:>4} [{metrics['phase']}] loss {metrics['loss']:.3f}  "
                       f"{self.monitor} {metrics[self.monitor]:.3f}  {details}".rstrip())

    def write(self, line: str) -> None:
        if self._bar is not None and not self.disable:
            self._bar.write(line)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
