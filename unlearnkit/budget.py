"""What a run costs, in ResNet-18 CIFAR-10 epoch-equivalents (EE), counted from the model calls.

One EE is 50,000 images forward and backward through the CIFAR ResNet-18 of
:func:`unlearnkit.build_model` (``"resnet18"``, 10 classes, 3×32×32): a training epoch of
CIFAR-10. A forward pass alone counts a third of a forward-and-backward one. Every call of a
library model (a module built by :func:`unlearnkit.build_model`, which carries ``model.arch``)
is counted: the images of the batch × the model's multiply-accumulates per image (:func:`macs`,
counted from the model's convolutions and linear layers on one input, not read from a table) ×
3 when the call records a graph for a backward pass, 1 otherwise; divided by the same for one
EE (:func:`reference_macs`).

Each call counts towards one of four kinds (:data:`KINDS`): ``train`` (the zoo training an
original or a retrained model), ``unlearn`` (a registered method, whatever it computes inside),
``eval`` (:func:`unlearnkit.evaluate`) and ``relearn`` (:func:`unlearnkit.relearn_time`); a call
outside these counts as ``train`` with a backward pass and as ``eval`` without one. Code marks
its kind with ``with budget.kind("unlearn"): ...``.

:func:`ledger` holds the counts of this process; :func:`snapshot` turns them into EE. The book
runner (``python -m unlearnkit.book``) collects each chapter's into ``budget.json`` and prints a
table. The counts are exact for the passes a run made; in a dry run, whose loops are capped,
they are the capped run's, not the planned cost of ``full``.

Explained in the introduction (``book/intro.md``, "What a chapter costs").
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn as nn

KINDS = ("train", "unlearn", "eval", "relearn")
EE_IMAGES = 50_000  # images in one epoch-equivalent (CIFAR-10's training set)
CHAPTER_LIMIT = 150.0  # EE a chapter's ``full`` may cost
BOOK_LIMIT = 1000.0  # EE the whole book's ``full`` may cost
BACKWARD_FACTOR = 3  # a forward and backward pass costs three forward passes
# the model of one EE: the CIFAR ResNet-18 (its ``model.arch``)
REFERENCE = {
    "name": "resnet18",
    "in_shape": [3, 32, 32],
    "num_classes": 10,
    "mean": None,
    "std": None,
    "kwargs": {},
}

_KIND: contextvars.ContextVar[str | None] = contextvars.ContextVar("unlearnkit_budget_kind", default=None)
_LOCK = threading.Lock()
_COUNTING = threading.local()  # set while counting MACs: those calls are not part of the run


# ----------------------------------------------------------------------------- multiply-accumulates


def macs(model: nn.Module, input_shape) -> int:
    """Multiply-accumulates of ``model`` for one input of ``input_shape`` (no batch dimension):
    every ``Conv2d`` (output elements × input channels per group × kernel area) and ``Linear``
    (output elements × input features), counted on one forward pass of a zero input in eval
    mode. Normalisation, activations and pooling are not counted (they are a few % of a CNN)."""
    total = [0]

    def count(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            total[0] += out[0].numel() * (mod.in_channels // mod.groups) * k
        elif isinstance(mod, nn.Linear):
            total[0] += out[0].numel() * mod.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was = model.training
    p = next(model.parameters(), None)
    x = torch.zeros((1, *tuple(int(s) for s in input_shape)), device=p.device if p is not None else "cpu")
    _COUNTING.on = True
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        _COUNTING.on = False
        model.train(was)
        for h in hooks:
            h.remove()
    return int(total[0])


@functools.lru_cache(maxsize=None)
def arch_macs(arch: str) -> int:
    """:func:`macs` of a library model from its ``model.arch`` (given as ``repr`` of its sorted
    items), counted on a fresh CPU twin: the caller's model, its hooks and the random state are
    left alone."""
    import ast

    from .models import build_model

    a = dict(ast.literal_eval(arch))
    with torch.random.fork_rng(devices=[]):
        twin = build_model(
            a["name"],
            in_shape=a["in_shape"],
            num_classes=a["num_classes"],
            mean=a["mean"],
            std=a["std"],
            device="cpu",
            **a["kwargs"],
        )
    return macs(twin, a["in_shape"])


def _key(arch: dict) -> str:
    return repr(sorted(arch.items()))


def reference_macs() -> int:
    """Multiply-accumulates of the CIFAR ResNet-18 for one 3×32×32 image (counted, once)."""
    return arch_macs(_key(REFERENCE))


def ee(images: float, model_macs: float, backward: bool) -> float:
    """EE of ``images`` through a model of ``model_macs`` per image, with or without backward."""
    units = BACKWARD_FACTOR if backward else 1
    return images * model_macs * units / (EE_IMAGES * reference_macs() * BACKWARD_FACTOR)


# ----------------------------------------------------------------------------- the ledger


class Ledger:
    """Counts of one process: forward image-MACs per kind (3 per image for a backward pass) and
    the wall time since :meth:`reset`."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.units = dict.fromkeys(KINDS, 0.0)
        self.calls = dict.fromkeys(KINDS, 0)
        self.started = time.perf_counter()

    def add(self, kind: str, images: int, model_macs: int, backward: bool) -> None:
        with _LOCK:
            self.units[kind] += float(images) * model_macs * (BACKWARD_FACTOR if backward else 1)
            self.calls[kind] += 1


