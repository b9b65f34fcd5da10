"""One generic training loop: :func:`fit`.

The caller brings the model, the loss, the batches and an ``evaluate()`` callback; :func:`fit` runs
one or more :class:`Phase` objects in order (each with its own trainable parameters, learning rate
and cosine schedule, AdamW), evaluates every ``eval_every`` steps, keeps the best weights by a
monitored metric, stops early after ``patience`` evaluations without gain, and writes a resume file
``out_dir/last.pt`` at each evaluation. Nothing here knows about any public dataset.

Reproducibility: the torch random state (dropout, ...) is reseeded from ``(seed, step)`` before every
step, and the resume file holds everything else the next step depends on (weights, optimiser state,
step, best metric and weights, history, evaluations without gain), so an interrupted and resumed run
ends with the same weights as an uninterrupted one, provided the batches are the same (see
``batches`` in :func:`fit`).
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cadx.errors import CheckpointError
from cadx.io.atomic import atomic_path
from cadx.training.freeze import set_batchnorm_eval, set_trainable

log = logging.getLogger(__name__)

RESUME_FILE = "last.pt"
RESUME_FORMAT = "cadx-fit-state"
RESUME_VERSION = 1

#: ``on_step(step, total, metrics)``: ``step`` done (1-based), ``total`` planned, ``metrics`` of the step.
StepCallback = Callable[[int, int, dict[str, Any]], None]


@dataclass(frozen=True)
class Phase:
    """A stretch of training with one set of trainable parameters and one learning-rate schedule.

    Attributes
    ----------
    name : str
        Recorded in the history (``"warmup"``, ``"finetune"``, ...).
    steps : int
        Optimiser steps in this phase (0 skips it).
    lr : float
        Peak learning rate; it follows half a cosine from ``lr`` to 0 over the phase.
    trainable : int, callable or None
        ``None``: every parameter. An int: the last N stages and the head of a timm model
        (:func:`cadx.training.freeze.set_trainable`; 0 = head only, -1 = all). A callable
        ``trainable(model)``: returns the parameters to train (or AdamW parameter-group dicts, each
        may carry its own ``"lr"``); all others are frozen.
    weight_decay : float
        AdamW weight decay.
    stop_early : bool
        Whether ``patience`` may end training during this phase (evaluations still count).
    """

    name: str
    steps: int
    lr: float
    trainable: int | Callable[[Any], Sequence[Any]] | None = None
    weight_decay: float = 0.0
    stop_early: bool = True


@dataclass
class FitResult:
    """What :func:`fit` returns; the model itself holds the best weights.

    Attributes
    ----------
    best : dict
        The history entry of the best evaluation (empty when nothing was evaluated).
    history : list of dict
        One entry per evaluation: ``step``, ``phase``, ``loss``, ``lr``, ``samples_per_s`` and the
        metrics of ``evaluate()``.
    steps : int
        Optimiser steps done in total (including those before a resume).
    stopped_early : bool
        Training ended by ``patience``.
    """

    best: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    stopped_early: bool = False


def fit(
    model: Any,
    phases: Sequence[Phase],
    *,
    loss_fn: Callable[[Any, Any], Any],
    batches: Iterable[Any] | Callable[[int], Iterable[Any]],
    evaluate: Callable[[], dict[str, Any]],
    monitor: str,
    mode: Literal["max", "min"] = "max",
    eval_every: int = 50,
    patience: int | None = None,
    min_delta: float = 1e-4,
    out_dir: str | Path | None = None,
    resume: bool = True,
    seed: int = 0,
    device: str = "cpu",
    batchnorm_eval: bool = False,
    on_step: StepCallback | None = None,
) -> FitResult:
    """Train ``model`` through ``phases``; keep the best weights by ``monitor``.

    Parameters
    ----------
    model : torch.nn.Module
        Moved to ``device``; holds the best weights on return.
    phases : sequence of Phase
        Run in order; the global step counts across phases.
    loss_fn : callable
        ``loss_fn(model(inputs), targets) -> scalar tensor``.
    batches : iterable or callable
        ``(inputs, targets)`` pairs (tensors, or tuples/lists/dicts of tensors), moved to ``device``.
        A callable is called as ``batches(start_step)`` and must yield the batches of steps
        ``start_step, start_step + 1, ...`` (the way to resume without replaying data). A plain
        iterable is replayed from its start on resume, skipping the batches of steps already done.
        Either is iterated again when it runs out before the last step (an epoch).
    evaluate : callable
        ``evaluate() -> dict`` of plain numbers (or strings), called every ``eval_every`` steps and
        after the last step, with the model in eval mode under ``torch.no_grad()``.
    monitor : str
        The key of ``evaluate()``'s result that decides the best weights and early stopping.
    mode : {"max", "min"}
        Whether larger or smaller ``monitor`` values are better.
    eval_every : int
        Steps between evaluations.
    patience : int, optional
        Stop after this many evaluations in a row without a gain of ``min_delta`` (only in phases
        with ``stop_early``); ``None`` never stops early.
    min_delta : float
        Smallest change of ``monitor`` that counts as a gain.
    out_dir : str or Path, optional
        Where the resume file ``last.pt`` is written at each evaluation; ``None``: no resume file.
    resume : bool
        Continue from ``out_dir/last.pt`` when it exists (loaded with ``weights_only=True``).
    seed : int
        The torch random state is set from ``(seed, step)`` before each step.
    device : str
        ``"cpu"``, ``"cuda"``, ...
    batchnorm_eval : bool
        Keep BatchNorm layers in eval mode while training (running statistics stay those of the
        pretrained network; see :func:`cadx.training.freeze.set_batchnorm_eval`).
    on_step : callable, optional
        ``on_step(step, total, metrics)`` after every step; ``metrics`` holds ``phase``, ``loss``,
        ``lr`` and, at evaluation steps, the history entry. Progress bars live in the caller.

    Returns
    -------
    FitResult

    Raises
    ------
    CheckpointError
        ``out_dir/last.pt`` is not a resume file of these phases (it is never unpickled).

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> x = torch.linspace(-1, 1, 64)[:, None]
    >>> model = torch.nn.Linear(1, 1)
    >>> result = fit(model, [Phase("train", 100, 0.1)], loss_fn=torch.nn.MSELoss(), batches=[(x, 2 * x)],
    ...              evaluate=lambda: {"mse": float(torch.nn.functional.mse_loss(model(x), 2 * x))},
    ...              monitor="mse", mode="min", eval_every=50)
    >>> round(model.weight.item(), 1), result.steps, [h["step"] for h in result.history]
    (2.0, 100, [50, 100])
    """
    import torch

    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, not {eval_every}")
    total = sum(p.steps for p in phases)
    model.to(device)
    state = _FitState()
    last = Path(out_dir) / RESUME_FILE if out_dir is not None else None
    saved_opt: dict[str, Any] | None = None
    if resume and last is not None and last.exists():
        saved_opt = state.load(last, model, phases)
    better = _is_better(mode, min_delta)
    stream = _stream(batches, state.step) if state.step < total and not state.stopped_early else iter(())
    t0, steps_here, samples = time.perf_counter(), 0, 0
    for index, phase in enumerate(phases):
        start = sum(p.steps for p in phases[:index])
        if state.stopped_early or state.step >= start + phase.steps:
            continue
        opt, sched = _optimiser(model, phase, done=state.step - start)
        if saved_opt is not None and saved_opt["phase_index"] == index:
            try:
                opt.load_state_dict(saved_opt["state"])
            except ValueError as exc:
                raise CheckpointError(last, f"optimiser state does not fit phase {phase.name!r} ({exc}); "
                                      "delete the file to start afresh") from None
        saved_opt = None
        while state.step < start + phase.steps:
            batch = next(stream, None)
            if batch is None:
                log.warning("the batches ran out at step %d of %d", state.step, total)
                return state.result(model)
            model.train()
            if batchnorm_eval:
                set_batchnorm_eval(model)
            torch.manual_seed(_step_seed(seed, state.step))
            inputs, targets = _to_device(batch, device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            opt.step()
            lr = opt.param_groups[0]["lr"]
            sched.step()
            state.step += 1
            steps_here += 1
            samples += _batch_size(inputs)
            metrics: dict[str, Any] = {"phase": phase.name, "loss": float(loss.detach()), "lr": float(lr)}
            if state.step % eval_every == 0 or state.step == total:
                entry = {"step": state.step, **metrics,
                         "samples_per_s": samples / max(time.perf_counter() - t0, 1e-9),
                         **_plain(_run_evaluate(model, evaluate))}
                if monitor not in entry:
                    raise KeyError(f"evaluate() returned no {monitor!r} (got {sorted(entry)})")
                state.record(entry, model, better, monitor)
                metrics = entry
                log.info("step %d: %s", state.step, entry)
                if phase.stop_early and patience is not None and state.bad_evals >= patience:
                    state.stopped_early = True
                    log.info("early stop at step %d: no gain in %s for %d evaluations", state.step, monitor, patience)
                if last is not None:
                    state.save(last, model, phases, index, opt)
            if on_step is not None:
                on_step(state.step, total, metrics)
            if state.stopped_early:
                break
    return state.result(model)


class _FitState:
    """Everything the next step depends on besides the model and optimiser (saved in last.pt)."""

    def __init__(self) -> None:
        self.step = 0
        self.best_value: float | None = None
        self.best_entry: dict[str, Any] = {}
        self.best_state: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        self.bad_evals = 0
        self.stopped_early = False

    def record(self, entry: dict[str, Any], model: Any, better: Callable[[float, float | None], bool],
               monitor: str) -> None:
        self.history.append(entry)
        value = float(entry[monitor])
        if self.best_state is None or better(value, self.best_value):
            self.best_value, self.best_entry, self.bad_evals = value, entry, 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_evals += 1

    def result(self, model: Any) -> FitResult:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        return FitResult(best=dict(self.best_entry), history=list(self.history), steps=self.step,
                         stopped_early=self.stopped_early)

    def save(self, path: Path, model: Any, phases: Sequence[Phase], phase_index: int, opt: Any) -> None:
        import torch

        payload = {
            "format": RESUME_FORMAT, "format_version": RESUME_VERSION,
            "phases": [[p.name, int(p.steps)] for p in phases],
            "step": self.step, "phase_index": phase_index,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(),
            "best_value": self.best_value, "best_entry": self.best_entry, "best_state": self.best_state,
            "history": self.history, "bad_evals": self.bad_evals, "stopped_early": self.stopped_early,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    def load(self, path: Path, model: Any, phases: Sequence[Phase]) -> dict[str, Any]:
        payload = read_resume_file(path)
        names = [p.name for p in phases]
        if [n for n, _ in payload["phases"]] != names:
            raise CheckpointError(path, f"written for phases {[n for n, _ in payload['phases']]}, not {names}; "
                                  "delete it to start afresh")
        try:
            model.load_state_dict(payload["model"])
        except RuntimeError as exc:
            raise CheckpointError(path, f"weights do not fit the model: {str(exc)[:200]}") from None
        self.step = int(payload["step"])
        self.best_value = payload["best_value"]
        self.best_entry = dict(payload["best_entry"])
        self.best_state = payload["best_state"]
        self.history = list(payload["history"])
        self.bad_evals = int(payload["bad_evals"])
        self.stopped_early = bool(payload["stopped_early"])
        log.info("resumed from %s at step %d", path, self.step)
        return {"phase_index": int(payload["phase_index"]), "state": payload["optimizer"]}


#: Entries every resume file holds, with their types.
_RESUME_ENTRIES = {"phases": (list, tuple), "model": dict, "step": int, "best_entry": dict, "history": (list, tuple),
                   "bad_evals": int, "stopped_early": bool, "phase_index": int, "optimizer": dict}


def read_resume_file(path: str | Path) -> dict[str, Any]:
    """The contents of a resume file (``last.pt``), read without running code, its entries checked.

    Callers that do slow work before :func:`fit` (tiling a cohort, say) call it first, so that a bad
    resume file is reported before that work rather than after.

    Raises
    ------
    CheckpointError
        Not a torch file; a file holding Python objects beyond tensors and plain data (refused
        unread: unpickling it could run code); not a cadx resume file, or one missing entries.
    """
    import torch

    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        why = ("refused: it holds Python objects other than tensors and plain data, which could run code when "
               "loaded" if "weights" in str(exc).lower() else type(exc).__name__)
        raise CheckpointError(path, f"not a readable resume file ({why}); delete it to start afresh") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(path, f"not a readable resume file ({type(exc).__name__}); "
                              "delete it to start afresh") from None
    if not isinstance(payload, dict) or payload.get("format") != RESUME_FORMAT:
        raise CheckpointError(path, f"not a cadx resume file (no format {RESUME_FORMAT!r})")
    bad = [k for k, kind in _RESUME_ENTRIES.items() if not isinstance(payload.get(k), kind)]
    if bad or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in payload["phases"]):
        raise CheckpointError(path, f"incomplete cadx resume file (entries {bad or ['phases']} missing or malformed); "
                              "delete it to start afresh")
    return payload


def _optimiser(model: Any, phase: Phase, *, done: int) -> tuple[Any, Any]:
    """AdamW over the phase's parameters and its cosine schedule, ``done`` steps into the phase."""
    import torch

    if phase.trainable is None:
        groups: Sequence[Any] = set_trainable(model, -1)
    elif isinstance(phase.trainable, int):
        groups = set_trainable(model, phase.trainable)
    else:
        groups = list(phase.trainable(model))
        for p in model.parameters():
            p.requires_grad_(False)
        for g in groups:
            for p in (g["params"] if isinstance(g, dict) else [g]):
                p.requires_grad_(True)
    opt = torch.optim.AdamW(groups, lr=phase.lr, weight_decay=phase.weight_decay)
    n = max(phase.steps, 1)

    def cosine(i: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (i + done) / n)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, cosine)