_LEDGER = Ledger()


def ledger() -> Ledger:
    """This process's :class:`Ledger`."""
    return _LEDGER


def snapshot() -> dict:
    """``{kind: EE, ..., "total": EE, "seconds": wall time since the ledger's reset}``."""
    per = 1.0 / (EE_IMAGES * reference_macs() * BACKWARD_FACTOR)
    out = {k: _LEDGER.units[k] * per for k in KINDS}
    out["total"] = sum(out.values())
    out["seconds"] = time.perf_counter() - _LEDGER.started
    return out


@contextlib.contextmanager
def kind(name: str):
    """Count the model calls inside the block as ``name`` (one of :data:`KINDS`). The outermost
    block decides: a method's evaluation of its own progress is part of the method's cost."""
    if name not in KINDS:
        raise ValueError(f"Unknown budget kind {name!r}: choose one of {KINDS}.")
    token = _KIND.set(_KIND.get() or name)
    try:
        yield
    finally:
        _KIND.reset(token)


def counts(name: str):
    """Decorator: the model calls made inside the function count as ``name`` (:func:`kind`)."""

    def deco(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with kind(name):
                return fn(*args, **kwargs)

        return inner

    return deco


def _batch_size(x) -> int:
    try:
        from torch._C._functorch import get_unwrapped, is_batchedtensor

        while is_batchedtensor(x):  # a per-sample call under torch.func.vmap: the whole batch
            x = get_unwrapped(x)
    except ImportError:  # pragma: no cover - older torch
        pass
    return int(x.shape[0]) if x.dim() > 0 else 1


def _hook(module, args, output) -> None:
    arch = getattr(module, "arch", None)
    if arch is None or getattr(_COUNTING, "on", False) or not args or not torch.is_tensor(args[0]):
        return
    try:
        model_macs = arch_macs(_key(arch))
    except Exception:  # an arch the builders do not know (a hand-made model): not counted
        return
    backward = torch.is_grad_enabled() and torch.is_tensor(output) and output.requires_grad
    k = _KIND.get() or ("train" if backward else "eval")
    _LEDGER.add(k, _batch_size(args[0]), model_macs, backward)


_HANDLE = nn.modules.module.register_module_forward_hook(_hook)


# ----------------------------------------------------------------------------- files


def write(path: Path) -> None:
    """Write :func:`snapshot` to ``path`` as JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(snapshot(), f)
    os.replace(tmp, path)


def write_after_each_cell(path: Path) -> bool:
    """In an IPython kernel, write :func:`snapshot` to ``path`` after every cell (so the file
    holds the chapter's cost however its kernel ends); ``False`` outside IPython."""
    try:
        ip = get_ipython()  # noqa: F821  (defined inside IPython only)
    except NameError:
        return False
    ip.events.register("post_run_cell", lambda *_: write(path))
    return True


def collect(folder: Path, names) -> dict:
    """``{chapter: snapshot}`` from the files the chapters ``names`` wrote into ``folder``
    (``<name>.json``, see :func:`write_after_each_cell`); a chapter without a file is left out."""
    out = {}
    for n in names:
        f = Path(folder) / f"{n}.json"
        if f.is_file():
            out[n] = json.loads(f.read_text())
    return out


def save(path: Path, per_chapter: dict, limit: float = CHAPTER_LIMIT) -> None:
    """Write ``{chapter: {kind: EE, "total": EE, "limit": EE, "seconds": s}}`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {n: {**s, "limit": limit} for n, s in per_chapter.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def table(per_chapter: dict, limit: float = CHAPTER_LIMIT) -> str:
    """A plain-text table of ``{chapter: snapshot}``: EE per kind, total, limit, wall time."""
    cols = (*KINDS, "total")
    head = f"{'chapter':<28s}" + "".join(f"{k:>10s}" for k in cols) + f"{'limit':>8s}{'time':>9s}"
    lines = [head, "-" * len(head)]
    for name, s in per_chapter.items():
        cells = "".join(f"{s.get(k, float('nan')):10.3g}" for k in cols)
        lines.append(f"{name:<28s}{cells}{limit:8.0f}{s.get('seconds', float('nan')):8.0f}s")
    book = sum(s.get("total", 0.0) for s in per_chapter.values())
    lines.append(f"{'book':<28s}{'':40s}{book:10.3g}{BOOK_LIMIT:8.0f}")
    return "\n".join(lines)