def _is_better(mode: str, min_delta: float) -> Callable[[float, float | None], bool]:
    if mode == "max":
        return lambda value, best: best is None or value > best + min_delta
    return lambda value, best: best is None or value < best - min_delta


def _step_seed(seed: int, step: int) -> int:
    """A 32-bit seed for one step, independent across (seed, step)."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def _stream(batches: Iterable[Any] | Callable[[int], Iterable[Any]], start: int) -> Iterator[Any]:
    """Batches of steps ``start, start + 1, ...``, starting a new epoch when one runs out."""
    step, skip = start, 0 if callable(batches) else start
    while True:
        source = batches(step) if callable(batches) else batches
        got = False
        for batch in source:
            got = True
            if skip:
                skip -= 1
                continue
            step += 1
            yield batch
        if not got:
            return


def _run_evaluate(model: Any, evaluate: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    import torch

    model.eval()
    with torch.no_grad():
        return dict(evaluate())


def _to_device(batch: Any, device: str) -> tuple[Any, Any]:
    inputs, targets = batch
    return _move(inputs, device), _move(targets, device)


def _move(obj: Any, device: str) -> Any:
    if hasattr(obj, "to"):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_move(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _move(v, device) for k, v in obj.items()}
    return obj


def _batch_size(inputs: Any) -> int:
    while isinstance(inputs, (list, tuple, dict)):
        inputs = next(iter(inputs.values() if isinstance(inputs, dict) else inputs), None)
    return int(inputs.shape[0]) if hasattr(inputs, "shape") and len(inputs.shape) else 0


def _plain(obj: Any) -> Any:
    """Metrics as plain Python values (numpy scalars unwrapped) so the resume file loads weights-only."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "item") and getattr(obj, "numel", lambda: 0)() == 1:  # a one-element tensor
        return obj.item()
    raise TypeError(f"evaluate() returned a {type(obj).__name__}; use plain numbers, strings, lists or dicts")
